"""Is a model name a local folder, and is that folder a model? Checked before any library
loads it, so that a typo gives one clear ``ModelLoadError`` instead of a Hub lookup error."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ModelLoadError

__all__ = ["check_model_folder", "looks_like_path"]


def looks_like_path(name: str) -> bool:
    """Hub ids are ``name`` or ``owner/name``; anything else path-like is a local folder."""
    return (
        Path(name).exists()
        or name.startswith(("/", ".", "~"))
        or name.count("/") > 1
        or (os.sep != "/" and os.sep in name)
    )


def check_model_folder(name: str) -> Path | None:
    """The folder ``name`` names, checked to exist and hold a ``config.json``; ``None`` for a
    Hub id.

    Raises:
        ModelLoadError: A path that is not a folder, or a folder without ``config.json``.
    """
    if not looks_like_path(name):
        return None
    folder = Path(name).expanduser()
    if not folder.is_dir():
        raise ModelLoadError(f"no such model folder: {name!r}")
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"{name!r} is not a model folder: it has no config.json")
    return folder
