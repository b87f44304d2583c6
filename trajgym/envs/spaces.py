"""Observation and action spaces: text carrying OpenAI-format chat.

Observation: ``Dict(messages=Text, status=Text)``. ``messages`` is the JSON list (ASCII-escaped,
so its charset is printable ASCII) of the chat messages that reached the agent since it last acted;
``status`` is ``act`` when it is the agent's turn, ``wait`` otherwise, ``done`` at the end.
Action: ``Text`` over the Basic Multilingual Plane, the JSON of an assistant message (see
:mod:`trajgym.envs.actions`). Anything sampled from it that does not parse is a malformed action.
"""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

from gymnasium import spaces

MAX_OBSERVATION_CHARS = 1 << 20
MAX_ACTION_CHARS = 1 << 14
STATUS = ("act", "wait", "done")

OBSERVATION_CHARSET = "".join(chr(c) for c in range(0x20, 0x7F))
ACTION_CHARSET = "\t\n\r" + "".join(
    chr(c) for c in range(0x20, 0x10000) if not 0xD800 <= c <= 0xDFFF and c != 0x7F
)


@functools.cache
def _observation_template() -> spaces.Dict:
    return spaces.Dict({
        "messages": spaces.Text(MAX_OBSERVATION_CHARS, min_length=2, charset=OBSERVATION_CHARSET),
        "status": spaces.Text(4, min_length=3, charset=OBSERVATION_CHARSET),
    })


@functools.cache
def _action_template() -> spaces.Text:
    return spaces.Text(MAX_ACTION_CHARS, min_length=0, charset=ACTION_CHARSET)


def observation_space() -> spaces.Dict:
    """A new observation space (cheap: the character tables are shared, the RNG is not)."""
    template = _observation_template()
    return spaces.Dict({k: copy.copy(v) for k, v in template.spaces.items()})


def action_space() -> spaces.Text:
    """A new action space (shares the character tables, has its own RNG)."""
    return copy.copy(_action_template())


def encode_observation(messages: list[dict[str, Any]], status: str) -> dict[str, str]:
    """The observation for ``messages``, truncating the oldest if they exceed the space."""
    text = json.dumps(messages, ensure_ascii=True, separators=(",", ":"))
    while len(text) > MAX_OBSERVATION_CHARS and len(messages) > 1:
        messages = messages[1:]
        text = json.dumps(messages, ensure_ascii=True, separators=(",", ":"))
    if len(text) > MAX_OBSERVATION_CHARS:
        text = json.dumps([{"role": "user", "name": "environment",
                            "content": "[message too long to show]"}])
    return {"messages": text, "status": status}
