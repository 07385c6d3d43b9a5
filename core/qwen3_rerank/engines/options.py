"""Typed engine options: building an engine's options from keywords, and the checks they share.

Each engine declares its options as a frozen dataclass next to the engine (``VllmOptions``,
``RemoteOptions``, ``TorchOptions``) whose ``__post_init__`` checks the values. Keywords an
engine does not take are refused here, naming the engine, instead of reaching a library that
would ignore them or fail with its own message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from ..errors import ConfigurationError

__all__ = ["check_choice", "check_int", "check_number", "options_from", "refuse_unknown"]

T = TypeVar("T")


def options_from(engine: str, options_class: type[T], given: Mapping[str, Any]) -> T:
    """``options_class(**given)``, after checking that the engine takes every name given.

    Raises:
        ConfigurationError: A name the engine does not take (the message names the engine and
            the options it does take), or a value its options class refuses.
    """
    if not dataclasses.is_dataclass(options_class):
        raise TypeError(f"{options_class!r} is not a dataclass")
    taken = {f.name for f in dataclasses.fields(options_class) if f.init}
    refuse_unknown(engine, given, taken)
    try:
        return options_class(**given)
    except TypeError as exc:  # a required option left out
        raise ConfigurationError(f"the {engine} engine: {exc}") from exc


def refuse_unknown(engine: str, given: Mapping[str, Any], taken: set[str]) -> None:
    """Raises ``ConfigurationError`` naming ``engine`` if ``given`` has a name not in ``taken``."""
    unknown = sorted(set(given) - taken)
    if unknown:
        names = ", ".join(unknown)
        raise ConfigurationError(
            f"the {engine} engine does not take {names}; it takes: {', '.join(sorted(taken))}"
        )


def check_int(name: str, value: object, least: int, *, optional: bool = False) -> None:
    """``value`` is an int (not a bool) ``>= least``, or ``None`` when ``optional``."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigurationError(f"{name} must be an integer >= {least}, got {value!r}")


def check_number(name: str, value: object, *, most: float | None = None) -> None:
    """``value`` is a number ``> 0`` (and ``<= most`` when given)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not value > 0
        or (most is not None and value > most)
    ):
        bound = f" and <= {most}" if most is not None else ""
        raise ConfigurationError(f"{name} must be a number > 0{bound}, got {value!r}")


def check_choice(name: str, value: object, choices: tuple[object, ...]) -> None:
    """``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigurationError(f"unknown {name} {value!r}; choose one of {choices}")
