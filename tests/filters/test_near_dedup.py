"""Near-duplicate removal with real embeddings (the bundled all-MiniLM-L6-v2): copies of an episode
with every message reworded are removed, episodes that decided otherwise are kept."""

from __future__ import annotations

import functools
from typing import Any

import pytest
from filters_helpers import MakeScored, Rollout

from trajgym.filters import (
    DEFAULT_NEAR,
    FilterChain,
    apply_chain,
    diversity,
    exact_duplicates,
    near_duplicates,
)
from trajgym.trajectory.schema import Trajectory
from trajgym.trajectory.scored import ScoredTrajectory

SCENARIO = "refund_damaged_item"


def reworded(traj: Trajectory, support: list[str], customer: list[str], trial: int) -> Trajectory:
    """``traj`` as another trial in which the agent made the same decisions (same tool calls, same
    arguments) but said every message in other words, and the customer worded theirs otherwise."""
    copy = traj.model_copy(deep=True, update={"trial": trial, "episode_id": f"{traj.episode_id}-para{trial}"})
    said = {"support": iter(support), "customer": iter(customer)}
    for step in copy.steps:
        if step.message is not None and step.role in said:
            step.message = next(said[step.role])
    return copy


def paraphrases(traj: Trajectory) -> list[Trajectory]:
    price, product = f"{traj.variables['price']:.2f}", traj.variables["product"]
    return [
        reworded(traj, ["So sorry to hear that! Can you tell me your email address, your ZIP code and the order "
                        "number?",
                        f"All done: I've refunded {price} to your card for the damaged {product}. Can I help with "
                        "anything else?"],
                 [f"Hello, the {product} I got is broken, I want my money back.",
                  f"Sure: {traj.variables['email']}, ZIP {traj.variables['zip']}, and it's order O1."], trial=1),
        reworded(traj, ["Oh no, I apologise. Please share your email, ZIP code and order number.",
                        f"Your refund of {price} for the broken {product} is on its way back to your card. Anything "
                        "more I can do?"],
                 [f"My {product} came damaged, refund please.",
                  f"Email {traj.variables['email']}, zip {traj.variables['zip']}, order O1."], trial=2),
    ]


def handed_over(traj: Trajectory, trial: int) -> Trajectory:
    """Another decision: the agent hands the case to a human instead of refunding."""
    copy = traj.model_copy(deep=True, update={"trial": trial, "episode_id": f"{traj.episode_id}-human{trial}"})
    for step in copy.steps:
        for call in step.tool_calls:
            if call.name == "refund_order":
                call.name, call.arguments = "transfer_to_human", {"summary": "refund for a damaged item"}
    last = [s for s in copy.steps if s.role == "support" and s.message][-1]
    last.message = "I've passed your case to a colleague, who will get back to you about the refund."
    return copy


@pytest.fixture(scope="module")
def group(rollout: Rollout, make_scored: MakeScored) -> dict[str, ScoredTrajectory]:
    """Trials of one scenario variation: an oracle episode, two reworded copies, a hand-over, a random run."""
    oracle = rollout(SCENARIO, 0)
    para1, para2 = paraphrases(oracle)
    records = {
        "oracle": make_scored(oracle, 1.0, rank=1),
        "para1": make_scored(para1, 0.95, rank=2),
        "para2": make_scored(para2, 0.9, rank=3),
        "handed_over": make_scored(handed_over(oracle, 3), 0.4, rank=4),
        "random": make_scored(rollout(SCENARIO, 0, "random", trial=4), 0.1, rank=5),
    }
    assert len({r.group for r in records.values()}) == 1
    return records


def _names(group: dict[str, ScoredTrajectory], indices: list[int]) -> list[str]:
    names = list(group)
    return [names[i] for i in indices]


def test_reworded_copies_are_removed_and_distinct_episodes_kept(group: dict[str, ScoredTrajectory],
                                                                embedder: Any) -> None:
    records = list(group.values())
    assert exact_duplicates(records) == []  # the words differ: not exact copies
    dups = near_duplicates(records, threshold=DEFAULT_NEAR, embedder=embedder)
    assert [(_names(group, [d.index])[0], _names(group, [d.of])[0]) for d in dups] == [
        ("para1", "oracle"), ("para2", "oracle")]
    assert all(DEFAULT_NEAR <= d.similarity <= 1.0 for d in dups)


def test_the_best_scored_copy_is_the_one_kept(group: dict[str, ScoredTrajectory], embedder: Any) -> None:
    records = list(group.values())
    records[2] = records[2].model_copy(update={"total": 1.0, "rank": 1})  # para2 now beats the original
    records[0] = records[0].model_copy(update={"total": 0.9, "rank": 2})
    dups = near_duplicates(records, embedder=embedder)
    assert sorted((_names(group, [d.index])[0], _names(group, [d.of])[0]) for d in dups) == [
        ("oracle", "para2"), ("para1", "para2")]


def test_a_filter_chain_with_near_dedup(group: dict[str, ScoredTrajectory], embedder: Any) -> None:
    chain = FilterChain.model_validate({"filters": [{"dedup": {"near": DEFAULT_NEAR}}]})
    result = apply_chain(list(group.values()), chain, embedder=embedder)
    assert _names(group, result.kept_indices) == ["oracle", "handed_over", "random"]
    (step,) = result.steps
    assert (step.before, step.after) == (5, 3)
    assert step.reasons == {f"near duplicate (cos >= {DEFAULT_NEAR:g})": 2}
    assert {(d.index, d.duplicate_of) for d in result.dropped} == {(1, 0), (2, 0)}


def test_scopes_other_variations_and_scenarios_are_not_copies(group: dict[str, ScoredTrajectory], rollout: Rollout,
                                                              make_scored: MakeScored, embedder: Any) -> None:
    others = [make_scored(rollout(SCENARIO, 1)),                      # same decisions, other values
              make_scored(rollout("cancel_processing_order", 0)),     # another task
              make_scored(rollout("refund_outside_window", 0))]
    records = [*group.values(), *others]
    for scope in ("group", "scenario", "dataset"):
        dups = near_duplicates(records, scope=scope, embedder=embedder)
        assert {d.index for d in dups} == {1, 2}, scope


def test_embedding_spread_tells_copies_from_distinct_episodes(group: dict[str, ScoredTrajectory],
                                                              embedder: Any) -> None:
    copies = diversity([group["oracle"], group["para1"], group["para2"]], embedder=embedder)
    distinct = diversity([group["oracle"], group["handed_over"], group["random"]], embedder=embedder)
    assert 0.0 <= copies["embedding_spread"] < 0.1 < distinct["embedding_spread"]
    assert copies["distinct_decision_chains"] == 1 and distinct["distinct_decision_chains"] == 3
    assert "embedding_spread" not in diversity([group["oracle"]])


def test_the_report_shows_these_figures_with_the_spread(group: dict[str, ScoredTrajectory], embedder: Any) -> None:
    from trajgym.report.aggregate import summarize

    data = summarize(list(group.values()), diversity=functools.partial(diversity, embedder=embedder))
    assert data.diversity == diversity(list(group.values()), embedder=embedder)
    assert data.diversity["distinct_decision_chains"] == 3 and data.diversity["embedding_spread"] > 0.1
    (scenario,) = data.scenarios
    assert scenario.diversity == data.diversity
