"""The efficiency scorer counts the work against the reference and itemises the waste."""

from __future__ import annotations

from pathlib import Path

from scorer_helpers import score, scored, variables

from trajgym.agents.chat import generation
from trajgym.envs.actions import call, say
from trajgym.envs.core import Episode
from trajgym.rollout.episode import to_trajectory
from trajgym.rollout.runner import agents_for
from trajgym.scorers.examples import played, scripted
from trajgym.trajectory import Trajectory
from trajgym.world.loader import load


def _waste(traj: Trajectory) -> list[tuple[str, int | None]]:
    return [(f.kind, f.turn) for f in scored("efficiency", traj).findings]


def test_the_oracle_is_as_efficient_as_its_reference() -> None:
    result = scored("efficiency", played("refund_damaged_item"))
    assert result.score == 1.0 and not result.findings and result.passed is None
    assert result.details == {
        "turns": 9, "support_turns": 6, "tool_calls": 4, "reference_actions": 6, "reference_calls": 4,
        "goal_met_turn": 7, "repeat_call": 0, "unused_read": 0, "after_goal": 0, "malformed_action": 0,
        "tokens": None}


def test_waste_is_itemised_at_its_turn() -> None:
    v = variables("refund_damaged_item")
    traj = scripted("refund_damaged_item", [
        "refund it all!",                                                        # 1 malformed
        say("Your email, ZIP code and order number, please?"),                   # 2
        call("find_customer", email=v["email"]),                                 # 4
        call("verify_identity", customer_id="C1", email=v["email"], zip=v["zip"]),
        call("get_order", order_id="O1"),                                        # 6
        call("get_order", order_id="O1"),                                        # 7 the same answer again
        call("get_customer", customer_id="C1"),                                  # 8 nothing of it is used
        call("refund_order", order_id="O1", amount=v["price"], reason="damaged"),
        call("get_order", order_id="O1"),                                        # 10 checks the refund
        say(f"I refunded {v['price']:.2f} to your card."),                       # 11
    ])
    result = scored("efficiency", traj)
    assert _waste(traj) == [("malformed_action", 1), ("repeat_call", 7), ("unused_read", 8)]
    d = result.details
    assert (d["support_turns"], d["tool_calls"], d["reference_actions"], d["goal_met_turn"]) == (10, 7, 6, 11)
    assert result.score == (6 / 10) * (1 - 3 / 10)


def test_calls_after_the_goal_was_met() -> None:
    # order_system_outage: nothing may change and the customer must hear about the handover; once
    # told, the customer waits for the colleague, and a further lookup is wasted (the handover is not)
    traj = scripted("order_system_outage", [
        say("Our order system is down; I'm transferring you to a colleague."),  # 1: goal met
        call("get_order", order_id="O1"),                                       # 3
        call("transfer_to_human", summary="order system down"),                 # 4
    ])
    assert scored("outcome", traj).passed
    assert _waste(traj) == [("after_goal", 3)]
    assert scored("efficiency", traj).details["goal_met_turn"] == 1


def test_an_unknown_tool_is_a_malformed_action() -> None:
    traj = scripted("refund_damaged_item", [call("delete_everything"), call("transfer_to_human", summary="x")])
    assert ("malformed_action", 1) in _waste(traj)


def test_tokens_are_summed_from_the_generation_records() -> None:
    data = played("refund_damaged_item").model_dump()
    support = [s for s in data["steps"] if s["role"] == "support"]
    support[0]["generation"] = generation("openai", usage={"prompt_tokens": 100, "completion_tokens": 12,
                                                           "total_tokens": 112})
    # no usage reported: the token ids count, the prompt 30 tokens of the chain and 10 new ones
    support[1]["generation"] = generation("openai", token_ids=[1, 2, 3], prompt_from=30, prompt_ids=[5] * 10)
    result = scored("efficiency", Trajectory.model_validate(data))
    assert result.details["tokens"] == {"prompt": 140, "completion": 15}


def test_not_scored_when_the_agent_never_acted_or_the_infrastructure_failed() -> None:
    template = load(Path("scenarios/customer_support/refund_damaged_item.yaml"))
    ep = Episode.start(template, 0)
    ep.step("customer", say("My lamp is broken."))
    ep.abort("model server down")
    assert score("efficiency", Trajectory.model_validate(to_trajectory(ep, agents_for(template, "oracle")))) is None
    ep = Episode.start(template, 0)
    ep.step("customer", call("end_conversation"))
    assert score("efficiency", Trajectory.model_validate(to_trajectory(ep, agents_for(template, "oracle")))) is None


def test_retries_after_faults_are_not_waste() -> None:
    # the reference run meets the same faults, so its length includes the retries
    result = scored("efficiency", played("refund_service_flaky"))
    assert result.score == 1.0 and result.details["reference_actions"] == result.details["support_turns"]
