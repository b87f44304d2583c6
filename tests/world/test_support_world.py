"""The support desk's tools keep the world's invariants but not the policy; the checker catches it."""

from __future__ import annotations

from helpers import EXAMPLE, example_data, scenario_from

from trajgym.envs.actions import call, say
from trajgym.envs.core import Episode
from trajgym.world.customer_support import SupportTools
from trajgym.world.loader import load


def _episode(seed: int = 0) -> Episode:
    data = example_data()
    data["tools"]["support"] = [*SupportTools.specs(), "transfer_to_human"]
    ep = Episode.start(scenario_from(data), seed)
    ep.step("customer", say("Hi, I want a refund."))
    return ep


def _tool(ep: Episode, name: str, **args: object) -> dict:
    step = ep.step("support", call(name, **args))
    return step["tool_calls"][0]


def test_refund_before_verification_breaks_the_policy_but_works() -> None:
    ep = _episode()
    price = ep.instance.variables["price"]
    tc = _tool(ep, "refund_order", order_id="O1", amount=price, reason="damaged")
    assert tc["ok"] and ep.state.orders["O1"].status == "refunded"
    assert [v["rule"] for v in tc["violations"]] == ["verify_before_changes"]


def test_verified_refund_is_clean_and_cannot_exceed_the_payment() -> None:
    ep = _episode()
    c = ep.state.customers["C1"]
    assert _tool(ep, "verify_identity", customer_id="C1", email=c.email, zip=c.zip)["content"]["verified"]
    price = ep.instance.variables["price"]
    over = _tool(ep, "refund_order", order_id="O1", amount=price + 50, reason="damaged")
    assert not over["ok"] and "at most" in over["content"]["error"]["message"]
    ok = _tool(ep, "refund_order", order_id="O1", amount=price, reason="damaged")
    assert ok["ok"] and not ok["violations"]
    assert ep.state.payments["P1"].refunded == price


def test_wrong_zip_does_not_verify() -> None:
    ep = _episode()
    tc = _tool(ep, "verify_identity", customer_id="C1", email=ep.state.customers["C1"].email, zip="00000")
    assert tc["ok"] and tc["content"]["verified"] is False
    tc = _tool(ep, "update_customer_address", customer_id="C1", line1="1 Main St", city="Lyon", zip="69001")
    assert tc["ok"] and tc["violations"][0]["rule"] == "verify_before_changes"


def test_window_approval_and_cancel_rules() -> None:
    ep = _episode()
    c = ep.state.customers["C1"]
    _tool(ep, "verify_identity", customer_id="C1", email=c.email, zip=c.zip)
    order = ep.state.orders["O1"]
    order.delivered_on = ep.state.today.replace(day=1).replace(month=1)  # long ago
    order.items[0].price = 500.0
    tc = _tool(ep, "refund_order", order_id="O1", amount=400.0, reason="damaged")
    assert {v["rule"] for v in tc["violations"]} == {"refund_window", "approval_above"}
    tc = _tool(ep, "cancel_order", order_id="O1", reason="changed mind")
    assert [v["rule"] for v in tc["violations"]] == ["cancel_only_before_shipping"]


def test_forbidden_calls_are_recorded_and_fail_the_episode() -> None:
    ep = _episode()
    _tool(ep, "cancel_order", order_id="O1", reason="x")
    assert ep.forbidden_hits and ep.forbidden_hits[0]["tool"] == "cancel_order"
    ep.step("support", call("transfer_to_human", summary="done"))
    assert ep.done and not ep.outcome["success"] and ep.outcome["forbidden"]


def test_the_final_state_is_a_copy() -> None:
    template = load(EXAMPLE)
    a, b = Episode.start(template, 1), Episode.start(template, 1)
    a.state.orders["O1"].status = "cancelled"
    assert b.state.orders["O1"].status == "delivered"
    assert template.instantiate(1).state.orders["O1"].status == "delivered"
