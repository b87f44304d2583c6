"""A role's conversation as token ids that only ever grow: what a model agent sends when it wants
its trajectories token-exact.

Re-rendering a conversation at every turn (what a chat API does) and tokenizing the text again
need not give back the ids the model generated: the model's own answer is rendered from its parsed
form (tool calls re-serialised, a reply tool's call written as plain text), and the same text may
tokenize differently. :class:`TokenChain` never re-renders: the prompt of turn k+1 is turn k's
prompt, the completion's ids exactly as generated, then the ids of what is new (the rest of the
assistant turn's ending, the messages that came since, the next generation prompt), rendered with
the tokenizer's own chat template one piece at a time. Sent as token ids (vLLM's completions
endpoint takes a prompt as ids; an in-process model takes them directly), every turn extends the
previous one by construction.

The pieces are rendered by difference: the template over a fixed conversation ending in an
assistant message, and over the same conversation followed by the new messages; what the second
adds is the new messages' text. That holds for templates that render each message on its own
(ChatML and its kind, as the bundled SmolLM2's); a template that does not gives a conversation
whose prefix changes, and the chain then starts over from a full rendering, saying why.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trajgym.errors import TrajgymError

HF_HINT = "pip install torch==2.13.0 'trajgym[hf]' (or make hf-setup)"

_BASE: list[dict[str, Any]] = [{"role": "system", "content": "S"}, {"role": "assistant", "content": "A"}]


class TemplateDeltaError(TrajgymError):
    """The chat template does not render new messages as an addition to what came before."""


class ChatCodec:
    """A tokenizer's chat template rendered a piece at a time (see the module docstring).

    Args:
        tokenizer: a transformers tokenizer with a chat template.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        base = self.render(_BASE, tools=None, generation_prompt=False)
        cut = base.rfind("A")
        self._base = base
        self.closing = base[cut + 1:]
        """The text the template puts after an assistant message's content (``<|im_end|>\\n`` for ChatML)."""
        eos = tokenizer.eos_token_id
        self.eos_ids: set[int] = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])

    def render(self, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None,
               generation_prompt: bool) -> str:
        text: str = self.tokenizer.apply_chat_template(messages, tools=tools or None, tokenize=False,
                                                       add_generation_prompt=generation_prompt)
        return text

    def encode(self, text: str) -> list[int]:
        ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids

    def start(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, prefill: str = "") -> list[int]:
        """The ids of a whole conversation's prompt (the chain's first turn, or a restart)."""
        return self.encode(self.render(messages, tools=tools, generation_prompt=True) + prefill)

    def after(self, completion: Sequence[int], messages: list[dict[str, Any]], prefill: str = "") -> list[int]:
        """The ids that follow a completion: the rest of the assistant turn's ending (the whole of it
        when the completion stopped without its end-of-turn token), ``messages`` and the next
        generation prompt (and ``prefill``). Raises :class:`TemplateDeltaError` when the template
        does not render the messages as an addition."""
        closing = self.closing
        if completion and completion[-1] in self.eos_ids:
            said = self.tokenizer.decode([completion[-1]])
            if closing.startswith(said):
                closing = closing[len(said):]
        full = self.render([*_BASE, *messages], tools=None, generation_prompt=True)
        if not full.startswith(self._base):
            raise TemplateDeltaError("the chat template renders a conversation's earlier messages differently once "
                                     "more follow")
        return self.encode(closing + full[len(self._base):] + prefill)


@functools.lru_cache(maxsize=8)
def codec_for(folder: str) -> ChatCodec:
    """The :class:`ChatCodec` of the tokenizer in a local model folder, loaded once per process (the
    ``hf`` extra's transformers; never from a hub)."""
    if importlib.util.find_spec("transformers") is None:
        raise TrajgymError(f"token ids need the model's tokenizer, read with transformers: {HF_HINT}")
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise TrajgymError(f"no tokenizer folder {path}: give the folder of the served model's tokenizer (tokenizer "
                           "option), or serve a model from a folder on this machine")
    from transformers import AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise TrajgymError(f"cannot load the tokenizer in {path}: {exc}") from None
    if not getattr(tokenizer, "chat_template", None):
        raise TrajgymError(f"the tokenizer in {path} has no chat template; add a chat_template.jinja to the folder")
    return ChatCodec(tokenizer)


@dataclass
class TokenChain:
    """One role's token sequence across its model turns (see the module docstring).

    :meth:`prompt` gives the next turn's prompt ids and what to record of it; :meth:`completed`
    adds the model's completion. ``pending`` are the history's messages not yet in the chain.
    """

    codec: ChatCodec
    ids: list[int] = field(default_factory=list)
    pending: int = 0
    """Index in the history of the first message not yet rendered into :attr:`ids`."""
    restart: str | None = None
    """Why the next turn must render the whole conversation again (a replaced system prompt)."""
    last_completion: list[int] = field(default_factory=list)

    def prompt(self, history: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
               prefill: str = "") -> tuple[list[int], int, list[int], str | None]:
        """``(prompt ids, prompt_from, the ids new to this turn, chain break)`` for the next turn over
        ``history`` (whose messages up to :attr:`pending` are in the chain already)."""
        why = self.restart
        new: list[int] | None = None
        if self.ids and why is None:
            try:
                new = self.codec.after(self.last_completion, history[self.pending:], prefill)
            except TemplateDeltaError as exc:
                why = str(exc)
        if new is None:
            full = self.codec.start(history, tools, prefill)
            self.ids, self.restart = list(full), None
            self.pending = len(history)
            return list(full), 0, full, why
        start = len(self.ids)
        self.ids.extend(new)
        self.pending = len(history)
        return list(self.ids), start, new, None

    def completed(self, completion: Sequence[int], history_len: int) -> None:
        """Add the model's completion; the history now holds its answer up to ``history_len``."""
        self.ids.extend(completion)
        self.last_completion = list(completion)
        self.pending = history_len

    def start_over(self, why: str) -> None:
        """The next turn renders the whole conversation again (recorded as a chain break)."""
        self.restart = why
