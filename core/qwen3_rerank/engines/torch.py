"""The torch engine: transformers' Qwen3 model, scored exactly per the model-card recipe.

Per pair it reads the final hidden state at the last real token and projects it, in fp32, on the
difference of the ``yes`` and ``no`` rows of the LM head: ``sigmoid(h·(w_yes - w_no))``, which is
``softmax([logit_no, logit_yes])[1]`` without ever computing the 151669-row vocabulary.
Sequences are left-padded with explicit position ids, in length-sorted batches bounded by a
token budget; a batch that runs out of GPU memory is split and retried.

``_forward`` is the one place that runs the model, so a faster path can replace it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..batching import plan_batches
from ..errors import ConfigurationError, EngineError, MissingDependencyError, ModelLoadError
from ..prompt import DEFAULT_MAX_LENGTH, PromptEncoder
from .base import Progress, ScoredDocuments, ScoreRequest, ThreadedEngine

if TYPE_CHECKING:
    import torch as torch_

__all__ = ["TorchEngine", "resolve_device", "resolve_dtype"]

_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}
_DEVICE_TYPES = ("cpu", "cuda", "mps")
# Tokens per forward pass when the caller sets no budget.
_DEFAULT_BATCH_TOKENS = {"cpu": 8192, "cuda": 65536, "mps": 16384}


def _import_torch() -> Any:
    """torch, imported on first use (``import qwen3_rerank`` stays light)."""
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "torch", "torch") from exc
    return torch


def resolve_device(device: Any) -> torch_.device:
    """``None`` -> CUDA if available else CPU; a string or ``torch.device`` is checked."""
    torch = _import_torch()
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev: torch_.device = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ConfigurationError(f"unknown device {device!r}; use one of {_DEVICE_TYPES}") from exc
    if dev.type not in _DEVICE_TYPES:
        raise ConfigurationError(f"unsupported device {device!r}; use one of {_DEVICE_TYPES}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError(f"device {device!r} asked for, but CUDA is not available")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigurationError(
            f"device {device!r} asked for, but only {torch.cuda.device_count()} GPU(s) exist"
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigurationError(f"device {device!r} asked for, but MPS is not available")
    return dev


def resolve_dtype(dtype: Any, device: torch_.device) -> torch_.dtype:
    """``None`` -> float32 on CPU, bfloat16 elsewhere; names or ``torch.dtype`` are checked."""
    torch = _import_torch()
    if dtype is None:
        dtype = "float32" if device.type == "cpu" else "bfloat16"
    if isinstance(dtype, str) and dtype.lower() in _DTYPES:
        dtype = getattr(torch, _DTYPES[dtype.lower()])
    if dtype in (torch.float32, torch.bfloat16, torch.float16):
        chosen: torch_.dtype = dtype
        return chosen
    raise ConfigurationError(
        f"unsupported dtype {dtype!r}; use 'float32', 'bfloat16', 'float16' or a torch dtype"
    )


class TorchEngine(ThreadedEngine):
    """Scores Qwen3-Reranker pairs with PyTorch and transformers, on CPU or GPU.

    Args:
        model: A Hub id or a local folder of a Qwen3-Reranker checkpoint.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ... or ``None`` for CUDA when available.
        dtype: ``"float32"``, ``"bfloat16"``, ``"float16"`` or a torch dtype; ``None`` picks
            float32 on CPU and bfloat16 on GPU. Scores are always computed in fp32.
        max_length: Most tokens per pair; longer documents are truncated.
        max_batch_tokens: Padded tokens per forward pass (memory grows with it).
        **load_options: Passed to both ``from_pretrained`` calls (``revision``, ``cache_dir``,
            ``local_files_only``, ``token``, ...).

    Raises:
        ModelLoadError: The model is missing, incomplete or not a Qwen3 reranker.
        ConfigurationError: Bad device, dtype, max_length or max_batch_tokens.
        MissingDependencyError: torch or transformers is not installed (extra ``[torch]``).
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        device: Any = None,
        dtype: Any = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        max_batch_tokens: int | None = None,
        **load_options: Any,
    ) -> None:
        torch = _import_torch()
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        if max_batch_tokens is None:
            max_batch_tokens = _DEFAULT_BATCH_TOKENS[self.device.type]
        if isinstance(max_batch_tokens, bool) or not isinstance(max_batch_tokens, int):
            raise ConfigurationError(
                f"max_batch_tokens must be an integer, got {max_batch_tokens!r}"
            )
        if max_batch_tokens < 1:
            raise ConfigurationError(f"max_batch_tokens must be >= 1, got {max_batch_tokens}")
        self.max_batch_tokens = max_batch_tokens
        self.model_name = os.fspath(model)

        self.tokenizer = _load_tokenizer(self.model_name, load_options)
        self.encoder = PromptEncoder(self._encode_batch, max_length)
        self.yes_id, self.no_id = _yes_no_ids(self.tokenizer, self.model_name)
        self._pad_id = _pad_id(self.tokenizer)

        causal_lm = _load_model(self.model_name, self.dtype, load_options)
        head = causal_lm.get_output_embeddings()
        if head is None or head.weight.shape[0] <= max(self.yes_id, self.no_id):
            raise ModelLoadError(f"{self.model_name!r} has no LM head covering the yes/no tokens")
        with torch.no_grad():
            weight = head.weight.float()
            # softmax([no, yes])[1] == sigmoid(logit_yes - logit_no): one direction suffices.
            self._direction = (weight[self.yes_id] - weight[self.no_id]).to(self.device)
            bias = getattr(head, "bias", None)
            self._offset = float(bias[self.yes_id] - bias[self.no_id]) if bias is not None else 0.0
        self._body = causal_lm.base_model.to(self.device).eval()
        del causal_lm, head, weight
        super().__init__()

    @property
    def max_length(self) -> int:
        """Most tokens per pair, template included."""
        return self.encoder.max_length

    def _encode_batch(self, texts: list[str]) -> list[list[int]]:
        ids: list[list[int]] = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return ids

    def _score(
        self, requests: Sequence[ScoreRequest], progress: Progress | None
    ) -> list[ScoredDocuments]:
        encoded = [self.encoder.encode(r.query, r.documents, r.instruction) for r in requests]
        pairs = [(q, d) for q, e in enumerate(encoded) for d in range(len(e.document_ids))]
        lengths = [encoded[q].pair_length(d) for q, d in pairs]
        flat = [0.0] * len(pairs)
        for batch in plan_batches(lengths, self.max_batch_tokens, padded=True):
            ids = [encoded[pairs[i][0]].pair_ids(pairs[i][1]) for i in batch]
            for i, s in zip(batch, self._score_split(ids), strict=True):
                flat[i] = s
            if progress is not None:
                progress(len(batch))
        out: list[ScoredDocuments] = []
        start = 0
        for e in encoded:
            n = len(e.document_ids)
            out.append(ScoredDocuments(flat[start : start + n], list(e.truncated)))
            start += n
        return out

    def _score_split(self, ids: list[list[int]]) -> list[float]:
        """Scores a batch; on GPU out-of-memory, scores its halves instead."""
        torch = _import_torch()
        try:
            return self._forward(ids)
        except torch.OutOfMemoryError as exc:
            if len(ids) == 1:
                raise EngineError(
                    f"out of memory on a single {len(ids[0])}-token pair; lower max_length"
                ) from exc
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            half = len(ids) // 2
            return self._score_split(ids[:half]) + self._score_split(ids[half:])

    def _forward(self, ids: list[list[int]]) -> list[float]:
        """Runs the model on one batch of token-id lists; returns one fp32 score per row."""
        torch = _import_torch()
        width = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, x in enumerate(ids):  # left padding: the last column is every row's last token
            input_ids[row, width - len(x) :] = torch.tensor(x, dtype=torch.long)
            mask[row, width - len(x) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            hidden = self._body(
                input_ids=input_ids.to(self.device),
                attention_mask=mask.to(self.device),
                position_ids=positions.to(self.device),
                use_cache=False,
            ).last_hidden_state[:, -1, :]
            logits = hidden.float() @ self._direction + self._offset
            scores = torch.sigmoid(logits).cpu()
        if not torch.isfinite(scores).all():
            raise EngineError(
                f"the model produced non-finite scores in {self.dtype}; try dtype='float32'"
            )
        result: list[float] = scores.tolist()
        return result

    def _release(self) -> None:
        torch = _import_torch()
        del self._body, self._direction
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _load_tokenizer(name: str, options: dict[str, Any]) -> Any:
    from transformers import AutoTokenizer

    if _looks_like_path(name):
        folder = Path(name).expanduser()
        if not folder.is_dir():
            raise ModelLoadError(f"no such model folder: {name!r}")
        if not (folder / "config.json").is_file():
            raise ModelLoadError(f"{name!r} is not a model folder: it has no config.json")
    try:
        return AutoTokenizer.from_pretrained(name, **options)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"cannot load a tokenizer from {name!r}: {_one_line(exc)}") from exc


