"""Tool calls written as text: the ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``
convention (Hermes, Qwen and others), for servers that return them in ``content`` rather than
through the tools API.

A block that is not a JSON object with a ``name`` becomes a call with an empty name, so the env
records the action as malformed (the model's mistake), keeping the raw text in the action.
"""

from __future__ import annotations

import json
import re
from typing import Any

TOOL_CALL_RE = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)


def has_text_tool_calls(text: str | None) -> bool:
    return bool(text) and "<tool_call>" in (text or "")


def parse_text_tool_calls(text: str, *, id_prefix: str = "call") -> tuple[str | None, list[dict[str, Any]]]:
    """Split ``text`` into the content outside ``<tool_call>`` blocks and OpenAI-format tool calls.

    Arguments are re-encoded as a JSON string (as the tools API returns them). A block that does
    not parse, or has no ``name``, gives ``{"function": {"name": "", "arguments": <raw block>}}``.
    """
    calls: list[dict[str, Any]] = []
    for k, match in enumerate(TOOL_CALL_RE.finditer(text)):
        raw = match.group(1).strip()
        call_id = f"{id_prefix}_{k}"
        try:
            obj = json.loads(raw)
        except (json.JSONDecodeError, RecursionError):
            obj = None
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"]:
            calls.append({"id": call_id, "type": "function", "function": {"name": "", "arguments": raw}})
            continue
        args = obj.get("arguments", obj.get("parameters", {}))
        encoded = args if isinstance(args, str) else json.dumps(args)
        calls.append({"id": call_id, "type": "function",
                      "function": {"name": obj["name"], "arguments": encoded}})
    rest = TOOL_CALL_RE.sub("", text).strip()
    return (rest or None), calls


def format_text_tool_call(name: str, arguments: dict[str, Any]) -> str:
    """The text form of one tool call (what a model following the convention writes)."""
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"
