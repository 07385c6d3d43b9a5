"""Where a model argument's files are: a local folder as given, a Hub id as its cached snapshot.

transformers, given a Hub id it cannot reach, retries every file with growing pauses and ends with
advice about its own offline mode. Resolving the id here first, once, turns an unreachable Hub
into one :class:`~qwen3_rerank.errors.ModelLoadError` within seconds whose line names the fixes:
a local folder, ``qwen3-rerank make-model`` for an offline test model, or the offline switches
once the model is in the cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .engines.checkpoint import looks_like_path
from .errors import ModelLoadError

__all__ = ["resolve_model"]

# the files a Qwen3-Reranker needs: config, tokenizer (json + merges/vocab), safetensors weights
_MODEL_FILES = ["*.json", "*.txt", "*.safetensors"]
_HUB_OPTIONS = ("revision", "cache_dir", "token", "local_files_only")
_FIXES = (
    "use a local model folder, build an offline test model with `qwen3-rerank make-model DIR`, "
    "or download it once where the Hub is reachable and then set HF_HUB_OFFLINE=1 "
    "(Python: local_files_only=True)"
)


def resolve_model(name: str, options: Mapping[str, Any] | None = None) -> str:
    """The folder to load ``name`` from: a local path as is, else the Hub snapshot's folder.

    A Hub id is looked up in the Hugging Face cache first; only if it is not there is the Hub
    asked, once, without the per-file retries.

    Args:
        name: A local folder or a Hub id such as ``Qwen/Qwen3-Reranker-0.6B``.
        options: ``from_pretrained`` keyword arguments; ``revision``, ``cache_dir``, ``token``
            and ``local_files_only`` are used here.

    Raises:
        ModelLoadError: The id is not cached and the Hub cannot be reached (or downloads are
            off), or the Hub has no such model.
    """
    if looks_like_path(name):
        return name
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    hub = {k: v for k, v in (options or {}).items() if k in _HUB_OPTIONS and v is not None}
    offline = bool(hub.pop("local_files_only", False)) or constants.HF_HUB_OFFLINE
    try:
        return str(
            snapshot_download(name, allow_patterns=_MODEL_FILES, local_files_only=True, **hub)
        )
    except LocalEntryNotFoundError:
        pass
    if offline:
        raise ModelLoadError(
            f"{name!r} is not in the Hugging Face cache and downloads are off "
            f"(HF_HUB_OFFLINE or local_files_only): {_FIXES}"
        )
    try:
        return str(snapshot_download(name, allow_patterns=_MODEL_FILES, **hub))
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise ModelLoadError(
            f"the Hugging Face Hub has no model {name!r} (or it needs a token): {_FIXES}"
        ) from exc
    except Exception as exc:  # the Hub client's HTTP library errors vary by version
        raise ModelLoadError(
            f"cannot download {name!r}: the Hugging Face Hub is unreachable "
            f"({constants.ENDPOINT}); {_FIXES}"
        ) from exc
