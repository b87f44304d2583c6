"""Behaviour of the AEC, Parallel and Gymnasium views beyond the official checkers."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest

import trajgym
from trajgym.agents import OracleAgent
from trajgym.envs import customer_support_v0
from trajgym.envs.actions import call, say
from trajgym.errors import TrajgymError


def test_observation_is_openai_chat_json() -> None:
    env = gym.make("trajgym/CustomerSupport-v0")
    obs, info = env.reset(seed=0)
    messages = json.loads(obs["messages"])
    assert messages[0]["role"] == "system" and "policy" in messages[0]["content"].lower()
    assert messages[-1] == {"role": "user", "name": "customer", "content": messages[-1]["content"]}
    assert obs["status"] == "act"
    names = [t["function"]["name"] for t in info["tools"]]
    assert "refund_order" in names and all(t["type"] == "function" for t in info["tools"])


def test_tool_call_results_come_back_as_tool_messages_and_info_events() -> None:
    env = gym.make("trajgym/CustomerSupport-v0")
    env.reset(seed=0)
    obs, reward, terminated, _truncated, info = env.step(call("get_order", order_id="O1"))
    messages = json.loads(obs["messages"])
    assert messages[-1]["role"] == "tool" and json.loads(messages[-1]["content"])["order_id"] == "O1"
    event = info["events"][-1]
    assert event["type"] == "tool_result" and event["ok"] and event["name"] == "get_order"
    assert (reward, terminated, _truncated) == (0.0, False, False)


def test_random_text_from_the_action_space_is_a_malformed_action() -> None:
    env = gym.make("trajgym/CustomerSupport-v0")
    env.reset(seed=1)
    env.action_space.seed(1)
    for _ in range(5):
        obs, _, terminated, _, info = env.step(env.action_space.sample())
        assert info["events"][-1]["type"] == "action_error"
        assert "malformed" in json.loads(obs["messages"])[-1]["content"]
        assert not terminated
    steps = env.unwrapped.episode.steps
    assert all(s["error"] for s in steps if s["role"] == "support")


@pytest.mark.parametrize("bad", ["", "hello", "[]", '{"role": "user", "content": "x"}', '{"content": 3}',
                                 '{"tool_calls": "x"}', '{"tool_calls": [{"function": {}}]}', "{" * 5000, None, 7])
def test_malformed_actions_never_crash(bad: object) -> None:
    env = gym.make("trajgym/CustomerSupport-v0")
    env.reset(seed=2)
    _, _, terminated, _, info = env.step(bad)  # type: ignore[arg-type]
    assert info["events"][-1]["type"] == "action_error" and not terminated


def test_bad_tool_arguments_are_an_error_result_not_a_crash() -> None:
    env = gym.make("trajgym/CustomerSupport-v0")
    env.reset(seed=2)
    _, _, _, _, info = env.step(call("refund_order", order_id="O1", amount="lots"))
    event = info["events"][-1]
    assert not event["ok"] and event["error_type"] == "invalid_arguments"
    _, _, _, _, info = env.step(call("launch_rocket"))
    assert info["events"][-1]["error_type"] == "unknown_tool"
    _, _, _, _, info = env.step('{"tool_calls": [{"function": {"name": "get_order", "arguments": "{oops"}}]}')
    assert info["events"][-1]["error_type"] == "invalid_arguments"


def test_oracle_as_gym_learner_earns_the_reward() -> None:
    env = gym.make("trajgym/CustomerSupport-v0", scenario="refund_damaged_item")
    obs, info = env.reset(seed=4)
    oracle = OracleAgent()
    from trajgym.agents.base import AgentContext

    ep = env.unwrapped.episode
    oracle.reset(AgentContext("support", ep.instance, info["tools"], ep.instance.seed))
    total, done = 0.0, False
    while not done:
        obs, reward, terminated, truncated, info = env.step(oracle.act(json.loads(obs["messages"]), info))
        total += float(reward)
        done = terminated or truncated
    assert total == 1.0 and info["outcome"]["success"] and info["termination"] == "customer_ended"


def test_customer_can_be_the_learner_with_the_oracle_as_support() -> None:
    env = gym.make("trajgym/CustomerSupport-v0", learner="customer", policies={"support": "oracle"})
    obs, _ = env.reset(seed=0)
    assert "Start the conversation" in obs["messages"]
    obs, *_ = env.step(say("My headphones arrived broken, I want my money back."))
    assert "email" in obs["messages"].lower()  # the oracle asked for the details


def test_policies_are_checked() -> None:
    with pytest.raises(TrajgymError, match="not a role"):
        gym.make("trajgym/CustomerSupport-v0", learner="janitor")
    with pytest.raises(TrajgymError, match="other roles"):
        gym.make("trajgym/CustomerSupport-v0", policies={"support": "oracle"})
    with pytest.raises(TrajgymError, match="unknown agent"):
        gym.make("trajgym/CustomerSupport-v0", policies={"customer": "scripted_custmer"})


def test_unknown_scenario_suggests_a_fix() -> None:
    with pytest.raises(trajgym.TrajgymError, match="did you mean 'refund_damaged_item'"):
        customer_support_v0.env(scenario="refund_damaged_itme")


def test_aec_turns_follow_the_conversation() -> None:
    env = customer_support_v0.env(scenario="refund_damaged_item")
    env.reset(seed=0)
    assert env.agent_selection == "customer"
    env.step(say("Hi, my order arrived damaged."))
    assert env.agent_selection == "support"
    env.step(call("find_customer", email="nobody@example.com"))
    assert env.agent_selection == "support"  # tool calls keep the turn
    obs = env.observe("support")
    assert obs["status"] == "act" and json.loads(obs["messages"])[-1]["role"] == "tool"
    assert env.observe("customer")["status"] == "wait"
    env.step(say("Could you give me your email?"))
    assert env.agent_selection == "customer"
    env.step(call("end_conversation"))
    assert all(env.terminations.values())
    assert env.rewards == {"customer": 0.0, "support": 0.0}


def test_parallel_applies_only_the_acting_agents_action() -> None:
    env = customer_support_v0.parallel_env(scenario="refund_damaged_item")
    obs, _ = env.reset(seed=0)
    assert obs["customer"]["status"] == "act" and obs["support"]["status"] == "wait"
    obs, *_ = env.step({"customer": say("Hello, I need a refund."), "support": call("transfer_to_human", summary="x")})
    assert obs["support"]["status"] == "act"
    assert "I need a refund" in obs["support"]["messages"]
    assert env.episode is not None and not env.episode.done  # the waiting agent's transfer was ignored
    _, _, terms, _, _ = env.step({"support": call("transfer_to_human", summary="x"), "customer": "?"})
    assert all(terms.values()) and env.agents == []
    assert env.episode.termination == "transferred_to_human"


def test_max_turns_truncates() -> None:
    env = gym.make("trajgym/CustomerSupport-v0")
    env.reset(seed=0)
    truncated = terminated = False
    steps = 0
    while not (terminated or truncated):
        _, _, terminated, truncated, info = env.step(call("get_order", order_id="O1"))
        steps += 1
    assert truncated and not terminated and info["termination"] == "max_turns"
    assert steps < env.unwrapped.template.spec.limits.max_turns


def test_env_module_refuses_a_scenario_of_another_domain(tmp_path) -> None:
    from trajgym.envs.views import load_for_domain

    with pytest.raises(TrajgymError, match="this env runs workflow scenarios"):
        load_for_domain("refund_damaged_item", "workflow")
