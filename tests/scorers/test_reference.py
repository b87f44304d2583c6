"""The reference run against episodes whose goal change fired differently, or not at all."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml
from scorer_helpers import scored

from trajgym.rollout.episode import run_episode
from trajgym.rollout.runner import agents_for
from trajgym.scenario.catalog import resolve
from trajgym.scorers import ScoringContext
from trajgym.scorers.reference import reference_run
from trajgym.trajectory import Trajectory
from trajgym.world.loader import load

BROKEN = "the scenario is broken"


def capped(scenario: str, max_turns: int | None, seed: int = 0) -> Trajectory:
    """``scenario`` played by the oracle on ``seed``, its turn limit capped at ``max_turns`` (a job's
    ``--max-turns``)."""
    template = load(resolve(scenario))
    return Trajectory.model_validate(run_episode(template, seed, agents_for(template, "oracle"), max_turns=max_turns))


def test_an_episode_cut_before_the_change_of_mind_does_not_make_the_scenario_broken(
        caplog: pytest.LogCaptureFixture) -> None:
    # refund_then_exchange cut at 6 turns (the CI demo's --max-turns): the customer never gets the third
    # turn where they ask for an exchange, so the episode is judged against the refund. The reference
    # run, played without the change to answer that goal, misses it (the scripted customer leaves once
    # the refund is offered): the replay could not be matched, the scenario is fine
    traj = capped("refund_then_exchange", 6)
    assert traj.termination == "max_turns" and traj.outcome.goal_changed_at is None and not traj.faults
    ctx = ScoringContext()
    with caplog.at_level(logging.WARNING, logger="trajgym.scorers.reference"):
        result = scored("outcome", traj, ctx)
    assert BROKEN not in caplog.text
    assert "cannot be matched to this episode: goal change 0 (the customer's turn 3) did not fire" in caplog.text
    ref = reference_run(ctx, traj)
    assert not ref.success and not ref.matched and not ref.goal_changed  # the refund's run, like the episode
    # the diff is against the refund the episode was judged against, which no reference world meets
    d = result.details
    assert [c["path"] for c in d["conditions"]] == ["orders.O1.status", "orders.O1.refunded_amount"]
    assert not any(c["reference_ok"] for c in d["conditions"]) and d["diff"] == []
    assert not d["reference"]["goal_changed"] and not result.passed

    # cut at 12 turns the customer changes their mind: the reference run answers the exchange, silently
    caplog.clear()
    fired = capped("refund_then_exchange", 12)
    assert fired.outcome.goal_changed_at is not None
    with caplog.at_level(logging.WARNING, logger="trajgym.scorers.reference"):
        result = scored("outcome", fired, ctx)
    assert caplog.text == ""
    ref = reference_run(ctx, fired)
    assert ref.success and ref.matched and ref.goal_changed
    conditions = result.details["conditions"]
    assert "orders.O1.items.0.variant" in [c["path"] for c in conditions]
    assert all(c["reference_ok"] for c in conditions) and result.details["diff"] == []


@pytest.mark.parametrize("max_turns", [6, None])
def test_a_reference_that_misses_its_own_goal_is_still_a_broken_scenario(
        max_turns: int | None, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # refund_then_exchange whose change of mind wants the order cancelled as well as exchanged: the
    # reference misses it as the scenario is written, whether the episode's change fired (no cap) or not
    data = yaml.safe_load(resolve("refund_then_exchange").read_text())
    status = data["faults"][0]["goal"]["state"][2]
    assert status["path"] == "orders.O1.status"
    status["equals"] = "cancelled"
    path = tmp_path / "broken_exchange.yaml"
    data["id"] = path.stem
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    traj = capped(str(path), max_turns)
    assert (traj.outcome.goal_changed_at is None) == (max_turns is not None)
    with caplog.at_level(logging.WARNING, logger="trajgym.scorers.reference"):
        ref = reference_run(ScoringContext(), traj)
    assert not ref.success and ref.matched
    assert "the reference solution of broken_exchange (seed 0) does not meet its goal" in caplog.text
    assert BROKEN in caplog.text and "cannot be matched" not in caplog.text
