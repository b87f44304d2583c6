"""Blame attribution on hand-edited trajectories with known answers."""

from __future__ import annotations

from typing import Any

import pytest

from trajgym.rollout.agentspec import AgentSpec
from trajgym.rollout.episode import run_episode
from trajgym.scenario.catalog import resolve
from trajgym.scorers import Finding, ScoreResult, ScoringContext
from trajgym.scorers.blame import SimulatorScorer, attribute, simulator_findings
from trajgym.trajectory.schema import Trajectory
from trajgym.world.loader import load


@pytest.fixture(scope="module")
def oracle_episode() -> dict[str, Any]:
    template = load(resolve("refund_damaged_item"))
    return run_episode(template, 3, AgentSpec.support("oracle")(template))


def _edit(ep: dict[str, Any], **changes: Any) -> Trajectory:
    traj = Trajectory.model_validate(ep)
    return traj.model_copy(update=changes, deep=True)


def test_a_clean_episode_has_no_simulator_finding(oracle_episode: dict[str, Any]) -> None:
    traj = Trajectory.model_validate(oracle_episode)
    assert traj.outcome.success and simulator_findings(traj) == []
    result = SimulatorScorer().score(traj, ScoringContext())
    assert result.score == 1.0 and result.passed
    assert attribute(traj, {"simulator": result}, success=True) is None


def test_a_customer_in_the_agents_voice_is_blamed_at_its_turn(oracle_episode: dict[str, Any]) -> None:
    traj = _edit(oracle_episode)
    step = next(s for s in traj.steps[1:] if s.role == "customer" and s.message)
    step.message = "Thank you for contacting support! How can I help you today?"
    findings = simulator_findings(traj)
    assert [(f.kind, f.turn) for f in findings] == [("simulator_broke_character", step.turn)]
    assert attribute(traj, {}, success=False) == "simulator"


def test_an_echo_and_a_malformed_customer_action(oracle_episode: dict[str, Any]) -> None:
    traj = _edit(oracle_episode)
    steps = traj.steps
    i = next(i for i, s in enumerate(steps) if s.role == "customer" and i > 0 and steps[i - 1].role == "support"
             and steps[i - 1].message)
    steps[i].message = steps[i - 1].message
    steps[i].error = None
    kinds = [f.kind for f in simulator_findings(traj)]
    assert kinds == ["simulator_echo"]
    steps[i].message, steps[i].error = None, "not JSON"
    assert [f.kind for f in simulator_findings(traj)] == ["simulator_malformed"]


def test_ending_before_the_agent_had_two_turns(oracle_episode: dict[str, Any]) -> None:
    traj = _edit(oracle_episode)
    first_support = next(i for i, s in enumerate(traj.steps) if s.role == "support")
    traj.steps = traj.steps[: first_support + 2]
    traj.termination = "customer_ended"
    assert [f.kind for f in simulator_findings(traj)] == ["simulator_ended_early"]


def test_ending_instead_of_answering_a_question_before_the_goal(oracle_episode: dict[str, Any]) -> None:
    traj = _edit(oracle_episode)
    last_support = next(s for s in reversed(traj.steps) if s.role == "support" and s.message)
    assert last_support.message is not None and last_support.message.rstrip().endswith("?")
    assert simulator_findings(traj) == []  # "anything else?" then goodbye, goal reached: fine
    traj.outcome.facts[0].told = False
    assert [f.kind for f in simulator_findings(traj)] == ["simulator_ended_early"]


def test_precedence_infrastructure_simulator_tool_agent(oracle_episode: dict[str, Any]) -> None:
    traj = _edit(oracle_episode)
    tool = ScoreResult(score=0.0, findings=[Finding(kind="outage", message="down all along", blame="tool")])
    sim = ScoreResult(score=0.0, findings=[Finding(kind="x", message="broke", blame="simulator")])
    assert attribute(traj, {"recovery": tool}, success=False) == "tool"
    assert attribute(traj, {"recovery": tool, "simulator": sim}, success=False) == "simulator"
    assert attribute(traj, {"simulator": ScoreResult(score=1.0)}, success=False) == "agent"
    assert attribute(traj, {"recovery": tool}, success=True) is None
    traj.termination = "infra_error"
    assert attribute(traj, {}, success=None) == "infrastructure"
