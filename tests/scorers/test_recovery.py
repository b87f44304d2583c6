"""Recovery is credited per fault that fired, for the response the scenario (or the kind) asks for."""

from __future__ import annotations

from pathlib import Path

import yaml
from helpers import example_data
from scorer_helpers import score, scored, variables

from trajgym.envs.actions import call, say
from trajgym.scenario.schema import ToolFault
from trajgym.scorers.examples import played, scripted
from trajgym.scorers.trace import lasts_whole_episode


def _faults(result_details: dict) -> list[tuple[str, str | None, dict, float]]:
    return [(f["kind"], f["tool"], f["observed"], f["credit"]) for f in result_details["faults"]]


def _flaky_script(seed: int) -> list[str]:
    """probabilistic_flakiness without any retry: fine only while no fault fires."""
    v = variables("probabilistic_flakiness", seed)
    return [say("Sure! Your email, ZIP code and order number, please?"),
            call("find_customer", email=v["email"]),
            call("verify_identity", customer_id="C1", email=v["email"], zip=v["zip"]),
            call("list_orders", customer_id="C1"),
            call("get_order", order_id="O2"),
            call("cancel_order", order_id="O2", reason="ordered by mistake"),
            say(f"Done: your order is cancelled and {v['price']:.2f} goes back to your card.")]


def test_success_only_because_the_fault_never_fired_earns_no_recovery_credit() -> None:
    # seed 3: the 30% failures never fire; seed 0: verify_identity fails once
    lucky = scripted("probabilistic_flakiness", _flaky_script(3), seed=3)
    assert lucky.faults == [] and lucky.outcome.success
    assert score("recovery", lucky) is None
    # the same script where the identity check fails: it goes on unverified
    unlucky = scripted("probabilistic_flakiness", _flaky_script(0), seed=0)
    assert [f.tool for f in unlucky.faults] == ["verify_identity"]
    result = scored("recovery", unlucky)
    assert result.score == 0.0 and [f.kind for f in result.findings] == ["not_recovered"]
    assert [f.message.split(":")[0] for f in scored("policy", unlucky).findings] == ["verify_before_changes"]
    # the oracle on the same unlucky seed retries, and that is what earns the credit
    oracle = scored("recovery", played("probabilistic_flakiness", seed=0))
    assert oracle.score == 1.0 and _faults(oracle.details) == [
        ("service_unavailable", "verify_identity", {"retry": 5}, 1.0)]


def test_a_fault_on_several_calls_is_credited_per_call() -> None:
    result = scored("recovery", played("probabilistic_flakiness", seed=1))
    assert [(f["tool"], f["attempts"], f["credit"]) for f in result.details["faults"]] == [
        ("list_orders", 2, 1.0), ("get_order", 1, 1.0)]


def test_retrying_a_flaky_write_versus_giving_up_at_once() -> None:
    oracle = scored("recovery", played("refund_service_flaky"))
    assert _faults(oracle.details) == [("service_unavailable", "refund_order", {"retry": 10}, 1.0)]
    assert oracle.details["faults"][0]["attempts"] == 2
    v = variables("refund_service_flaky")
    quitter = scripted("refund_service_flaky", [
        call("verify_identity", customer_id="C1", email=v["email"], zip=v["zip"]),
        call("refund_order", order_id="O1", amount=v["price"], reason="damaged"),
        call("transfer_to_human", summary="the refund service failed"),
    ])
    result = scored("recovery", quitter)
    # escalating is right only once a fault persists: one failure is not enough
    assert result.score == 0.0 and result.details["faults"][0]["observed"] == {}


def test_a_timed_out_write_must_be_checked_not_repeated() -> None:
    oracle = scored("recovery", played("timeout_refund_applied"))
    assert _faults(oracle.details) == [("timeout", "refund_order", {"verify": 7}, 1.0)]
    v = variables("timeout_refund_applied")
    amount = v["set"]["price"]
    blind = scripted("timeout_refund_applied", [
        call("verify_identity", customer_id="C1", email=v["email"], zip=v["zip"]),
        call("refund_order", order_id="O1", amount=amount, reason="wrong_item"),
        call("refund_order", order_id="O1", amount=amount, reason="wrong_item"),
        say(f"I refunded {amount:.2f}."),
        call("transfer_to_human", summary="refunded"),
    ])
    result = scored("recovery", blind)
    fault = result.details["faults"][0]
    # it did retry, and the retry went through: a second refund
    assert fault["observed"] == {"retry": 3} and fault["harm"] == 3 and fault["credit"] == 0.0
    assert [(f.kind, f.turn) for f in result.findings] == [("harmful_response", 3)]
    assert not scored("outcome", blind).passed  # refunded twice


