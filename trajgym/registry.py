"""Registries by name: one lookup and one "did you mean" for every registry in trajgym.

A registry is a mapping of name -> entry (agents, scorers, sandbox backends, domains). An entry may
be a lazy ``"module:attr"`` string, imported by :func:`resolve` only once it is looked up, so that
a registry names optional or heavy code without importing it. A name the registry lacks is an
error that names the closest known one and lists them all:

>>> lookup({"oracle": 1, "random": 2}, "oracel", what="agent")
Traceback (most recent call last):
    ...
trajgym.errors.TrajgymError: unknown agent 'oracel'; did you mean 'oracle'? (known: oracle, random)
>>> resolve("trajgym.errors:TrajgymError").__name__
'TrajgymError'
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from trajgym.errors import TrajgymError

T = TypeVar("T")


def suggest(word: str, choices: Iterable[str], *, cutoff: float = 0.6) -> str | None:
    """The choice closest to ``word``, or None when none is at least ``cutoff`` alike (difflib's ratio).

    >>> suggest("polcy", ["outcome", "policy"])
    'policy'
    """
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=cutoff)
    return close[0] if close else None


@dataclass(frozen=True)
class Unknown:
    """A name a registry lacks: what kind of thing it named, the closest known name, all known names.

    ``str()`` is the message: ``unknown <what> 'x'; did you mean 'y'? (known: a, b)``.
    """

    what: str
    name: str
    close: str | None
    known: tuple[str, ...]

    def __str__(self) -> str:
        hint = f"; did you mean '{self.close}'?" if self.close else ""
        return f"unknown {self.what} '{self.name}'{hint} (known: {', '.join(self.known)})"


def lookup(registry: Mapping[str, T], name: str, *, what: str,
           error: Callable[[str], Exception] = TrajgymError,
           message: Callable[[Unknown], str] = str, cutoff: float = 0.6) -> T:
    """The entry registered as ``name``.

    An unknown name raises ``error`` (the registry's own error class) with ``message`` of the
    :class:`Unknown` (by default ``unknown <what> 'x'; did you mean 'y'? (known: ...)``).
    """
    try:
        return registry[name]
    except KeyError:
        unknown = Unknown(what, name, suggest(str(name), registry, cutoff=cutoff), tuple(sorted(registry)))
        raise error(message(unknown)) from None


def resolve(target: str) -> Any:
    """The object a lazy ``"module:attr"`` entry names, its module imported now."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)
