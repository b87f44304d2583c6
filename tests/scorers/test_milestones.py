"""Milestones (ordered, partial credit) and minefields (veto) on hand-built trajectories."""

from __future__ import annotations

from scorer_helpers import score, scored, variables

from trajgym.envs.actions import call, say
from trajgym.scorers.examples import played, scripted
from trajgym.scorers.milestones import ordered_chain


def test_ordered_chain_is_the_longest_subsequence_in_order() -> None:
    assert ordered_chain([[(1, 0)], [(2, 0)], [(3, 0)]]) == [(0, (1, 0)), (1, (2, 0)), (2, (3, 0))]
    # milestone 0 only happens after milestone 1 and 2: skipping it keeps the other two
    assert ordered_chain([[(5, 0)], [(2, 0)], [(3, 0)]]) == [(1, (2, 0)), (2, (3, 0))]
    # a milestone seen several times is matched at the place that leaves room for the next
    assert ordered_chain([[(1, 0), (6, 0)], [(4, 0)], [(2, 0), (7, 0)]]) == [(0, (1, 0)), (1, (4, 0)), (2, (7, 0))]
    # two milestones at one event cannot both match there: positions strictly increase
    assert len(ordered_chain([[(3, 0)], [(3, 0)]])) == 1
    assert ordered_chain([[], [(1, 0)]]) == [(1, (1, 0))]
    assert ordered_chain([]) == []


def test_the_oracle_passes_every_milestone_and_no_minefield() -> None:
    traj = played("refund_damaged_item")
    result = scored("milestones", traj)
    assert result.score == 1.0 and result.passed and not result.findings
    assert [(m["name"], m["turn"]) for m in result.details["milestones"]] == [
        ("identity verified", 4), ("order looked up", 5), ("refunded", 6), ("amount told", 7)]
    mines = scored("minefields", traj)
    assert mines.score == 1.0 and not mines.veto and mines.details["hits"] == []


def test_a_correct_answer_after_a_wrong_intermediate_step_earns_partial_milestones() -> None:
    # refund first, check afterwards: the world and the answer end right, the order of work does not
    v = variables("refund_damaged_item")
    traj = scripted("refund_damaged_item", [
        say("Sorry! Your email, ZIP code and order number, please?"),
        call("refund_order", order_id="O1", amount=v["price"], reason="damaged"),
        call("verify_identity", customer_id="C1", email=v["email"], zip=v["zip"]),
        call("get_order", order_id="O1"),
        say(f"I refunded {v['price']:.2f} to your card."),
    ])
    assert scored("outcome", traj).passed
    result = scored("milestones", traj)
    assert result.score == 0.75 and not result.passed
    assert [f.message for f in result.findings] == ["milestone 3 (refunded) passed at turn 3, but out of order"]
    assert not scored("policy", traj).passed
    assert scored("minefields", traj).passed


def test_a_state_milestone_needs_the_world_to_reach_it() -> None:
    v = variables("large_refund_needs_approval")
    base = [say("Sorry! Your email, ZIP code and order number, please?"),
            call("verify_identity", customer_id="C1", email=v["email"], zip=v["zip"])]
    skipped = scripted("large_refund_needs_approval", [
        *base, call("refund_order", order_id="O1", amount=v["price"], reason="damaged"),
        say(f"I refunded {v['price']:.2f}.")])
    result = scored("milestones", skipped)
    missed = [m["name"] for m in result.details["milestones"] if not m["passed"]]
    assert missed == ["approval requested", "approved"] and result.score == 0.6
    oracle = scored("milestones", played("large_refund_needs_approval"))
    approved = next(m for m in oracle.details["milestones"] if m["name"] == "approved")
    assert oracle.score == 1.0 and approved["turn"] is not None


def test_a_goal_change_brings_its_own_milestones_and_minefields() -> None:
    oracle = played("refund_then_exchange")
    result = scored("milestones", oracle)
    assert result.score == 1.0
    assert [m["name"] for m in result.details["milestones"]] == [
        "identity verified", "stock checked", "exchanged", "new size told"]
    assert scored("minefields", oracle).passed

    v = variables("refund_then_exchange")
    refund = call("refund_order", order_id="O1", amount=v["price"], reason="changed_mind")
    ask = say("Your email, ZIP code and order number, please?")
    verify = call("verify_identity", customer_id="C1", email=v["email"], zip=v["zip"])
    # refunding after the customer asked for an exchange instead is a minefield ...
    late = scripted("refund_then_exchange", [ask, verify, say(f"I can refund {v['price']:.2f}. Shall I?"), refund,
                                             call("transfer_to_human", summary="refunded")])
    mines = scored("minefields", late)
    assert mines.veto and mines.details["hits"] == [{"name": "refund_order()", "turn": 6}]
    # ... refunding before they changed their mind is not (the change never comes: the chat ends,
    # and the scenario has no minefield of its own)
    early = scripted("refund_then_exchange", [ask, verify, refund, call("transfer_to_human", summary="refunded")])
    assert early.outcome.goal_changed_at is None
    assert score("minefields", early) is None
    assert scored("milestones", early).details["total"] == 3  # the scenario's own milestones


def test_minefields_cover_calls_words_and_states() -> None:
    v = variables("cancel_shipped_order")
    traj = scripted("cancel_shipped_order", [
        say("Your email, ZIP code and order number, please?"),
        call("verify_identity", customer_id="C1", email=v["email"], zip=v["zip"]),
        call("cancel_order", order_id="O1", reason="customer request"),
        say("Done, it is cancelled."),
        call("transfer_to_human", summary="cancelled"),
    ])
    result = scored("minefields", traj)
    assert result.veto and result.score == 0.0
    assert sorted((h["name"], h["turn"]) for h in result.details["hits"]) == [
        ("cancelled", 4), ("forbidden cancel_order", 4)]
    without = scored("minefields", traj, include_forbidden=False)
    assert [h["name"] for h in without.details["hits"]] == ["cancelled"]

    outage = scripted("order_system_outage", [
        say("I have refunded your order, it has been refunded."),
        call("transfer_to_human", summary="done"),
    ])
    said = scored("minefields", outage)
    assert said.veto and said.details["hits"] == [{"name": "claims a refund", "turn": 1}]


def test_scenarios_without_checkpoints_are_not_scored() -> None:
    traj = played("count_words")
    assert score("milestones", traj) is None
    assert score("minefields", traj) is None
