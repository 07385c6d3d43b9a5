"""Is a model name a local folder or a Hub id, and is the folder a model? (every engine asks)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ModelLoadError

__all__ = ["local_folder", "looks_like_path"]


def looks_like_path(name: str) -> bool:
    """Hub ids are ``name`` or ``owner/name``; anything else path-like is a local folder."""
    return (
        Path(name).exists()
        or name.startswith(("/", ".", "~"))
        or name.count("/") > 1
        or (os.sep != "/" and os.sep in name)
    )


def local_folder(name: str) -> Path | None:
    """The model folder ``name`` names, or ``None`` for a Hub id.

    Raises:
        ModelLoadError: ``name`` is a path, but not to a folder with a ``config.json``.
    """
    if not looks_like_path(name):
        return None
    folder = Path(name).expanduser()
    if not folder.is_dir():
        raise ModelLoadError(f"no such model folder: {name!r}")
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"{name!r} is not a model folder: it has no config.json")
    return folder
