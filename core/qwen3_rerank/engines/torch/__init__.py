"""The torch engine (``pip install "qwen3-rerank[torch]"``): :class:`TorchEngine`, its
:class:`TorchOptions`.

Importing this package does not import torch: ``TorchOptions`` is plain Python, and
``TorchEngine`` is imported on first use (a missing torch is then a MissingDependencyError
naming the extra). How the engine is built: docs/how-it-works.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .options import TorchOptions, parse_bytes

if TYPE_CHECKING:
    from .engine import TorchEngine

__all__ = ["TorchEngine", "TorchOptions", "parse_bytes"]


def __getattr__(name: str) -> Any:
    if name == "TorchEngine":
        from ...errors import MissingDependencyError

        try:
            import torch  # noqa: F401
            import transformers  # noqa: F401
        except ImportError as exc:
            raise MissingDependencyError(exc.name or "torch", "torch") from exc
        from .engine import TorchEngine

        return TorchEngine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
