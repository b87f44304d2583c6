"""The chat half of every model agent: the role's message history and the model's answer as an action.

A backend (a server over HTTP, transformers in process) only has to produce one answer over
:attr:`ChatAgent.history`; :meth:`ChatAgent.answer` turns it into the action the env takes (tool
calls from the tools API or from ``<tool_call>`` text, else a plain message) and remembers it, so
every backend keeps the same history for the same conversation.
"""

from __future__ import annotations

import abc
import json
from typing import Any, cast

from trajgym import jsonio
from trajgym.agents.base import Agent, AgentContext
from trajgym.agents.tokens import TokenChain
from trajgym.agents.toolcalls import has_text_tool_calls, parse_text_tool_calls
from trajgym.envs.actions import ActionError, parse_message
from trajgym.errors import TrajgymError
from trajgym.trajectory.chat import REPLY_SPEC, REPLY_TOOL
from trajgym.trajectory.schema import Backend, Generation
from trajgym.trajectory.tokens import NOT_EXTENDED

TOOL_CHOICES = (None, "auto", "required", "none")
TOOL_CALL_PREFILL = "<tool_call>\n"
"""What a model that must call a tool (``tool_choice="required"``) finds at the start of its answer
when the agent renders the prompt itself (token ids, an in-process model): the text form of a call begun."""



_GENERATION_FIELDS = tuple(Generation.__annotations__)


_NO_GENERATION = dict.fromkeys(_GENERATION_FIELDS)


def generation(backend: Backend, **fields: Any) -> Generation:
    """A :class:`~trajgym.trajectory.schema.Generation` with every field not given None (the
    sampling settings empty)."""
    out: dict[str, Any] = {**_NO_GENERATION, "sampling": {}, **fields, "backend": backend}
    if len(out) != len(_GENERATION_FIELDS):
        raise TypeError(f"not fields of a Generation: {sorted(set(out) - set(_GENERATION_FIELDS))}")
    return cast(Generation, out)


def check_sampling(sampling: dict[str, Any] | None, known: tuple[str, ...]) -> dict[str, Any]:
    """A copy of ``sampling``; a clear error for a setting the backend does not know."""
    unknown = set(sampling or {}) - set(known)
    if unknown:
        raise TrajgymError(f"unknown sampling setting(s) {sorted(unknown)} (known: {', '.join(known)})")
    return dict(sampling or {})


def check_tool_choice(tool_choice: str | None) -> str | None:
    if tool_choice not in TOOL_CHOICES:
        raise TrajgymError(f"tool_choice must be auto, required, none or None, got {tool_choice!r}")
    return tool_choice