def _looks_like_path(name: str) -> bool:
    """Hub ids are ``name`` or ``owner/name``; anything else path-like is a local folder."""
    return (
        Path(name).exists()
        or name.startswith(("/", ".", "~"))
        or name.count("/") > 1
        or (os.sep != "/" and os.sep in name)
    )


def _load_model(name: str, dtype: torch_.dtype, options: dict[str, Any]) -> Any:
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(
            name, dtype=dtype, attn_implementation="sdpa", **options
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"cannot load a causal LM from {name!r}: {_one_line(exc)}") from exc


def _one_line(exc: BaseException, limit: int = 300) -> str:
    """transformers' errors span many lines; a CLI error must fit on one."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _yes_no_ids(tokenizer: Any, name: str) -> tuple[int, int]:
    """The ids of ``yes`` and ``no``, which must each be one token, as in Qwen3's vocabulary."""
    ids = []
    for token in ("yes", "no", "<|im_start|>", "<|im_end|>"):
        tid = tokenizer.convert_tokens_to_ids(token)
        if not isinstance(tid, int) or tid == tokenizer.unk_token_id:
            raise ModelLoadError(
                f"{name!r} is not a Qwen3 reranker: its tokenizer has no single token {token!r}"
            )
        ids.append(tid)
    return ids[0], ids[1]


def _pad_id(tokenizer: Any) -> int:
    """Any id works for padding (it is masked out); Qwen's is <|endoftext|>."""
    for tid in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if isinstance(tid, int):
            return tid
    return 0
