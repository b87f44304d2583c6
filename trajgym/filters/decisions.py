"""The decision chain of a trajectory: what the agent under training decided, turn by turn.

Dedup and the diversity figures look at decisions only, never at what the customer said or what a
tool answered: two episodes that made the same decisions are copies, however the customer worded
the request. A decision is one of

- ``say: <message>`` a plain message to the partner,
- ``call <tool> <arguments as canonical JSON>`` a tool call (one per call of a multi-call step),
- ``malformed`` an action that was not a valid assistant message (its text is noise, not a decision).

Text is normalized (Unicode NFKC, case-folded, runs of white space made one space), so a copy that
differs only in case or spacing is an exact duplicate. These lines (:func:`decision_lines`) are the
exact form, hashed for exact dedup; the embedding model reads the same decisions in a shorter form
(:func:`embedding_lines`).

    >>> normalize("  Done:\\tI REFUNDED  $20. ")
    'done: i refunded $20.'
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

from trajgym.trajectory.schema import Trajectory

DEFAULT_ROLES: tuple[str, ...] = ("support",)
"""Whose decisions count: the role the agent under training plays."""

SAY = "say"
MALFORMED = "malformed"

_SPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """``text`` in a canonical form: NFKC, case-folded, white space collapsed, stripped."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def _lines(traj: Trajectory, roles: Sequence[str], call: Callable[[str, Any], str], say: Callable[[str], str],
           malformed: str) -> list[str]:
    """One line per decision of ``roles``: ``call(name, arguments)``, ``say(message)`` or ``malformed``."""
    lines: list[str] = []
    for step in traj.steps:
        if step.role not in roles:
            continue
        if step.error is not None:
            lines.append(malformed)
            continue
        lines.extend(call(c.name, c.arguments) for c in step.tool_calls)
        if step.message is not None:
            lines.append(say(step.message))
    return lines


def action_names(traj: Trajectory, roles: Sequence[str] = DEFAULT_ROLES) -> list[str]:
    """The sequence of action names of ``roles``: tool names, ``say`` and ``malformed``.

    This is the chain the diversity figures count (distinct chains, n-gram entropy).
    """
    return _lines(traj, roles, lambda name, _: name, lambda _: SAY, MALFORMED)


def _canonical_call(name: str, arguments: Any) -> str:
    return f"call {name} {json.dumps(arguments, sort_keys=True, ensure_ascii=False, separators=(',', ':'))}"


def _readable_call(name: str, arguments: Any) -> str:
    if not isinstance(arguments, dict):
        return f"{name}({json.dumps(arguments, ensure_ascii=False)})"
    args = ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}"
                     for k, v in sorted(arguments.items()))
    return f"{name}({args})"


def decision_lines(traj: Trajectory, roles: Sequence[str] = DEFAULT_ROLES) -> list[str]:
    """One normalized line per decision of ``roles`` (see the module docstring): the exact form."""
    return _lines(traj, roles, lambda name, args: normalize(_canonical_call(name, args)),
                  lambda message: normalize(f"{SAY}: {message}"), MALFORMED)


def embedding_lines(traj: Trajectory, roles: Sequence[str] = DEFAULT_ROLES) -> list[str]:
    """The decisions as the embedding model reads them: messages as said, calls as
    ``tool(key=value, ...)``, about 30% fewer word pieces than :func:`decision_lines` (the model's
    time grows with them) for the same content.

        >>> from trajgym.filters.decisions import _readable_call
        >>> _readable_call("get_order", {"order_id": "O1", "fields": ["status"]})
        'get_order(fields=["status"], order_id=O1)'
    """
    return _lines(traj, roles, lambda name, args: normalize(_readable_call(name, args)), normalize,
                  f"({MALFORMED} action)")


def chain_text(traj: Trajectory, roles: Sequence[str] = DEFAULT_ROLES) -> str:
    """The decision chain as one text, a decision a line."""
    return "\n".join(decision_lines(traj, roles))


def chain_hash(traj: Trajectory, roles: Sequence[str] = DEFAULT_ROLES) -> str:
    """sha256 (16 hex) of :func:`chain_text`: equal for exact duplicates."""
    return hashlib.sha256(chain_text(traj, roles).encode()).hexdigest()[:16]