class ChatAgent(Agent):
    """A model agent that keeps its role's whole chat history (OpenAI message format).

    Subclasses implement :meth:`generate`: one answer over :attr:`history` (given the role's tools
    in ``info["tools"]``), passed through :meth:`answer`, with :attr:`generation` set.

    Args:
        text_tool_calls: also read ``<tool_call>{...}</tool_call>`` blocks in the answer's text.
        name: the agent's name in the trajectory (default its kind).
        reply_tool: offer :data:`REPLY_TOOL` with the role's tools, its calls read as the answer's
            message (default: when ``tool_choice`` is ``"required"``).
    """

    tool_choice: str | None = None

    def __init__(self, *, text_tool_calls: bool = True, name: str | None = None,
                 reply_tool: bool | None = None) -> None:
        if name:
            self.name = name
        super().__init__()
        self.text_tool_calls = text_tool_calls
        self.reply_tool = reply_tool
        self._with_reply: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None
        self.history: list[dict[str, Any]] = []
        self.calls = 0
        self.chain: TokenChain | None = None
        """The role's token sequence, when the backend sends token ids (set by the backend per episode)."""
        self.served: tuple[list[int], list[int]] | None = None
        """The last turn's prompt and completion ids as a server that renders the chat reported them."""

    def reset(self, ctx: AgentContext) -> None:
        self.history = []
        self.calls = 0
        self.generation = None
        self.served = None
        self.chain = None

    def extra_tools(self) -> list[dict[str, Any]]:
        return [REPLY_SPEC] if self.replies_by_tool else []

    def replace_message(self, index: int, message: dict[str, Any]) -> None:
        """Replace ``history[index]`` (a new system prompt, say): later requests send the new one; a
        token chain starts over from a full rendering, recorded as a chain break."""
        self.history[index] = message
        if self.chain is not None and index < self.chain.pending:
            self.chain.start_over(f"message {index} of the conversation was replaced ({message.get('role')})")

    def served_tokens(self, prompt: list[int] | None, completion: list[int] | None
                      ) -> tuple[int | None, list[int] | None, str | None]:
        """How to record a turn a server rendered and tokenized itself (``prompt`` and ``completion``
        as it reported them): ``(prompt_from, prompt_ids, chain_break)``, only the new prompt ids
        when the prompt extends the previous turn's prompt and completion. (Compared in place, never
        copied: at 1,000 episodes in flight these lists are most of what a turn's record holds.)"""
        before, self.served = self.served, (prompt, completion or []) if prompt is not None else None
        if prompt is None:
            return None, None, None
        if before is None:
            return 0, prompt, None
        last_prompt, last_completion = before
        n, m = len(last_prompt), len(last_prompt) + len(last_completion)
        if len(prompt) >= m and prompt[:n] == last_prompt and prompt[n:m] == last_completion:
            return m, prompt[m:], None
        return 0, prompt, NOT_EXTENDED

    @property
    def replies_by_tool(self) -> bool:
        return self.reply_tool if self.reply_tool is not None else self.tool_choice == "required"

    def tools_of(self, info: dict[str, Any]) -> list[dict[str, Any]]:
        """The tool schemas to offer the model: the role's, plus :data:`REPLY_SPEC` when
        :attr:`replies_by_tool` (the same list object for the same role's tools, so encodings cache)."""
        tools: list[dict[str, Any]] = info.get("tools") or []
        if not tools or not self.replies_by_tool:
            return tools
        if any((t.get("function") or {}).get("name") == REPLY_TOOL for t in tools):
            raise TrajgymError(f"the role has a tool named '{REPLY_TOOL}', the name of the reply tool of a model "
                               f"forced to call tools: rename that tool, or set reply_tool: false")
        if self._with_reply is None or self._with_reply[0] is not tools:
            self._with_reply = (tools, [REPLY_SPEC, *tools])
        return self._with_reply[1]

    def observe(self, messages: list[dict[str, Any]]) -> None:
        """Add the env's new messages for this role to the history."""
        self.history.extend(messages)

    async def aact(self, messages: list[dict[str, Any]], info: dict[str, Any]) -> str:
        self.observe(messages)
        return await self.generate(info)

    @abc.abstractmethod
    async def generate(self, info: dict[str, Any]) -> str:
        """One answer over the history; returns :meth:`answer`'s action and sets :attr:`generation`."""

    def answer(self, content: str | None, tool_calls: list[dict[str, Any]] | None = None
               ) -> tuple[str, str | None]:
        """The action for the model's answer (its text and its tools-API calls), remembered in the
        history; and how its tool calls came (``"api"``, ``"text"`` or None). Call ids are
        ``call_{calls}_{k}`` unless the answer gave its own."""
        calls = list(tool_calls or [])
        fmt = "api" if calls else None
        text = content
        if not calls and self.text_tool_calls and isinstance(content, str) and has_text_tool_calls(content):
            text, calls = parse_text_tool_calls(content, id_prefix=f"call_{self.calls}")
            fmt = "text"
        if calls and self.replies_by_tool:
            text, calls = _replies_as_text(text, calls)
        action_msg: dict[str, Any] = {"role": "assistant", "content": text}
        if calls:
            action_msg["tool_calls"] = [_clean_call(c, f"call_{self.calls}_{k}") for k, c in enumerate(calls)]
        action = jsonio.text(action_msg)
        self._remember(action, action_msg, content)
        return action, fmt

    def _remember(self, action: str, action_msg: dict[str, Any], raw: str | None) -> None:
        """The assistant turn as the history keeps it: a malformed one as the text it was, so no
        tool call without its result is sent back."""
        if action_msg.get("content") and not action_msg.get("tool_calls"):
            self.history.append(action_msg)  # plain text: always a valid action
            return
        try:
            parse_message(action_msg, 0)  # what parse_action(action) checks, without decoding it again
        except ActionError:
            self.history.append({"role": "assistant", "content": raw if raw is not None else action})
            return
        self.history.append(action_msg)


def _replies_as_text(text: str | None, calls: list[dict[str, Any]]) -> tuple[str | None, list[dict[str, Any]]]:
    """Calls of :data:`REPLY_TOOL` with a readable ``content`` become the message's text; anything
    else (other tools, a reply call with broken arguments) stays a call, for the env to judge."""
    said: list[str] = [text] if isinstance(text, str) and text.strip() else []
    rest = []
    for call in calls:
        fn = call.get("function") or {}
        if fn.get("name") == REPLY_TOOL:
            args = fn.get("arguments", "{}")
            try:
                parsed = json.loads(args) if isinstance(args, str) else args
            except ValueError:
                parsed = None
            if isinstance(parsed, dict) and isinstance(parsed.get("content"), str) and parsed["content"].strip():
                said.append(parsed["content"])
                continue
        rest.append(call)
    return ("\n".join(said) if said else None), rest


def _clean_call(call: dict[str, Any], default_id: str) -> dict[str, Any]:
    """The call as the env takes it, with an id (so the tool result matches it in the history)."""
    fn = call.get("function") or {}
    return {"id": call.get("id") or default_id, "type": "function",
            "function": {"name": fn.get("name"), "arguments": fn.get("arguments", "{}")}}
