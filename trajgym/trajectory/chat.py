"""An episode rendered as a chat, and the conventions of a model's chat that the data keeps.

:func:`chat_messages` gives the episode from one role's side as chat messages for a chat template
(a reward model, a judge). :data:`REPLY_SPEC` is the tool a model forced to call tools
is offered to talk with: its calls are recorded as the step's message.

    >>> clip("abcdefghij", 4)
    'abcd… [6 more characters]'
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from trajgym.trajectory.schema import ToolCallRecord, Trajectory

REPLY_TOOL = "reply"
REPLY_SPEC: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": REPLY_TOOL,
        "description": "Send a chat message to the person you are talking with: ask a question, "
                       "give an answer, confirm what you did.",
        "parameters": {"type": "object", "properties": {"content": {"type": "string",
                                                                    "description": "the message"}},
                       "required": ["content"], "additionalProperties": False},
    },
}
"""A tool that is a chat message. A model forced to call tools (``tool_choice="required"``, which
small models need to call tools at all) could otherwise never talk; a call to it becomes the
answer's message, never a tool call the env sees. An agent that offers it records it in its
:class:`~trajgym.trajectory.schema.AgentRecord`'s ``extra_tools``."""


@dataclass(frozen=True)
class Budget:
    """Characters allowed per part of a rendering (the whole transcript's budget is separate)."""

    message: int = 1500
    arguments: int = 300
    result: int = 400
    instructions: int = 4000


DEFAULT_BUDGET = Budget()


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, with a marker saying how many were cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} more characters]"


def as_text(value: Any) -> str:
    """A tool's arguments or result as text: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def instructions(traj: Trajectory, role: str = "support") -> str | None:
    """The system prompt ``role`` was given (its policy), from its first observation; None if none."""
    for step in traj.steps:
        if step.role == role:
            for message in step.observation:
                if message.get("role") == "system" and isinstance(message.get("content"), str):
                    return str(message["content"])
            return None
    return None


def call_text(call: ToolCallRecord, budget: Budget = DEFAULT_BUDGET) -> str:
    """``name(arguments) -> ok: result`` (or ``-> error (type): ...``), each part clipped."""
    status = "ok" if call.ok else f"error ({call.error_type or 'error'})"
    return (f"{call.name}({clip(as_text(call.arguments), budget.arguments)}) -> "
            f"{status}: {clip(as_text(call.content), budget.result)}")


def chat_messages(traj: Trajectory, *, role: str = "support", include_instructions: bool = True,
                  budget: Budget = DEFAULT_BUDGET) -> list[dict[str, str]]:
    """The episode as a chat from ``role``'s side, for a chat template: ``role``'s steps are the
    ``assistant`` (tool calls written into its text, consecutive steps merged into one message),
    everyone else is the ``user`` (a supervisor's words marked as such), the instructions the
    ``system``. Only what the agent saw: no fault or violation notes."""
    out: list[dict[str, str]] = []
    system = instructions(traj, role) if include_instructions else None
    if system:
        out.append({"role": "system", "content": system})
    for step in traj.steps:
        mine = step.role == role
        parts: list[str] = []
        if step.error:
            parts.append(f"({step.role}: malformed action {clip(step.action, budget.arguments)})")
        for call in step.tool_calls:
            text = f"[tool call] {call_text(call, budget)}"
            parts.append(text if mine else f"({step.role}: {text})")
        if step.message:
            text = clip(step.message, budget.message)
            parts.append(text if mine or step.role == "customer" else f"[{step.role}] {text}")
        if not parts:
            continue
        speaker = "assistant" if mine else "user"
        content = "\n".join(parts)
        if out and out[-1]["role"] == speaker:
            out[-1]["content"] += "\n" + content
        else:
            out.append({"role": speaker, "content": content})
    return out
