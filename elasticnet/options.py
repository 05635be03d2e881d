"""Config fields that carry their own help text and vocabulary, so validation, ``--help`` (with choices) and
the README's option table all come from the dataclass definitions (:mod:`elasticnet.config`)."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from typing import Any


def opt(default: Any = dataclasses.MISSING, help: str = "", *, factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field with ``help`` in its metadata (``factory`` for mutable defaults)."""
    meta = {"help": help}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def choices(tp: Any) -> tuple[str, ...]:
    """The allowed values of a ``Literal[...]``-typed field; empty for any other type."""
    return typing.get_args(tp) if typing.get_origin(tp) is typing.Literal else ()


def help_of(f: dataclasses.Field) -> str:
    return f.metadata.get("help", "")
