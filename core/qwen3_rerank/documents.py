"""Reading documents from files: one per line, or JSONL with a text field (CLI and web UI)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import InvalidInputError

__all__ = ["parse_documents", "read_documents"]


def read_documents(path: str | Path, jsonl: bool, field: str = "text") -> list[tuple[str, Any]]:
    """(text, id-or-None) for each non-blank line of a file."""
    file = Path(path)
    if not file.is_file():
        raise InvalidInputError(f"no such file: {path}")
    return parse_documents(file.read_bytes(), jsonl, field, str(path))


def parse_documents(
    data: bytes, jsonl: bool, field: str = "text", name: str = "input"
) -> list[tuple[str, Any]]:
    """(text, id-or-None) for each non-blank line; JSONL lines are objects with ``field`` (and
    optionally ``id``) or plain JSON strings. A leading UTF-8 byte-order mark is dropped.

    Raises:
        InvalidInputError: Not UTF-8, a line that is not JSON, or a JSON line without the field.
    """
    try:  # utf-8-sig: a byte-order mark (Windows editors write one) is not part of the text
        lines = data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{name} is not UTF-8 (byte {exc.start})") from exc
    records: list[tuple[str, Any]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if not jsonl:
            records.append((line, None))
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"line {number}: invalid JSON ({exc.msg})") from exc
        if isinstance(value, str):
            records.append((value, None))
        elif isinstance(value, dict) and isinstance(value.get(field), str):
            records.append((value[field], value.get("id")))
        else:
            raise InvalidInputError(
                f"line {number}: expected an object with a string {field!r} field"
            )
    return records
