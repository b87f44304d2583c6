"""The OpenAI-compatible model agents against a deterministic fake server (tests/fake_openai.py)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_openai import FakeOpenAI

from trajgym.agents import (
    AGENTS,
    AgentContext,
    LLMCustomer,
    OpenAIAgent,
    ScriptedCustomer,
    make_agent,
)
from trajgym.agents.chat import _replies_as_text, generation
from trajgym.agents.openai_agent import close_connections
from trajgym.agents.toolcalls import parse_text_tool_calls
from trajgym.envs.core import Episode
from trajgym.errors import InfraError, TrajgymError
from trajgym.rollout.episode import aplay, to_trajectory
from trajgym.scenario.schema import GoalChange
from trajgym.world.loader import ScenarioTemplate

SAMPLING = {"temperature": 0.6, "top_p": 0.9, "max_tokens": 256, "seed": 7}


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    srv = FakeOpenAI().start()
    yield srv
    srv.stop()


def support_agent(srv: FakeOpenAI, **kw: Any) -> OpenAIAgent:
    kw = {"sampling": SAMPLING, "retries": 3, "backoff_s": 0.01, "timeout_s": 2.0, **kw}
    return OpenAIAgent(base_url=srv.base_url, model="fake-model", **kw)


def play(template: ScenarioTemplate, agents: dict[str, Any], seed: int = 1, trial: int = 0) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        try:
            episode = await aplay(Episode.start(template, seed, trial=trial), agents)
        finally:
            await close_connections()
        traj = to_trajectory(episode, agents)
        json.dumps(traj)  # the record is JSON
        return traj
    return asyncio.run(go())


def test_registry_knows_the_model_agents() -> None:
    assert AGENTS["openai"] is OpenAIAgent and AGENTS["llm_customer"] is LLMCustomer
    assert isinstance(make_agent("openai"), OpenAIAgent)


@pytest.mark.parametrize("tool_format", ["api", "text"])
def test_full_episode_records_generation(tool_format: str, server: FakeOpenAI,
                                         templates: dict[str, ScenarioTemplate]) -> None:
    server.tool_format = tool_format
    agent = support_agent(server, strict=True, tool_choice="auto")
    traj = play(templates["refund_damaged_item"], {"support": agent, "customer": ScriptedCustomer()})
    assert traj["termination"] == "customer_ended"
    assert traj["outcome"]["success"], traj["outcome"]
    support_steps = [s for s in traj["steps"] if s["role"] == "support"]
    assert len(support_steps) == 6 == len(server.requests)
    for step, request in zip(support_steps, server.requests, strict=True):
        gen = step["generation"]
        assert gen["sampling"] == {**SAMPLING, "seed": request["seed"]}  # the settings sent
        assert gen["prompt_ids"] and gen["prompt_from"] is not None and gen["token_ids"]
        assert len(gen["logprobs"]) == len(gen["token_ids"])
        assert gen["usage"]["completion_tokens"] == len(gen["token_ids"])
        assert gen["finish_reason"] in ("stop", "tool_calls") and gen["wall_latency_ms"] >= 0
    assert {s["generation"]["tool_call_format"] for s in support_steps} == {None, tool_format}
    # the request carries the whole history, the tools (strict) and the sampling settings
    last = server.requests[-1]
    assert last["temperature"] == 0.6 and last["top_p"] == 0.9 and last["logprobs"] is True
    assert last["return_token_ids"] is True and last["tool_choice"] == "auto"
    assert all(t["function"]["strict"] is True for t in last["tools"])
    roles = [m["role"] for m in last["messages"]]
    assert roles[0] == "system" and roles.count("tool") == 4 and "assistant" in roles
    calls = [m for m in last["messages"] if m.get("tool_calls")]
    tool_ids = {m["tool_call_id"] for m in last["messages"] if m["role"] == "tool"}
    assert {c["id"] for m in calls for c in m["tool_calls"]} == tool_ids
    desc = next(a for a in traj["agents"] if a["role"] == "support")
    assert desc["kind"] == "openai" and desc["config"]["sampling"] == SAMPLING
    assert desc["model"] == "fake-model"


def test_text_tool_call_parsing() -> None:
    content, calls = parse_text_tool_calls(
        'Let me check.\n<tool_call>{"name": "get_order", "arguments": {"order_id": "O1"}}</tool_call>\n'
        '<tool_call>{"name": "find_customer", "arguments": "{\\"email\\": \\"a@b.c\\"}"}</tool_call>')
    assert content == "Let me check."
    assert [c["function"]["name"] for c in calls] == ["get_order", "find_customer"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"order_id": "O1"}
    assert json.loads(calls[1]["function"]["arguments"]) == {"email": "a@b.c"}
    assert calls[0]["id"] != calls[1]["id"]
    content, calls = parse_text_tool_calls('<tool_call>{"name": "x", "arguments": {</tool_call>')
    assert content is None and calls[0]["function"]["name"] == ""
    _, calls = parse_text_tool_calls('<tool_call>{"name": "get_order", "arguments": {}}')  # unclosed
    assert calls[0]["function"]["name"] == "get_order"
    assert parse_text_tool_calls("no calls here") == ("no calls here", [])


def test_malformed_tool_call_is_the_agents_mistake(server: FakeOpenAI,
                                                   templates: dict[str, ScenarioTemplate]) -> None:
    server.faults = ["ok", "bad_tool_text"]
    traj = play(templates["refund_damaged_item"], {"support": support_agent(server),
                                                   "customer": ScriptedCustomer()})
    support = [s for s in traj["steps"] if s["role"] == "support"]
    assert "needs function.name" in support[1]["error"]
    assert support[1]["generation"]["raw_content"].startswith("<tool_call>")
    assert traj["termination"] == "customer_ended" and traj["infra_error"] is None
    # the history shows the model what it said, as text
    later = server.requests[2]["messages"]
    assert any(m["role"] == "assistant" and "<tool_call>" in (m["content"] or "") for m in later)


def test_transient_faults_are_retried(server: FakeOpenAI, templates: dict[str, ScenarioTemplate]) -> None:
    server.faults = ["500", "timeout"]
    agent = support_agent(server, timeout_s=0.3)
    traj = play(templates["refund_damaged_item"], {"support": agent, "customer": ScriptedCustomer()})
    assert traj["outcome"]["success"] and traj["infra_error"] is None


def test_server_down_mid_episode_is_infra_error(server: FakeOpenAI,
                                                templates: dict[str, ScenarioTemplate]) -> None:
    server.fail_after = 2
    traj = play(templates["refund_damaged_item"], {"support": support_agent(server),
                                                   "customer": ScriptedCustomer()})
    assert traj["termination"] == "infra_error"
    assert "HTTP 503" in traj["infra_error"] and server.base_url in traj["infra_error"]
    assert traj["rewards"]["support"] == 0.0
    assert len(server.requests) == 2 + 3  # two answered, then three attempts
    assert not any(s["error"] for s in traj["steps"])  # nothing charged to the agent


def test_connection_refused_is_infra_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    agent = OpenAIAgent(base_url=f"http://127.0.0.1:{port}/v1", model="m", retries=2, backoff_s=0.01)
    with pytest.raises(InfraError, match=rf"127.0.0.1:{port}.*2 attempt.*last error"):
        agent.act([{"role": "user", "content": "hi"}], {"tools": []})


def test_bad_request_is_a_configuration_error(server: FakeOpenAI) -> None:
    server.faults = ["400"]
    agent = support_agent(server)
    with pytest.raises(TrajgymError, match=r"HTTP 400.*maximum context length") as exc:
        agent.act([{"role": "user", "content": "hi"}], {"tools": []})
    assert not isinstance(exc.value, InfraError)
    assert len(server.requests) == 1  # not retried


def test_model_name_from_the_server(server: FakeOpenAI) -> None:
    agent = OpenAIAgent(base_url=server.base_url, retries=1)
    agent.act([{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}], {"tools": []})
    assert agent.model == "fake-model" and server.requests[0]["model"] == "fake-model"
    assert "tools" not in server.requests[0]


def test_agents_with_the_same_server_settings_share_one_client(server: FakeOpenAI) -> None:
    # a job builds an agent per episode: the client (its request heads) is built once
    a, b = (OpenAIAgent(base_url=server.base_url, model="m", timeout_s=5, sampling={"seed": s}) for s in (1, 2))
    assert a.client is b.client
    assert OpenAIAgent(base_url=server.base_url, model="m", timeout_s=6).client is not a.client
    assert OpenAIAgent(base_url=server.base_url, model="m", timeout_s=5, api_key="k").client is not a.client
    assert b.client.timeout_s == 5 and b.act([{"role": "user", "content": "hi"}], {"tools": []})
    with pytest.raises(TrajgymError, match="model server base_url"):
        OpenAIAgent(base_url="ftp://example.com/v1")


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(TrajgymError, match="tool_choice"):
        OpenAIAgent(tool_choice="always")
    with pytest.raises(TrajgymError, match="temprature"):
        OpenAIAgent(sampling={"temprature": 1.0})


def test_llm_customer_end_to_end(server: FakeOpenAI, templates: dict[str, ScenarioTemplate]) -> None:
    customer = LLMCustomer(base_url=server.base_url, model="fake-model", retries=2, backoff_s=0.01)
    agents = {"support": support_agent(server), "customer": customer}
    traj = play(templates["refund_damaged_item"], agents)
    assert traj["termination"] == "customer_ended" and traj["outcome"]["success"], traj["outcome"]
    cust = [s for s in traj["steps"] if s["role"] == "customer"]
    assert cust[0]["generation"]["backend"] == "scripted"  # the literal opening
    assert cust[0]["generation"]["literal"] == "opening" and cust[0]["generation"]["token_ids"] is None
    assert cust[-1]["tool_calls"][0]["name"] == "end_conversation"
    # the customer's view: its own prompt, support as user, itself as assistant; facts only asked
    creq = [r for r in server.requests if any(t["function"]["name"] == "end_conversation"
                                              for t in r.get("tools", []))]
    msgs = creq[0]["messages"]
    assert msgs[0]["content"] == customer.system_prompt and "say each item only when" in msgs[0]["content"].lower()
    assert sum(m["role"] == "system" for m in msgs) == 1
    assert msgs[-1] == {"role": "user", "name": "support", "content": msgs[-1]["content"]}
    assert any(m["role"] == "assistant" for m in msgs)
    desc = next(a for a in traj["agents"] if a["role"] == "customer")
    assert desc["kind"] == "llm_customer" and desc["persona"]["mood"] == "calm" and "persona" not in desc["config"]


def test_llm_customer_persona_pool_is_seeded(templates: dict[str, ScenarioTemplate]) -> None:
    from trajgym.agents.base import AgentContext

    pool = [{"mood": "angry", "expertise": "novice"}, {"mood": "hurried", "language": "de"}]
    seen = []
    for seed in range(12):
        inst = templates["refund_damaged_item"].instantiate(seed)
        a, b = LLMCustomer(persona_pool=pool), LLMCustomer(persona_pool=pool)
        for c in (a, b):
            c.reset(AgentContext("customer", inst, [], seed))
        assert a.persona == b.persona and a.describe("customer")["persona"] == a.persona
        seen.append(a.persona["mood"])
        assert a.persona["name"] == inst.spec.customer.persona.name  # type: ignore[union-attr]
    assert set(seen) == {"angry", "hurried"}
    c = LLMCustomer(moods=["confused"], languages=["fr"])
    c.reset(AgentContext("customer", templates["refund_damaged_item"].instantiate(0), [], 0))
    assert c.persona["mood"] == "confused" and "'fr'" in c.system_prompt


@pytest.mark.parametrize("choice", [None, "required"])
def test_tool_choice_is_configurable(choice: str | None, server: FakeOpenAI) -> None:
    tools = [{"type": "function", "function": {"name": "get_order", "parameters": {
        "type": "object", "properties": {}, "additionalProperties": False}}}]
    agent = support_agent(server, tool_choice=choice)
    agent.act([{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}], {"tools": tools})
    sent = server.requests[0]
    assert sent.get("tool_choice") == choice and "strict" not in sent["tools"][0]["function"]
    assert agent.config()["tool_choice"] == choice and agent.generation is not None
    assert agent.generation["tool_choice"] == choice


def _seeds(srv: FakeOpenAI, tools: str) -> list[int]:
    """The seeds of the requests made by the role whose tools include ``tools``, in order."""
    return [r["seed"] for r in srv.requests if any(t["function"]["name"] == tools for t in r.get("tools", []))]


def test_each_request_has_its_own_seed_and_a_rerun_repeats_them(server: FakeOpenAI,
                                                                templates: dict[str, ScenarioTemplate]) -> None:
    """Sampling seeds are a stable hash of the episode seed, trial, role and turn: a rerun of a unit
    sends the same seeds (so temperature > 0 reproduces), another episode or trial other ones."""
    template = templates["refund_damaged_item"]
    hot = {"temperature": 1.0, "max_tokens": 64}

    def run(seed: int, trial: int = 0, base: dict[str, Any] | None = None) -> tuple[list[int], list[int], dict[str, Any]]:
        server.requests.clear()
        customer = LLMCustomer(base_url=server.base_url, model="fake-model", retries=2, backoff_s=0.01,
                               sampling=hot)
        traj = play(template, {"support": support_agent(server, sampling=base or hot), "customer": customer},
                    seed=seed, trial=trial)
        assert traj["termination"] == "customer_ended", traj["termination"]
        return _seeds(server, "refund_order"), _seeds(server, "end_conversation"), traj

    support, customer, traj = run(seed=3)
    assert len(support) == 6 and len(customer) >= 2
    assert len(set(support + customer)) == len(support + customer)  # every turn and role: its own seed
    assert all(isinstance(s, int) and 0 <= s < 2 ** 63 for s in support + customer)
    # each step records the seed its request carried
    recorded = [s["generation"]["sampling"]["seed"] for s in traj["steps"]
                if s["generation"] and s["generation"]["backend"] == "openai"]
    assert sorted(recorded) == sorted(support + customer)
    assert all(s["generation"]["sampling"]["temperature"] == 1.0 for s in traj["steps"]
               if s["generation"] and s["generation"]["backend"] == "openai")

    assert run(seed=3)[:2] == (support, customer)  # the rerun: the same seeds, request by request
    other_episode = run(seed=4)[:2]
    other_trial = run(seed=3, trial=1)[:2]
    for seeds in (other_episode, other_trial):
        assert not set(seeds[0] + seeds[1]) & set(support + customer)
    # a configured seed is the base of the derivation, so a job can draw another set of samples
    reseeded = run(seed=3, base={**hot, "seed": 11})[0]
    assert not set(reseeded) & set(support)


def test_request_seeds_can_be_turned_off(server: FakeOpenAI, templates: dict[str, ScenarioTemplate]) -> None:
    agent = support_agent(server, request_seeds=False)
    traj = play(templates["refund_damaged_item"], {"support": agent, "customer": ScriptedCustomer()})
    assert traj["outcome"]["success"]
    assert {r["seed"] for r in server.requests} == {SAMPLING["seed"]}  # sent as configured
    assert all(s["generation"]["sampling"] == SAMPLING for s in traj["steps"] if s["role"] == "support")
    assert agent.config()["request_seeds"] is False
    agent = support_agent(server, sampling={"temperature": 0.5}, request_seeds=False)
    server.requests.clear()
    agent.reset(AgentContext("support", templates["refund_damaged_item"].instantiate(0), [], 0))
    agent.act([{"role": "user", "content": "hi"}], {"tools": [], "turn": 1})
    assert "seed" not in server.requests[0]


def _customer_requests(srv: FakeOpenAI) -> list[dict[str, Any]]:
    return [r for r in srv.requests if any(t["function"]["name"] == "end_conversation" for t in r.get("tools", []))]


@pytest.mark.parametrize("literal", [True, False])
def test_llm_customer_follows_a_goal_change(literal: bool, server: FakeOpenAI,
                                            templates: dict[str, ScenarioTemplate]) -> None:
    """When customer_goal_change fires, the customer's prompt holds the new request and what it now
    wants to hear from that turn on; the change-of-mind message is said verbatim (literal) or
    written by the model from that prompt."""
    template = templates["refund_then_exchange"]
    inst = template.instantiate(5)
    change = next(f for f in inst.spec.faults if isinstance(f, GoalChange))
    customer = LLMCustomer(base_url=server.base_url, model="fake-model", retries=2, backoff_s=0.01,
                           literal_change=literal)
    traj = play(template, {"support": make_agent("oracle"), "customer": customer}, seed=5)
    assert traj["outcome"]["goal_changed_at"] is not None
    assert [f["kind"] for f in traj["faults"]] == ["customer_goal_change"]

    old_want, new_want = inst.spec.goal.tell[0], change.goal.tell[0]
    requests = _customer_requests(server)
    changed = [any("You change your mind" in (m.get("content") or "") for m in r["messages"]) for r in requests]
    assert False in changed and True in changed
    for request, after in zip(requests, changed, strict=True):
        prompt = request["messages"][0]["content"]
        assert sum(m["role"] == "system" and m["content"] == prompt for m in request["messages"]) == 1
        if after:
            assert new_want.name in prompt and new_want.any_of[0] in prompt and change.message in prompt
            assert old_want.name not in prompt
            assert "changed your mind" in prompt and inst.spec.customer.opening in prompt  # type: ignore[union-attr]
        else:
            assert old_want.name in prompt and new_want.name not in prompt and change.message not in prompt
    assert customer.system_prompt == requests[-1]["messages"][0]["content"]

    # the turn the change fired: the scenario's words, or the model's own from the new prompt
    before = change.at_customer_turn - 2  # customer turns 2 .. at-1 asked the model (turn 1: the opening)
    assert changed == [False] * before + [True] * (len(requests) - before)
    cust = [s for s in traj["steps"] if s["role"] == "customer"]
    fired = cust[change.at_customer_turn - 1]
    assert any("You change your mind" in (m.get("content") or "") for m in fired["observation"])
    if literal:
        assert fired["message"] == change.message
        assert fired["generation"] == generation("scripted", model="fake-model", literal="goal_change")
    else:
        assert fired["generation"]["backend"] == "openai"
        assert fired["generation"]["response_id"] == f"chatcmpl-{before + 1}"  # answered requests[before]


def test_a_model_forced_to_call_tools_talks_through_the_reply_tool(server: FakeOpenAI,
                                                                   templates: dict[str, ScenarioTemplate]) -> None:
    support = support_agent(server, tool_choice="required")
    customer = LLMCustomer(base_url=server.base_url, model="fake-model", retries=2, backoff_s=0.01,
                           tool_choice="required")
    traj = play(templates["refund_damaged_item"], {"support": support, "customer": customer})
    assert traj["outcome"]["success"], traj["outcome"]
    assert all("reply" in {t["function"]["name"] for t in r["tools"]} for r in server.requests)
    answers = [m for r in server.requests for m in r["messages"] if m["role"] == "assistant"]
    assert answers and not any(c["function"]["name"] == "reply" for m in answers
                               for c in m.get("tool_calls") or [])  # the history holds them as text
    support_said = [s["message"] for s in traj["steps"] if s["role"] == "support" and s["message"]]
    assert support_said[0].startswith("Sorry about that!") and "refunded" in support_said[-1]
    assert not any(tc["name"] == "reply" for s in traj["steps"] for tc in s["tool_calls"])
    assert all(s["error"] is None for s in traj["steps"])
    assert {a["role"]: a["config"]["reply_tool"] for a in traj["agents"] if a["role"] != "supervisor"} == {
        "support": True, "customer": True}
    # auto: no reply tool offered, and a broken reply call stays a call for the env to judge
    assert support_agent(server).tools_of({"tools": [{"x": 1}]}) == [{"x": 1}]
    text, calls = _replies_as_text(None, [{"function": {"name": "reply", "arguments": "{oops"}}])
    assert text is None and len(calls) == 1
    with pytest.raises(TrajgymError, match="tool named 'reply'"):
        support_agent(server, tool_choice="required").tools_of({"tools": [{"function": {"name": "reply"}}]})


def test_an_agent_prepared_after_a_weight_swap_records_the_new_weights(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's /models answer is asked once per client, but the weights behind its ``root`` are
    hashed at every prepare: VLLMServer.load_weights retargets that root (a link) to the new folder."""
    import os

    from trajgym.agents.openai_agent import ServedModel
    from trajgym.serving.weights import weights_id

    monkeypatch.setenv("TRAJGYM_CACHE", str(tmp_path / "cache"))
    for name in ("base", "tuned"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_bytes(name.encode())
    root = tmp_path / "served"
    root.symlink_to(tmp_path / "base")
    asked: list[str | None] = []

    async def served_model(model: str | None) -> ServedModel:
        asked.append(model)
        return ServedModel("policy", str(root), 4096)

    first = OpenAIAgent(base_url="http://127.0.0.1:9/v1")
    monkeypatch.setattr(first.client, "served_model", served_model)
    first.prepare()
    assert first.model == "policy" and first.weights_id == weights_id(tmp_path / "base")
    (tmp_path / "next").symlink_to(tmp_path / "tuned")
    os.replace(tmp_path / "next", root)  # what a live swap does to the served folder
    second = OpenAIAgent(base_url="http://127.0.0.1:9/v1")
    assert second.client is first.client  # the process's one client: its /models answer is kept
    second.prepare()
    assert second.weights_id == weights_id(tmp_path / "tuned") != first.weights_id
    pinned = OpenAIAgent(base_url="http://127.0.0.1:9/v1", weights_id="given")
    pinned.prepare()
    assert pinned.weights_id == "given"
