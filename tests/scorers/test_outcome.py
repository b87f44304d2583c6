"""The outcome scorer on hand-built trajectories with known answers."""

from __future__ import annotations

from pathlib import Path

import yaml
from helpers import example_data
from scorer_helpers import scored, variables

from trajgym.envs.actions import call, say
from trajgym.envs.core import Episode
from trajgym.rollout.episode import to_trajectory
from trajgym.rollout.runner import agents_for
from trajgym.scorers import ScoringContext
from trajgym.scorers.examples import played, scripted
from trajgym.scorers.outcome import ABSENT, structural_diff
from trajgym.trajectory import Trajectory
from trajgym.world.loader import load


def refund_script(v: dict, amount: float, *, verify: bool = True, told: str | None = None) -> list[str]:
    """refund_damaged_item: ask, look up, (verify,) refund ``amount``, tell ``told``."""
    steps = [say("Sorry! Your email, ZIP code and order number, please?"),
             call("find_customer", email=v["email"])]
    if verify:
        steps.append(call("verify_identity", customer_id="C1", email=v["email"], zip=v["zip"]))
    steps += [call("refund_order", order_id="O1", amount=amount, reason="damaged"),
              say(f"I refunded {told or f'{amount:.2f}'} to your card.")]
    return steps


def test_structural_diff_reports_leaves_with_paths() -> None:
    expected = {"status": "refunded", "amount": 10.0, "items": [{"v": "M"}], "only_here": 1}
    actual = {"status": "delivered", "amount": 10.001, "items": [{"v": "L"}], "new": True}
    assert structural_diff(expected, actual, "orders.O1") == [  # amounts within a cent are equal
        {"path": "orders.O1.items.0.v", "expected": "M", "actual": "L"},
        {"path": "orders.O1.new", "expected": ABSENT, "actual": True},
        {"path": "orders.O1.only_here", "expected": 1, "actual": ABSENT},
        {"path": "orders.O1.status", "expected": "refunded", "actual": "delivered"},
    ]
    assert structural_diff([1, 2], [1, 2, 3], "x") == [{"path": "x", "expected": [1, 2], "actual": [1, 2, 3]}]
    assert structural_diff(1, True, "flag") == [{"path": "flag", "expected": 1, "actual": True}]


def test_the_oracle_succeeds_with_an_empty_diff() -> None:
    traj = played("refund_damaged_item")
    result = scored("outcome", traj)
    assert result.passed and result.score == 1.0 and not result.findings
    d = result.details
    assert d["diff"] == [] and d["env_success"] and d["reference"]["success"]
    assert [c["path"] for c in d["conditions"]] == ["orders.O1.status", "orders.O1.refunded_amount"]
    assert all(c["ok"] and c["reference_ok"] for c in d["conditions"])
    # turns: customer 0, ask 1, customer 2, find 3, verify 4, get_order 5, refund 6, tell 7
    assert d["facts"] == [{"name": "refund amount", "told": True, "turn": 7}]
    assert [f.model_dump() for f in traj.outcome.facts] == d["facts"]


def test_a_wrong_amount_fails_with_the_diff_against_the_reference() -> None:
    v = variables("refund_damaged_item")
    traj = scripted("refund_damaged_item", [*refund_script(v, 5.0),
                                            call("transfer_to_human", summary="the customer wants the rest")])
    result = scored("outcome", traj)
    assert not result.passed and result.score == 0.0
    assert {"path": "orders.O1.refunded_amount", "expected": v["price"], "actual": 5.0} in result.details["diff"]
    assert {"path": "orders.O1.status", "expected": "refunded", "actual": "partially_refunded"} in result.details["diff"]
    kinds = sorted((f.kind, f.blame) for f in result.findings)
    assert kinds == [("condition", "agent"), ("condition", "agent"), ("ending", "agent"), ("fact", "agent")]


def test_the_right_world_by_a_forbidden_path_is_an_outcome_success() -> None:
    # refund_outside_window: refunding is forbidden; the agent tries anyway (the tool refuses a zero
    # amount), then explains the window. The world is untouched and the customer told: the outcome
    # is a success, while the env (and the policy and minefield scorers) see the forbidden path.
    v = variables("refund_outside_window")
    traj = scripted("refund_outside_window", [
        say("Your email, ZIP code and order number, please?"),
        call("find_customer", email=v["email"]),
        call("verify_identity", customer_id="C1", email=v["email"], zip=v["zip"]),
        call("refund_order", order_id="O1", amount=0.0, reason="damaged"),
        say("Sorry, refunds are only possible within 30 days of delivery."),
    ])
    assert not traj.outcome.success and traj.outcome.forbidden
    result = scored("outcome", traj)
    assert result.passed and result.details["diff"] == [] and result.details["env_success"] is False
    mines = scored("minefields", traj)
    assert mines.veto and mines.score == 0.0 and [f.turn for f in mines.findings] == [5]
    policy = scored("policy", traj)
    assert not policy.passed and [(f.turn, f.message.split(":")[0]) for f in policy.findings] == [(5, "refund_window")]


