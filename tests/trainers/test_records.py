"""Training records from scored episodes: the learner's conversation as a model agent kept it, SFT
records with their provenance, DPO pairs split at the first differing assistant turn."""

from __future__ import annotations

import json
from typing import Any

import pytest
from trainers_helpers import SCENARIOS, ReplayChatAgent, scored, with_support_action

from trajgym.agents.chat import generation
from trajgym.rollout.episode import run_episode
from trajgym.rollout.runner import agents_for
from trajgym.scenario.catalog import resolve
from trajgym.scorers import ScoreResult
from trajgym.trainers.records import (
    Message,
    action_message,
    dpo_pair,
    dpo_records,
    learner_conversation,
    learner_messages,
    learner_tools,
    raw_messages,
    sft_records,
)
from trajgym.trajectory.chat import REPLY_SPEC
from trajgym.trajectory.schema import Trajectory
from trajgym.world.loader import load

KEYS = {"role", "content", "name", "tool_call_id", "tool_calls"}
SAY = {"role": "assistant", "content": "Let me check that for you."}


@pytest.mark.parametrize("sid", SCENARIOS)
def test_conversation_is_the_model_agents_history(sid: str) -> None:
    template = load(resolve(sid))
    agents = agents_for(template, "oracle")
    agent = agents["support"] = ReplayChatAgent()
    traj = Trajectory.model_validate(run_episode(template, 7, agents))
    mine = [s for s in traj.steps if s.role == "support"]
    assert mine[0].error and any(s.generation and s.generation["tool_call_format"] == "text" for s in mine)
    assert raw_messages(traj) == agent.history
    messages = learner_messages(traj)
    assert len(messages) == len(agent.history) and all(set(m) == KEYS for m in messages)
    for got, kept in zip(messages, agent.history, strict=True):
        assert got["role"] == kept["role"] and got["content"] == kept.get("content")
        assert got["tool_call_id"] == kept.get("tool_call_id") and got["name"] == kept.get("name")
        calls = kept.get("tool_calls")
        assert got["tool_calls"] == (calls and [{"id": c["id"], "type": "function", "function": c["function"]}
                                                 for c in calls])
        for call in got["tool_calls"] or []:
            assert isinstance(call["function"]["arguments"], str)
    # the malformed first answer is kept as the action's text (no raw_content was recorded)
    first = messages[len(mine[0].observation)]
    assert first == {**dict.fromkeys(KEYS), "role": "assistant", "content": mine[0].action}


def test_an_action_that_is_no_message_is_kept_as_the_models_text(oracle_episodes: dict[str, Trajectory]) -> None:
    step = next(s for s in oracle_episodes["refund_damaged_item"].steps if s.role == "support")
    assert action_message(step) == json.loads(step.action)
    bad = step.model_copy(update={"action": '{"role": "assistant", "tool_calls": [{"function": {}}]}'})
    assert action_message(bad) == {"role": "assistant", "content": bad.action}
    bad.generation = generation("openai", raw_content="<tool_call>{oops</tool_call>")
    assert action_message(bad) == {"role": "assistant", "content": "<tool_call>{oops</tool_call>"}
    not_json = step.model_copy(update={"action": "hello"})
    assert action_message(not_json) == {"role": "assistant", "content": "hello"}


def test_sft_records_hold_the_conversation_and_provenance(oracle_episodes: dict[str, Trajectory]) -> None:
    trajs = list(oracle_episodes.values())
    recs = [scored(t, 1.0 - 0.1 * k, rank=1, source=f"in.jsonl:{k + 1}",
                   scores={"outcome": ScoreResult(score=1.0), "judge": None}) for k, t in enumerate(trajs)]
    recs.append(scored(trajs[0].model_copy(update={"episode_id": "gone"}), None, excluded="infra_error"))
    built = sft_records(recs)
    assert dict(built.skipped) == {"excluded (infra_error)": 1}
    assert [r.episode_id for r in built.records] == [t.episode_id for t in trajs]
    for k, (rec, traj) in enumerate(zip(built.records, trajs, strict=True)):
        assert rec.messages == learner_conversation(traj)
        assert rec.messages[0].role == "system" and rec.messages[-1].role == "assistant"
        assert json.loads(rec.tools) == traj.tools["support"]
        assert (rec.source, rec.scenario_id, rec.seed, rec.trial, rec.policy, rec.job_id) == (
            f"in.jsonl:{k + 1}", traj.scenario_id, traj.seed, traj.trial, traj.policy, traj.job_id)
        assert rec.total == pytest.approx(1.0 - 0.1 * k) and rec.rank == 1 and rec.group == recs[k].group
        assert json.loads(rec.scores) == {"outcome": 1.0, "judge": None}
        assert rec.weights_id is None and rec.filter_hash is None
    assert dict(sft_records(recs, role="nobody").skipped) == {"no nobody turns": 3, "excluded (infra_error)": 1}


