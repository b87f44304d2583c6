"""Actions are text: the JSON of an OpenAI chat assistant message.

``{"content": "Hello!"}`` says something to the conversation partner;
``{"tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_order",
"arguments": "{\\"order_id\\": \\"O1\\"}"}}]}`` calls tools (arguments may also be an object).
Anything else is a malformed action: the agent gets an error observation, nothing crashes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from trajgym import jsonio


class ActionError(ValueError):
    """The action text is not a valid assistant message."""


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: Any
    error: str | None = None  # arguments that are not a JSON object


@dataclass
class ParsedAction:
    content: str | None
    tool_calls: list[ToolCall] = field(default_factory=list)


def parse_action(text: str, turn: int) -> ParsedAction:
    """Parse one action. Raises ActionError with a message meant for the agent."""
    if not isinstance(text, str):
        raise ActionError(f"an action is a string of JSON, got {type(text).__name__}")
    stripped = text.strip()
    if not stripped.startswith("{"):
        raise ActionError('an action is the JSON of an assistant message, e.g. {"content": "Hi"}')
    try:
        msg = jsonio.loads(stripped)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ActionError(f"the action is not valid JSON: {exc}") from None
    return parse_message(msg, turn)


def parse_message(msg: Any, turn: int) -> ParsedAction:
    """:func:`parse_action` of an action already decoded (``msg``: the message, not its text)."""
    if not isinstance(msg, dict):
        raise ActionError("the action must be a JSON object")
    if msg.get("role", "assistant") != "assistant":
        raise ActionError(f"role must be 'assistant', got {msg.get('role')!r}")
    content = msg.get("content")
    if content is not None and not isinstance(content, str):
        raise ActionError("content must be a string or null")
    raw_calls = msg.get("tool_calls") or []
    if not isinstance(raw_calls, list):
        raise ActionError("tool_calls must be a list")
    calls = [_parse_call(c, turn, k) for k, c in enumerate(raw_calls)]
    if not calls and not (content and content.strip()):
        raise ActionError("the action has neither content nor tool calls")
    return ParsedAction(content.strip() if content else None, calls)


def _parse_call(raw: Any, turn: int, k: int) -> ToolCall:
    if not isinstance(raw, dict):
        raise ActionError(f"tool_calls[{k}] must be an object")
    fn = raw.get("function", raw)
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise ActionError(f"tool_calls[{k}] needs function.name")
    given = raw.get("id")
    call_id: str = given if isinstance(given, str) and given else f"call_{turn}_{k}"
    name: str = fn["name"]
    args = fn.get("arguments", {})
    if isinstance(args, str):
        try:
            args = jsonio.loads(args) if args.strip() else {}
        except (json.JSONDecodeError, RecursionError) as exc:
            return ToolCall(call_id, name, args, f"arguments are not valid JSON: {exc}")
    if not isinstance(args, dict):
        return ToolCall(call_id, name, args, "arguments must be a JSON object")
    return ToolCall(call_id, name, args)


def say(content: str) -> str:
    """The action text of a plain message."""
    return jsonio.text({"role": "assistant", "content": content})


def call(tool: str, arguments: dict[str, Any] | None = None, /, **kwargs: Any) -> str:
    """The action text of one tool call: ``call("get_order", order_id="O1")``."""
    return calls([(tool, {**(arguments or {}), **kwargs})])


def calls(items: list[tuple[str, dict[str, Any]]], content: str | None = None) -> str:
    """The action text of several tool calls (and optional content). The env gives them ids."""
    tool_calls = [
        {"type": "function", "function": {"name": name, "arguments": jsonio.text(args)}}
        for name, args in items
    ]
    return jsonio.text({"role": "assistant", "content": content, "tool_calls": tool_calls})