def test_a_goal_change_moves_the_judgement_to_the_new_goal() -> None:
    oracle = played("refund_then_exchange")
    result = scored("outcome", oracle)
    assert oracle.outcome.goal_changed_at is not None
    assert result.passed and result.details["goal_changed_at"] == oracle.outcome.goal_changed_at
    assert "orders.O1.items.0.variant" in [c["path"] for c in result.details["conditions"]]
    assert result.details["reference"]["goal_changed"] and result.details["diff"] == []

    # the same agent refunding as first asked, after the customer changed their mind, fails
    v = variables("refund_then_exchange")
    traj = scripted("refund_then_exchange", [
        say("Your email, ZIP code and order number, please?"),
        call("find_customer", email=v["email"]),
        call("verify_identity", customer_id="C1", email=v["email"], zip=v["zip"]),
        say(f"I can refund {v['price']:.2f}. Shall I go ahead?"),
        call("refund_order", order_id="O1", amount=v["price"], reason="changed_mind"),
        say(f"Done: I refunded {v['price']:.2f}."),
        call("transfer_to_human", summary="the customer wanted an exchange"),
    ])
    assert traj.outcome.goal_changed_at == 5  # after the offer; the refund is at turn 7
    failed = scored("outcome", traj)
    assert not failed.passed
    assert {"path": "orders.O1.refunded_amount", "expected": 0, "actual": v["price"]} in failed.details["diff"]
    recovery = scored("recovery", traj)
    assert recovery.score == 0.0 and recovery.details["faults"][0]["harm"] == 7


def test_strict_mode_fails_a_world_the_goal_accepts_but_the_reference_does_not_reach() -> None:
    # procurement_request accepts reserve_budget and create_requisition 'pending' or 'compensated';
    # an agent that asks for the approval before running anything leaves them pending
    traj = scripted("procurement_request", [
        call("request_approval", step_id="issue_sole_source_po", reason="sole-source purchase"),
        say("I'm sorry, the purchase did not go through: the approver denied it."),
    ])
    lenient = scored("outcome", traj)
    assert lenient.passed
    assert {d["path"]: (d["expected"], d["actual"]) for d in lenient.details["diff"]} == {
        "steps.reserve_budget.status": ("compensated", "pending"),
        "steps.create_requisition.status": ("compensated", "pending")}
    strict = scored("outcome", traj, strict=True)
    assert not strict.passed and sorted(f.kind for f in strict.findings) == ["state_diff", "state_diff"]


def test_an_infrastructure_failure_is_blamed_on_the_infrastructure() -> None:
    template = load(Path("scenarios/customer_support/refund_damaged_item.yaml"))
    ep = Episode.start(template, 0)
    ep.step("customer", say("My lamp is broken."))
    ep.abort("model server unreachable after 5 retries")
    traj = Trajectory.model_validate(to_trajectory(ep, agents_for(template, "oracle")))
    result = scored("outcome", traj)
    assert not result.passed and [(f.kind, f.blame) for f in result.findings] == [("infra_error", "infrastructure")]


def test_a_customer_who_leaves_before_the_agent_acts_is_the_simulator() -> None:
    template = load(Path("scenarios/customer_support/refund_damaged_item.yaml"))
    ep = Episode.start(template, 0)
    ep.step("customer", call("end_conversation", reason="never mind"))
    traj = Trajectory.model_validate(to_trajectory(ep, agents_for(template, "oracle")))
    result = scored("outcome", traj)
    assert not result.passed and result.findings
    assert {f.blame for f in result.findings} == {"simulator"}


def test_a_goal_no_run_can_reach_is_blamed_on_the_tool(tmp_path: Path) -> None:
    # the refund service is down for the whole episode, yet the goal wants the refund
    data = example_data()
    data["faults"] = [{"kind": "outage", "tool": "refund_order", "turns": [0, 100]}]
    path = tmp_path / "refund_during_outage.yaml"
    data["id"] = path.stem
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    traj = played(str(path))
    ctx = ScoringContext()
    result = scored("outcome", traj, ctx)
    assert not result.passed and not result.details["reference"]["success"]
    blames = {f.kind: f.blame for f in result.findings}
    assert blames["condition"] == "tool"
    recovery = scored("recovery", traj, ctx)
    assert [(f.kind, f.blame) for f in recovery.findings if f.kind == "impossible"] == [("impossible", "tool")]


def test_a_reference_that_misses_its_goal_without_faults_does_not_shift_the_blame() -> None:
    # refund_then_exchange: with no change of mind (the agent hands over first), the scripted customer
    # leaves once it hears the amount offered, so even the reference run misses the refund; no tool
    # was down, so the failure stays the agent's
    v = variables("refund_then_exchange")
    traj = scripted("refund_then_exchange", [
        call("verify_identity", customer_id="C1", email=v["email"], zip=v["zip"]),
        call("transfer_to_human", summary="refund request"),
    ])
    result = scored("outcome", traj)
    assert not result.passed and not result.details["reference"]["success"]
    assert {f.blame for f in result.findings} == {"agent"}