def test_extra_tools_come_first_and_weights_from_generations(oracle_episodes: dict[str, Trajectory]) -> None:
    traj = oracle_episodes["refund_damaged_item"].model_copy(deep=True)
    agent = next(a for a in traj.agents if a.role == "support")
    agent.extra_tools, agent.weights_id = [REPLY_SPEC], "ckpt-1"
    assert learner_tools(traj) == [REPLY_SPEC, *traj.tools["support"]]
    rec = sft_records([scored(traj)]).records[0]
    assert json.loads(rec.tools)[0] == REPLY_SPEC and rec.weights_id == "ckpt-1"


def _pair_setup(oracle_episodes: dict[str, Trajectory]) -> tuple[Trajectory, list[Message], int]:
    best = oracle_episodes["refund_damaged_item"]
    conv = learner_conversation(best)
    third = [i for i, m in enumerate(conv) if m.role == "assistant"][2]
    return best, conv, third


def test_dpo_splits_at_the_first_differing_assistant_turn(oracle_episodes: dict[str, Trajectory]) -> None:
    best, conv, third = _pair_setup(oracle_episodes)
    worse = with_support_action(best, 2, SAY, "worse")
    built = dpo_records([scored(worse, 0.5, rank=2, source="b:1"), scored(best, 1.0, rank=1, source="a:1")])
    assert not built.skipped and len(built.records) == 1
    pair = built.records[0]
    assert pair.prompt == conv[:third] and pair.chosen == [conv[third]]
    assert pair.rejected == [Message(role="assistant", content=SAY["content"])]
    assert pair.chosen[0].tool_calls and pair.rejected[0].tool_calls is None
    assert (pair.margin, pair.chosen_episode_id, pair.rejected_episode_id) == (0.5, best.episode_id, "worse")
    assert (pair.chosen_source, pair.rejected_source, pair.chosen_total, pair.rejected_total) == ("a:1", "b:1", 1.0, 0.5)
    assert (pair.scenario_id, pair.seed, json.loads(pair.tools)) == (best.scenario_id, best.seed, best.tools["support"])


def test_dpo_pairs_the_best_with_each_worse_one_by_margin(oracle_episodes: dict[str, Trajectory]) -> None:
    best, _, _ = _pair_setup(oracle_episodes)
    variants = {name: with_support_action(best, n, {**SAY, "content": name}, name)
                for n, name in enumerate(["close", "edge", "far"], 1)}
    recs = [scored(best, 0.8), scored(variants["close"], 0.75), scored(variants["edge"], 0.7),
            scored(variants["far"], 0.1), scored(best.model_copy(update={"episode_id": "same"}), 0.2)]
    built = dpo_records(recs)
    assert [(p.chosen_episode_id, p.rejected_episode_id) for p in built.records] == [
        (best.episode_id, "edge"), (best.episode_id, "far")]  # 0.8 - 0.7 reaches 0.1 despite floats
    assert dict(built.skipped) == {"pair: margin < 0.1": 1, "pair: no assistant message differs": 1}
    assert len(dpo_records(recs, min_margin=0.0).records) == 3
    assert not dpo_records(recs, min_margin=0.75).records


def test_dpo_skips_what_cannot_pair(oracle_episodes: dict[str, Trajectory]) -> None:
    best, _, _ = _pair_setup(oracle_episodes)
    other_context = best.model_copy(deep=True, update={"episode_id": "ctx"})
    step = next(s for s in other_context.steps if s.role == "support" and s.turn > 1)
    step.observation = [{**step.observation[0], "content": "something else"}]
    alone = oracle_episodes["count_words"]
    other_tools = with_support_action(best, 3, SAY, "tools")
    other_tools.tools = {**other_tools.tools, "support": other_tools.tools["support"][:1]}
    built = dpo_records([scored(best, 1.0), scored(other_context, 0.0), scored(alone), scored(other_tools, 0.0),
                         scored(best.model_copy(update={"episode_id": "x"}), None, excluded="infra_error")])
    assert not built.records
    assert dict(built.skipped) == {
        "pair: the conversations part at a non-assistant message": 1, "pair: different tools offered": 1,
        "episode alone in its group (nothing to pair with)": 1, "episode excluded (infra_error)": 1}
    assert dpo_pair(scored(best, 1.0), scored(other_context, None)) == "an episode is excluded from scoring"


def test_records_are_plain_rows(oracle_episodes: dict[str, Trajectory]) -> None:
    row: dict[str, Any] = sft_records([scored(oracle_episodes["count_words"])]).records[0].model_dump()
    assert row["messages"] == learner_messages(oracle_episodes["count_words"])
    assert all(isinstance(v, (str, int, float, bool, list, type(None))) for v in row.values())
