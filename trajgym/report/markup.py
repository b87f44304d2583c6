"""A tiny HTML builder that escapes by default: text never becomes markup by accident.

Trajectories carry text written by models and simulators; every piece of it reaches the page
through :func:`el` (or :func:`esc`), which escapes anything that is not already :class:`Html`.

Example::

    >>> el("td", "<script>", class_="x")
    '<td class="x">&lt;script&gt;</td>'
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from types import GeneratorType

NA = "\N{EN DASH}"
"""What a cell shows where there is no value."""

VOID = frozenset({"br", "hr", "img", "input", "meta", "link", "col", "wbr"})


class Html(str):
    """A string that is already HTML: :func:`esc` leaves it as it is."""

    __slots__ = ()


Child = object
"""What may go inside an element: text (escaped), :class:`Html`, None (nothing), or a list, tuple or
generator of those."""


def esc(value: Child) -> Html:
    """``value`` as HTML: :class:`Html` unchanged, None as nothing, lists, tuples and generators
    joined, anything else escaped as text."""
    if isinstance(value, Html):
        return value
    if value is None:
        return Html("")
    if isinstance(value, list | tuple | GeneratorType):
        return Html("".join(esc(v) for v in value))
    return Html(html.escape(str(value), quote=True))


def _attrs(attrs: dict[str, object]) -> str:
    out = []
    for key, value in attrs.items():
        if value is None or value is False:
            continue
        name = key.rstrip("_").replace("_", "-")
        out.append(f" {name}" if value is True else f' {name}="{html.escape(str(value), quote=True)}"')
    return "".join(out)


def el(tag: str, *children: Child, **attrs: object) -> Html:
    """The element ``<tag attrs>children</tag>``. Attribute names drop a trailing ``_``
    (``class_``) and turn ``_`` into ``-`` (``data_sort``); None and False leave one out."""
    if tag in VOID:
        if children:
            raise ValueError(f"<{tag}> is a void element: it takes no children")
        return Html(f"<{tag}{_attrs(attrs)}>")
    return Html(f"<{tag}{_attrs(attrs)}>{esc(children)}</{tag}>")


def join(parts: Iterable[Child], sep: Child = "") -> Html:
    """The parts as HTML, separated by ``sep``."""
    return Html(esc(sep).join(esc(p) for p in parts))
