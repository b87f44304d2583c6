"""A role's token sequence, rebuilt from its model turns, with the mask of what the model generated.

Each model turn of a role records the prompt tokens new to it (``prompt_from``, ``prompt_ids``)
and the completion it generated (``token_ids``, ``logprobs``): see
:class:`~trajgym.trajectory.schema.Generation`. When every turn extends the previous one (agents
that send token ids make it so by construction), the role's whole conversation is one sequence in
which exactly the completions' tokens are the model's, ready for a loss on them alone. A turn that
could not extend the previous one starts a new segment, and the rebuild says why.

    >>> chain = []
    >>> extend_chain(chain, [1, 2, 3])
    (0, [1, 2, 3], None)
    >>> chain += [1, 2, 3, 7, 8]          # the first prompt and its completion
    >>> extend_chain(chain, [1, 2, 3, 7, 8, 4, 5])
    (5, [4, 5], None)
    >>> extend_chain(chain, [1, 2, 9])[0]  # re-rendered differently: a new segment
    0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from trajgym.trajectory.schema import Trajectory

NOT_EXTENDED = "the server rendered a prompt that does not start with the previous prompt and completion"


def extend_chain(chain: list[int], prompt: Sequence[int]) -> tuple[int, list[int], str | None]:
    """How to record a turn whose whole prompt is ``prompt``, after ``chain`` (the previous turns'
    prompt and completion ids): ``(prompt_from, prompt_ids, chain_break)``. Only the new tokens
    when ``prompt`` extends ``chain``; all of it, from 0, with the reason, when it does not."""
    n = len(chain)
    if n == 0:
        return 0, list(prompt), None
    if len(prompt) >= n and list(prompt[:n]) == chain:
        return n, list(prompt[n:]), None
    return 0, list(prompt), NOT_EXTENDED


@dataclass
class TokenSegment:
    """An unbroken run of a role's model turns as one token sequence."""

    ids: list[int] = field(default_factory=list)
    generated: list[bool] = field(default_factory=list)
    """Per token: whether the model generated it (the mask a loss on the model's own tokens uses)."""
    logprobs: list[float | None] = field(default_factory=list)
    """Per token: the recorded log-probability of a generated token, None for prompt tokens."""
    turns: list[int] = field(default_factory=list)
    """The turns (step numbers) whose completions are in it."""
    break_reason: str | None = None
    """Why this segment does not continue the one before (None for the first)."""
    start_turn: int | None = None
    """The turn whose prompt starts it."""
    spans: list[tuple[int, int]] = field(default_factory=list)
    """Per turn in :attr:`turns`: where its completion is in :attr:`ids` (start, end)."""

    def add(self, ids: Sequence[int], generated: bool, logprobs: Sequence[float] | None = None) -> None:
        if generated:
            self.spans.append((len(self.ids), len(self.ids) + len(ids)))
        self.ids.extend(ids)
        self.generated.extend([generated] * len(ids))
        if generated and logprobs is not None and len(logprobs) == len(ids):
            self.logprobs.extend(logprobs)
        else:
            self.logprobs.extend([None] * len(ids))

    def completions(self) -> list[list[int]]:
        """Each turn's completion, in the order of :attr:`turns` (two turns' completions stay apart
        even where no prompt token lies between them)."""
        return [self.ids[start:end] for start, end in self.spans]


@dataclass
class RoleTokens:
    """A role's token sequence: one segment when every turn extended the previous one."""

    role: str
    segments: list[TokenSegment]
    untokenized: list[int]
    """Model turns of the role whose completion has no token ids (a server without vLLM's
    extensions); a turn whose prompt ids were recorded still has them in its segment."""

    @property
    def exact(self) -> bool:
        """One unbroken sequence, every model turn in it."""
        return len(self.segments) <= 1 and not self.untokenized

    @property
    def breaks(self) -> list[tuple[int, str]]:
        """(turn, reason) where a segment starts anew."""
        return [(s.start_turn if s.start_turn is not None else -1, s.break_reason or "") for s in self.segments[1:]]


class TokenChainError(ValueError):
    """A trajectory's recorded token chain is inconsistent (a turn's prompt_from does not match)."""


def role_tokens(traj: Trajectory, role: str) -> RoleTokens:
    """Rebuild ``role``'s token sequence from its model turns' recorded token ids.

    Raises :class:`TokenChainError` when a turn says it extends the sequence at another position
    than the sequence's length (a damaged file)."""
    segments: list[TokenSegment] = []
    untokenized: list[int] = []
    for step in traj.steps:
        gen = step.generation
        if step.role != role or gen is None or gen["backend"] == "scripted":
            continue
        if gen["prompt_ids"] is None or gen["prompt_from"] is None:
            untokenized.append(step.turn)
            continue
        start = gen["prompt_from"]
        if start == 0:
            reason = (gen["chain_break"] or "the turn started the sequence over") if segments else None
            segments.append(TokenSegment(break_reason=reason, start_turn=step.turn))
        elif not segments or start != len(segments[-1].ids):
            have = len(segments[-1].ids) if segments else 0
            raise TokenChainError(f"episode {traj.episode_id}, turn {step.turn}: its prompt extends the {role}'s "
                                  f"sequence at token {start}, but the sequence has {have} tokens")
        seg = segments[-1]
        seg.add(gen["prompt_ids"], False)
        if gen["token_ids"] is None:  # the prompt is in the sequence (the next turn extends it), the answer is not
            untokenized.append(step.turn)
            continue
        seg.add(gen["token_ids"], True, gen["logprobs"])
        seg.turns.append(step.turn)
    return RoleTokens(role, segments, untokenized)
