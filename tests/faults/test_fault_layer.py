"""Each fault kind, each trigger, and their determinism under the episode seed."""

from __future__ import annotations

import json
from typing import Any

from helpers import EXAMPLE

from trajgym.faults.layer import FaultLayer
from trajgym.scenario.schema import ToolFault
from trajgym.world.customer_support import SupportTools
from trajgym.world.loader import load


def _layer(*faults: dict[str, Any], seed: int = 0) -> tuple[FaultLayer, Any]:
    inst = load(EXAMPLE).instantiate(seed)
    state = inst.fresh_state()
    kit = SupportTools(state)
    specs = [ToolFault.model_validate(f) for f in faults]
    return FaultLayer(specs, kit, seed, stale_state=inst.fresh_state), state


def _refund_args(state: Any) -> dict[str, Any]:
    return {"order_id": "O1", "amount": state.orders["O1"].total, "reason": "damaged"}


def test_nth_call_errors_do_not_run_the_tool() -> None:
    layer, state = _layer({"kind": "service_unavailable", "tool": "refund_order", "nth_call": [1, 2]})
    for n in (1, 2):
        result, records = layer.call("refund_order", _refund_args(state), turn=n)
        assert not result.ok and result.error_type == "service_unavailable" and not result.applied
        assert result.content["error"]["status"] == 503
        assert [(r.kind, r.call, r.applied) for r in records] == [("service_unavailable", n, False)]
    assert state.orders["O1"].status == "delivered"
    result, records = layer.call("refund_order", _refund_args(state), turn=3)
    assert result.ok and not records and state.orders["O1"].status == "refunded"


def test_error_kinds_and_turn_windows() -> None:
    for kind, status in (("internal_error", 500), ("not_found", 404), ("outage", 503)):
        layer, _ = _layer({"kind": kind, "tool": ["get_order", "list_orders"], "turns": [2, 3]})
        assert layer.call("get_order", {"order_id": "O1"}, turn=1)[0].ok
        for turn in (2, 3):
            result, records = layer.call("get_order", {"order_id": "O1"}, turn=turn)
            assert result.content["error"]["status"] == status and records[0].kind == kind
        assert layer.call("get_order", {"order_id": "O1"}, turn=4)[0].ok
        assert layer.call("get_customer", {"customer_id": "C1"}, turn=2)[0].ok  # other tools untouched


def test_timeout_on_a_write_can_still_apply() -> None:
    layer, state = _layer({"kind": "timeout", "tool": "refund_order", "nth_call": 1, "applied": True,
                           "latency_ms": 5000})
    result, records = layer.call("refund_order", _refund_args(state), turn=0)
    assert result.error_type == "timeout" and "5000 ms" in result.content["error"]["message"]
    assert result.applied and records[0].applied and state.orders["O1"].status == "refunded"
    layer, state = _layer({"kind": "timeout", "tool": "refund_order", "nth_call": 1})
    result, records = layer.call("refund_order", _refund_args(state), turn=0)
    assert not result.applied and state.orders["O1"].status == "delivered"


def test_rate_limit_lasts_its_window() -> None:
    layer, _ = _layer({"kind": "rate_limit", "tool": "find_customer", "nth_call": 1, "retry_after": 2})
    args = {"name": "x"}
    result, records = layer.call("find_customer", args, turn=5)
    assert result.error_type == "rate_limit" and result.content["error"]["retry_after_turns"] == 2
    result, records = layer.call("find_customer", args, turn=6)
    assert result.error_type == "rate_limit" and records[0].detail == {"window_until": 6}
    assert layer.call("find_customer", args, turn=7)[0].ok


def test_stale_read_serves_the_initial_world() -> None:
    layer, state = _layer({"kind": "stale_read", "tool": "get_order", "nth_call": 2})
    layer.call("refund_order", _refund_args(state), turn=0)
    fresh, _ = layer.call("get_order", {"order_id": "O1"}, turn=1)
    stale, records = layer.call("get_order", {"order_id": "O1"}, turn=2)
    assert fresh.content["status"] == "refunded"
    assert stale.content["status"] == "delivered" and stale.content["_meta"]["stale"]
    assert records[0].kind == "stale_read"
    # a stale read never applies to a write
    layer, state = _layer({"kind": "stale_read"})
    assert layer.call("refund_order", _refund_args(state), turn=0)[0].content["status"] == "refunded"


def test_malformed_and_partial_payloads() -> None:
    layer, _ = _layer({"kind": "malformed", "tool": "get_order", "nth_call": 1},
                      {"kind": "partial", "tool": "get_customer"})
    result, _ = layer.call("get_order", {"order_id": "O1"}, turn=0)
    assert isinstance(result.content, str)
    try:
        json.loads(result.content)
        raise AssertionError("a malformed payload must not parse")
    except json.JSONDecodeError:
        pass
    full = layer.toolkit.call("get_customer", {"customer_id": "C1"}).content
    result, _ = layer.call("get_customer", {"customer_id": "C1"}, turn=0)
    missing = result.content["_meta"]["missing"]
    assert missing and set(result.content) - {"_meta"} == set(full) - set(missing)


def test_latency_adds_up_and_the_call_succeeds() -> None:
    layer, _ = _layer({"kind": "latency", "latency_ms": 300}, {"kind": "latency", "tool": "get_order", "latency_ms": 200})
    result, records = layer.call("get_order", {"order_id": "O1"}, turn=0)
    assert result.ok and result.meta["latency_ms"] == 500 and len(records) == 2


def test_probability_is_deterministic_under_the_seed() -> None:
    def fired(seed: int) -> list[bool]:
        layer, _ = _layer({"kind": "internal_error", "probability": 0.5}, seed=seed)
        return [not layer.call("get_order", {"order_id": "O1"}, turn=t)[0].ok for t in range(60)]

    assert fired(3) == fired(3)
    assert fired(3) != fired(4)
    assert 15 < sum(fired(3)) < 45
