"""The vLLM engine: in-process ``vllm.LLM`` with the official Qwen3-Reranker conversion.

vLLM scores an original Qwen3-Reranker checkpoint only when told to treat it as a sequence
classifier built from the ``no``/``yes`` rows (``hf_overrides``), and only when the caller applies
the Qwen3 template: this engine does both, and truncates documents (never the prefix, query or
suffix) with the same :class:`~qwen3_rerank.prompt.PromptEncoder` as every other engine.
Defaults are chosen for reranking, which never decodes: a KV cache of ``kv_cache_memory_bytes``
(default 3 GiB) instead of 90% of the GPU, and ``max_model_len`` equal to ``max_length``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError, MissingDependencyError, ModelLoadError
from ..prompt import (
    DEFAULT_MAX_LENGTH,
    PREFIX,
    SUFFIX,
    PromptEncoder,
    format_document_part,
    format_query_part,
)
from ..tokenizing import batch_encoder
from .base import Progress, ScoredDocuments, ScoreRequest, ThreadedEngine, split_scores

__all__ = ["DEFAULT_KV_CACHE_BYTES", "QWEN3_RERANKER_OVERRIDES", "VllmEngine", "llm_options"]

QWEN3_RERANKER_OVERRIDES = {
    "architectures": ["Qwen3ForSequenceClassification"],
    "classifier_from_token": ["no", "yes"],
    "is_original_qwen3_reranker": True,
}
# 3 GiB: 0.97 / 1.16 / 1.14 of vLLM's own defaults on the three workloads at 6-7 GiB whole-GPU;
# 2 GiB reached only 0.85 on rag100x256 (benchmarks/results/run-2026-11-21.json, H100).
DEFAULT_KV_CACHE_BYTES = 3 * 2**30


def llm_options(
    model: str,
    config: dict[str, Any],
    *,
    max_length: int = DEFAULT_MAX_LENGTH,
    gpu_memory_utilization: float | None = None,
    kv_cache_memory_bytes: int | None = None,
    **options: Any,
) -> dict[str, Any]:
    """The ``vllm.LLM`` arguments for a Qwen3 reranker (pure: unit-tested without vLLM).

    Args:
        model: Hub id or folder.
        config: The checkpoint's ``config.json``; an already converted ``*-seq-cls``
            checkpoint (``Qwen3ForSequenceClassification``) gets no overrides.
        max_length: Most tokens per pair; becomes ``max_model_len`` unless that is given.
        gpu_memory_utilization: Share of the GPU for vLLM; when given, it replaces the default
            KV-cache size.
        kv_cache_memory_bytes: KV cache size (default 3 GiB).
        **options: Passed through (``enforce_eager``, ``enable_prefix_caching``,
            ``max_num_seqs``, ``dtype``, ``quantization``, ``tensor_parallel_size``, ...);
            ``None`` values are dropped.
    """
    if gpu_memory_utilization is not None and kv_cache_memory_bytes is not None:
        raise ConfigurationError("give gpu_memory_utilization or kv_cache_memory_bytes, not both")
    out: dict[str, Any] = {"model": model, "runner": "pooling", "max_model_len": max_length}
    if "Qwen3ForSequenceClassification" not in (config.get("architectures") or []):
        out["hf_overrides"] = dict(QWEN3_RERANKER_OVERRIDES)
    if gpu_memory_utilization is not None:
        out["gpu_memory_utilization"] = gpu_memory_utilization
    else:
        out["kv_cache_memory_bytes"] = kv_cache_memory_bytes or DEFAULT_KV_CACHE_BYTES
    out.update({k: v for k, v in options.items() if v is not None})
    if out["max_model_len"] < max_length:
        raise ConfigurationError(
            f"max_model_len={out['max_model_len']} is shorter than max_length={max_length}"
        )
    return out


def _read_config(model: str) -> dict[str, Any]:
    folder = Path(model).expanduser()
    if folder.is_dir():
        path = folder / "config.json"
        if not path.is_file():
            raise ModelLoadError(f"{model!r} is not a model folder: it has no config.json")
        config: dict[str, Any] = json.loads(path.read_text())
        return config
    from transformers import AutoConfig

    try:
        return dict(AutoConfig.from_pretrained(model).to_dict())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read the config of {model!r}: {exc}") from exc


class VllmEngine(ThreadedEngine):
    """Scores with vLLM's pooling runner, on a model it loads or an ``LLM`` you built.

    Args:
        model: Hub id or folder (omit when passing ``llm``).
        llm: A ``vllm.LLM`` built with ``runner="pooling"`` and the Qwen3 reranker overrides.
        max_length: Most tokens per pair; longer documents are truncated.
        **options: See :func:`llm_options`.

    Raises:
        MissingDependencyError: vLLM is not installed (extra ``[vllm]``).
        ConfigurationError: No GPU, or vLLM could not start with these memory settings.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        llm: Any = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        **options: Any,
    ) -> None:
        if llm is None:
            try:
                import vllm
            except ImportError as exc:
                raise MissingDependencyError("vllm", "vllm") from exc
            if model is None:
                raise ConfigurationError("pass a model or an existing vllm.LLM (llm=...)")
            import torch

            if not torch.cuda.is_available():
                raise ConfigurationError("the vLLM engine needs a CUDA GPU; use engine='torch'")
            # torch.cuda.is_available() touches the CUDA runtime without torch counting itself
            # initialised, so vLLM would fork its engine process and fail: ask for spawn.
            os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
            name = os.fspath(model)
            settings = llm_options(name, _read_config(name), max_length=max_length, **options)
            try:
                llm = vllm.LLM(**settings)
            except (RuntimeError, ValueError) as exc:
                raise ConfigurationError(
                    f"vLLM could not start: {' '.join(str(exc).split())[:400]} - lower "
                    "max_model_len/max_length or raise kv_cache_memory_bytes"
                ) from exc
        self.llm = llm
        self.model_name = os.fspath(model) if model is not None else None
        self.tokenizer = llm.get_tokenizer()
        self.encoder = PromptEncoder(batch_encoder(self.tokenizer), max_length)
        super().__init__()

    def _score(
        self, requests: Sequence[ScoreRequest], progress: Progress | None
    ) -> list[ScoredDocuments]:
        left: list[str] = []
        right: list[str] = []
        truncated: list[list[bool]] = []
        for r in requests:
            encoded = self.encoder.encode(r.query, r.documents, r.instruction)
            query_text = PREFIX + format_query_part(r.query, r.instruction)
            for document, ids, cut in zip(
                r.documents, encoded.document_ids, encoded.truncated, strict=True
            ):
                # a cut document is sent as the text of its kept tokens; the suffix stays whole
                body = self.tokenizer.decode(ids) if cut else format_document_part(document)
                left.append(query_text)
                right.append(body + SUFFIX)
            truncated.append(encoded.truncated)
        outputs = self.llm.score(left, right, use_tqdm=False) if left else []
        flat = [float(o.outputs.score) for o in outputs]
        if progress is not None:
            progress(len(flat))
        return split_scores(flat, truncated)

    def _release(self) -> None:
        self.__dict__.pop("llm", None)
