"""The rule-based scorers as a set: registered, documented by examples that run, consistent with
the env on every shipped scenario, and their reference runs."""

from __future__ import annotations

import doctest
import importlib

import pytest
from helpers import BUILTIN_IDS
from scorer_helpers import score

from trajgym.scenario.schema import GoalChange
from trajgym.scorers import SCORERS, ScoringContext
from trajgym.scorers.examples import played
from trajgym.scorers.reference import reference_run
from trajgym.scorers.trace import trace

RULE_SCORERS = ["outcome", "milestones", "minefields", "policy", "recovery", "efficiency"]
MODULES = ["outcome", "milestones", "policy", "recovery", "efficiency", "examples"]


def test_the_rule_scorers_are_registered() -> None:
    assert set(RULE_SCORERS) <= set(SCORERS)
    assert SCORERS["policy"](per_violation=0.25).config() == {"per_violation": 0.25}
    assert SCORERS["outcome"]().config() == {"strict": False}


@pytest.mark.parametrize("module", MODULES)
def test_the_docstring_examples_hold(module: str) -> None:
    result = doctest.testmod(importlib.import_module(f"trajgym.scorers.{module}"))
    assert result.attempted > 0 and result.failed == 0


def test_the_reference_run_is_cached_per_variation_and_replays_fallbacks() -> None:
    ctx = ScoringContext()
    traj = played("server_decommission")
    first = reference_run(ctx, traj)
    assert reference_run(ctx, played("server_decommission", support="random")) is first
    assert reference_run(ctx, played("server_decommission", seed=1)) is not first
    # the IP management system is down for good: the reference backs out, as its goal says
    assert first.success and first.final_state["steps"]["migrate_data"]["status"] == "compensated"


def test_a_tool_use_reference_runs_its_check_in_a_sandbox() -> None:
    traj = played("extract_emails")
    run = reference_run(ScoringContext(), traj)
    assert run.success and run.final_state["check_result"]["passed"] is True
    assert "emails.txt" in run.final_state["final_files"]
    assert trace(ScoringContext(), traj).states is None  # its world lives in the sandbox


@pytest.mark.slow
@pytest.mark.parametrize("scenario", BUILTIN_IDS)
def test_rule_scorers_agree_with_the_env_on_every_shipped_scenario(scenario: str) -> None:
    ctx = ScoringContext()
    for agent in ("oracle", "random"):
        traj = played(scenario, support=agent)
        results = {name: score(name, traj, ctx) for name in RULE_SCORERS}
        outcome, policy = results["outcome"], results["policy"]
        assert outcome is not None
        clean_path = not traj.outcome.violations and not traj.outcome.forbidden
        if clean_path:  # the env's verdict is the outcome plus a clean path
            assert outcome.passed == traj.outcome.success, (agent, outcome.findings)
        assert policy is None or policy.details["consistent"], (agent, policy.details)
        assert trace(ctx, traj).final_matches in (True, None)
        for result in results.values():
            assert result is None or 0.0 <= result.score <= 1.0
        if agent == "oracle":
            assert reference_run(ctx, traj).success
            assert outcome.passed and outcome.details["diff"] == []
            for name in ("milestones", "minefields", "policy", "recovery", "efficiency"):
                result = results[name]
                assert result is None or result.score == 1.0, (name, result.findings)
            declares = ctx.instance(traj).spec
            if declares.milestones or any(isinstance(f, GoalChange) and f.milestones for f in declares.faults):
                assert results["milestones"] is not None