def test_a_rate_limit_is_waited_out_not_hammered() -> None:
    oracle = scored("recovery", played("rate_limited_lookup"))
    assert _faults(oracle.details) == [("rate_limit", "find_customer", {"wait": 7}, 1.0)]
    v = variables("rate_limited_lookup")
    hammer = scripted("rate_limited_lookup", [call("find_customer", email=v["email"])] * 4 + [
        call("transfer_to_human", summary="found")])
    assert [c.ok for s in hammer.steps for c in s.tool_calls][:4] == [False, False, True, True]
    result = scored("recovery", hammer)
    assert result.score == 0.0 and result.details["faults"][0]["attempts"] == 2


def test_stale_data_must_be_read_again_before_acting() -> None:
    oracle = scored("recovery", played("stale_order_status"))
    assert _faults(oracle.details) == [("stale_read", "get_order", {"verify": 7}, 1.0)]
    v = variables("stale_order_status")
    trusting = scripted("stale_order_status", [
        call("verify_identity", customer_id="C1", email=v["email"], zip=v["zip"]),
        call("cancel_order", order_id="O1", reason="customer request"),
        call("get_order", order_id="O1"),
        call("cancel_order", order_id="O1", reason="it still looked processing"),
        call("get_order", order_id="O1"),
        call("transfer_to_human", summary="cancelled"),
    ])
    assert scored("recovery", trusting).score == 0.0


def test_an_outage_for_the_whole_episode_that_the_goal_allows_for() -> None:
    # order_system_outage: the order system never answers; handing the case over is the goal
    result = scored("recovery", played("order_system_outage"))
    assert result.passed and _faults(result.details) == [("outage", "get_order", {"escalate": 14}, 1.0)]
    assert [(f.kind, f.blame) for f in result.findings] == [("permanent_fault", None)]
    fault = ToolFault(kind="outage", tool="get_order", turns=(0, 200))
    assert lasts_whole_episode(fault, 40)
    assert not lasts_whole_episode(ToolFault(kind="outage", tool="get_order", turns=(0, 4)), 40)
    assert not lasts_whole_episode(ToolFault(kind="service_unavailable", nth_call=[1, 2]), 40)
    assert not lasts_whole_episode(ToolFault(kind="latency", latency_ms=10), 40)


def test_the_reference_fallback_is_a_recovery() -> None:
    result = scored("recovery", played("server_decommission"))
    assert result.passed and _faults(result.details)[0][2] == {"use_fallback": 14}  # the first undo, after 5 failed tries


def test_a_declared_recover_list_replaces_the_default(tmp_path: Path) -> None:
    data = example_data()
    data["faults"] = [{"kind": "service_unavailable", "tool": "refund_order", "nth_call": 1,
                       "recover": ["tell_customer"]}]
    data["id"] = "tell_when_refunds_fail"
    path = tmp_path / "tell_when_refunds_fail.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    v = variables(str(path))
    script = [call("verify_identity", customer_id="C1", email=v["email"], zip=v["zip"]),
              call("refund_order", order_id="O1", amount=v["price"], reason="damaged")]
    told = scripted(str(path), [*script, say("Sorry, our refund system has a problem right now."),
                                call("transfer_to_human", summary="refund failed")])
    assert _faults(scored("recovery", told).details) == [
        ("service_unavailable", "refund_order", {"tell_customer": 3}, 1.0)]
    silent = scripted(str(path), [*script, call("transfer_to_human", summary="refund failed")])
    assert scored("recovery", silent).score == 0.0


def test_a_change_of_mind_is_followed() -> None:
    result = scored("recovery", played("refund_then_exchange"))
    assert result.passed and result.details["faults"][0]["kind"] == "customer_goal_change"


def test_latency_alone_is_nothing_to_recover_from() -> None:
    traj = played("slow_and_partial")
    result = scored("recovery", traj)
    assert {f.kind for f in traj.faults} == {"latency", "partial"}
    assert [f["kind"] for f in result.details["faults"]] == ["partial"]
