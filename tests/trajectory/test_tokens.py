"""A role's token sequence rebuilt from its turns' token chain: exact chains, breaks, damaged files.

The trajectories are real oracle episodes with hand-made generation records put on their steps, so
each test knows the sequence it should get back.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
from helpers import EXAMPLE

from trajgym.agents.chat import generation
from trajgym.rollout.episode import run_episode
from trajgym.rollout.runner import agents_for
from trajgym.trajectory.schema import Generation, Trajectory
from trajgym.trajectory.tokens import NOT_EXTENDED, TokenChainError, extend_chain, role_tokens
from trajgym.world.loader import load

SUPPORT_TURNS = [1, 3, 4, 5, 6, 7]
"""The oracle's turns in the example scenario's episode (the customer plays 0, 2 and 8)."""


@functools.cache
def _episode() -> dict[str, Any]:
    template = load(EXAMPLE)
    return run_episode(template, 0, agents_for(template, "oracle"))


def with_generations(gens: dict[int, Generation]) -> Trajectory:
    """The oracle's episode with ``gens`` put on the steps of those turns, validated."""
    data = _episode()
    steps = [{**s, "generation": gens.get(s["turn"], s["generation"])} for s in data["steps"]]
    return Trajectory.model_validate({**data, "steps": steps})


def turn(prompt_from: int | None, prompt_ids: list[int] | None, token_ids: list[int] | None,
         chain_break: str | None = None) -> Generation:
    """A model turn as the openai agent records it (logprobs -0.5 per generated token)."""
    logprobs = [-0.5] * len(token_ids) if token_ids is not None else None
    return generation("openai", model="m", api="chat", prompt_from=prompt_from, prompt_ids=prompt_ids,
                      chain_break=chain_break, token_ids=token_ids, logprobs=logprobs)


def chain(*turns: tuple[list[int], list[int]]) -> dict[int, Generation]:
    """Support turns that each extend the sequence: (new prompt ids, completion ids) per turn."""
    out, length = {}, 0
    for t, (prompt, completion) in zip(SUPPORT_TURNS, turns, strict=False):
        out[t] = turn(length, prompt, completion)
        length += len(prompt) + len(completion)
    return out


def test_extend_chain_keeps_only_the_new_prompt_ids() -> None:
    assert extend_chain([], [1, 2]) == (0, [1, 2], None)
    assert extend_chain([1, 2, 3], [1, 2, 3, 4]) == (3, [4], None)
    assert extend_chain([1, 2, 3], [1, 2, 3]) == (3, [], None)  # nothing new: still an extension
    assert extend_chain([1, 2, 3], [1, 2]) == (0, [1, 2], NOT_EXTENDED)  # shorter
    assert extend_chain([1, 2, 3], [1, 9, 3, 4]) == (0, [1, 9, 3, 4], NOT_EXTENDED)  # re-rendered


def test_an_exact_chain_is_one_sequence_with_the_completions_masked() -> None:
    traj = with_generations(chain(([1, 2, 3], [10, 11]), ([4], [12]), ([5, 6], [13, 14, 15])))
    tokens = role_tokens(traj, "support")
    assert tokens.exact and tokens.breaks == [] and tokens.untokenized == []
    (seg,) = tokens.segments
    assert seg.ids == [1, 2, 3, 10, 11, 4, 12, 5, 6, 13, 14, 15]
    assert seg.generated == [False] * 3 + [True] * 2 + [False, True] + [False] * 2 + [True] * 3
    assert seg.logprobs == [None] * 3 + [-0.5] * 2 + [None, -0.5] + [None] * 2 + [-0.5] * 3
    assert seg.turns == [1, 3, 4] and seg.start_turn == 1 and seg.break_reason is None
    assert seg.completions() == [[10, 11], [12], [13, 14, 15]]
    assert role_tokens(traj, "customer").segments == []  # another role's turns are not the support's


def test_a_chain_break_starts_a_new_segment_with_its_reason() -> None:
    gens = chain(([1, 2], [10]), ([3], [11]))
    gens[4] = turn(0, [1, 2, 99], [12], chain_break="the template changed")
    gens[5] = turn(4, [7], [13])
    gens[6] = turn(0, [8], [14])  # from 0 without a reason
    tokens = role_tokens(with_generations(gens), "support")
    assert not tokens.exact
    assert [s.turns for s in tokens.segments] == [[1, 3], [4, 5], [6]]
    assert [s.ids for s in tokens.segments] == [[1, 2, 10, 3, 11], [1, 2, 99, 12, 7, 13], [8, 14]]
    assert tokens.breaks == [(4, "the template changed"), (6, "the turn started the sequence over")]
    assert [c for s in tokens.segments for c in s.completions()] == [[10], [11], [12], [13], [14]]


@pytest.mark.parametrize("gens", [
    {1: turn(0, [1, 2], [10]), 3: turn(2, [3], [11])},   # says the sequence has 2 tokens: it has 3
    {1: turn(0, [1, 2], [10]), 3: turn(4, [3], [11])},   # past its end
    {1: turn(5, [1, 2], [10])},                          # the first turn extends nothing
])
def test_an_inconsistent_prompt_from_is_an_error(gens: dict[int, Generation]) -> None:
    traj = with_generations(gens)
    with pytest.raises(TokenChainError, match=rf"episode {traj.episode_id}, turn (3|1): .*support's sequence"):
        role_tokens(traj, "support")


def test_untokenized_turns_are_listed() -> None:
    gens = chain(([1, 2], [10]), ([3], [11]))
    gens[4] = turn(None, None, None)  # a server without vLLM's token ids
    gens[5] = turn(0, [1, 2, 10, 3, 11, 4], [12])
    gens[6] = turn(7, [5], None)  # prompt ids came back, the completion's did not
    gens[7] = turn(8, [6], [13])  # extends the prompt of turn 6
    tokens = role_tokens(with_generations(gens), "support")
    assert tokens.untokenized == [4, 6] and not tokens.exact
    assert [s.turns for s in tokens.segments] == [[1, 3], [5, 7]]
    assert tokens.segments[1].ids == [1, 2, 10, 3, 11, 4, 12, 5, 6, 13]
    assert tokens.segments[1].completions() == [[12], [13]]


def test_scripted_generations_are_skipped() -> None:
    gens = chain(([1, 2], [10]), ([3], [11]))
    gens[0] = generation("scripted", literal="opening")  # the customer's scenario line
    gens[8] = turn(0, [50], [51])
    gens[4] = generation("scripted", literal="goal_change")
    traj = with_generations(gens)
    customer = role_tokens(traj, "customer")
    assert customer.exact and [s.turns for s in customer.segments] == [[8]] and customer.untokenized == []
    support = role_tokens(traj, "support")
    assert support.exact and support.segments[0].turns == [1, 3]


def test_completions_stay_apart_where_no_prompt_token_lies_between() -> None:
    traj = with_generations(chain(([1], [10, 11]), ([], [12])))  # the second prompt is the first's + completion
    (seg,) = role_tokens(traj, "support").segments
    assert seg.ids == [1, 10, 11, 12] and seg.completions() == [[10, 11], [12]]


def test_logprobs_that_do_not_match_the_completion_are_left_out() -> None:
    gen = turn(0, [1], [10, 11])
    gen["logprobs"] = [-0.1]
    (seg,) = role_tokens(with_generations({1: gen}), "support").segments
    assert seg.generated == [False, True, True] and seg.logprobs == [None, None, None]
