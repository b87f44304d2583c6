"""Schema 1 files, written by trajgym itself before schema 2, read through every reader upgraded in memory.

The fixtures in tests/fixtures/v1/ are real output of commit 6990e38 (the last to write schema 1),
run from a checkout of it (``git worktree add /tmp/v1tree 6990e38``, then in /tmp/v1tree with
``PYTHONPATH=/tmp/v1tree``), so their paths are relative like a user's::

    trajgym rollout scenarios/customer_support/refund_damaged_item.yaml \\
        scenarios/customer_support/large_refund_needs_approval.yaml --agent oracle --episodes 2 \\
        --out oracle.jsonl --no-progress                      # and --agent random --out random.jsonl
    trajgym score oracle.jsonl random.jsonl --out scored.jsonl --no-progress

``openai.jsonl`` is one episode of ``trajgym rollout refund_damaged_item --agent openai --base-url URL
--model fake-model --customer llm_customer --tool-choice required --out openai.jsonl --no-progress``
(so the support agent offered the reply tool, and the customer has a persona and a scripted
literal opening) against tests/fake_openai.py's FakeOpenAI with one change, so that the prompt ids
are what a chat server sends back (the whole conversation rendered) rather than 64 fixed ids::

    def toks(text):  # a fake tokenizer: one id per 4 characters
        return [sum(map(ord, text[i:i + 4])) % 32000 for i in range(0, len(text), 4)]

    def render(m):  # a ChatML-like template, each part tokenized apart
        body = (m.get("content") or "") + (json.dumps(m["tool_calls"]) if m.get("tool_calls") else "")
        return toks(f"<|im_start|>{m['role']}\\n") + toks(body) + toks("<|im_end|>\\n")

    class Templated(FakeOpenAI):
        def reply(self, body, **kw):
            out = super().reply(body, **kw)
            choice, msg = out["choices"][0], out["choices"][0]["message"]
            prompt = [t for m in body["messages"] for t in render(m)] + toks("<|im_start|>assistant\\n")
            ids = toks(msg["content"] or json.dumps(msg.get("tool_calls"))) + toks("<|im_end|>\\n")
            choice["token_ids"] = ids
            choice["logprobs"]["content"] = [{"token": "x", "logprob": -0.01 * (i % 7), "bytes": None,
                                              "top_logprobs": []} for i in range(len(ids))]
            out.update(prompt_token_ids=prompt, usage={"prompt_tokens": len(prompt),
                       "completion_tokens": len(ids), "total_tokens": len(prompt) + len(ids)})
            return out

(``Templated().start()``, its ``base_url`` as URL, run with ``PYTHONPATH=/tmp/v1tree:/tmp/v1tree/tests``.)
The scenario was given by id, so schema 1 recorded its absolute path in that (since removed) checkout.
The old agent re-rendered a reply-tool call as a plain message in its history, so the support's
prompt breaks the chain once (turn 3) and extends it everywhere else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from trajgym.errors import TrajectoryFileError
from trajgym.rollout.episode import run_episode
from trajgym.rollout.runner import agents_for
from trajgym.scenario.catalog import resolve
from trajgym.scorers.config import load_scoring_config
from trajgym.scorers.pipeline import Scoring, score_files
from trajgym.trajectory import (
    Trajectory,
    iter_episodes,
    iter_scored,
    latest_per_unit,
    read,
    read_heads,
    role_tokens,
    unit_key,
)
from trajgym.trajectory.chat import REPLY_SPEC
from trajgym.trajectory.v1 import TRANSPORT_KEYS, upgrade
from trajgym.world.loader import load

V1 = Path(__file__).resolve().parent.parent / "fixtures" / "v1"
ROLLOUTS = ["oracle", "random", "openai"]


def raw(name: str) -> list[dict[str, Any]]:
    """The lines of a fixture as schema 1 wrote them."""
    return [json.loads(line) for line in (V1 / f"{name}.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("name", ROLLOUTS)
def test_every_reader_reads_a_v1_file_upgraded(name: str) -> None:
    path = V1 / f"{name}.jsonl"
    lines = raw(name)
    assert {line["schema_version"] for line in lines} == {1}
    episodes = read(path)
    assert len(episodes) == len(lines) and all(t.schema_version == 2 for t in episodes)
    assert [(t.scenario_id, t.seed, t.trial) for t in episodes] == [(d["scenario_id"], d["seed"], d["trial"])
                                                                    for d in lines]
    dicts = list(iter_episodes(path))
    assert [Trajectory.model_validate(d) for d in dicts] == episodes
    assert all(d["schema_version"] == 2 for d in dicts)
    heads = list(read_heads(path))
    assert [n for n, _ in heads] == list(range(1, len(lines) + 1))
    assert [(h.key, h.episode_id, h.scenario_path, h.scenario_hash, h.infra) for _, h in heads] == [
        (unit_key(d), d["episode_id"], d["scenario_path"], d["scenario_hash"], False) for d in dicts]
    latest = latest_per_unit(path)
    assert list(latest) == [unit_key(d) for d in dicts] and list(latest.values()) == dicts


def test_scored_v1_records_carry_the_upgraded_trajectory() -> None:
    lines = raw("scored")
    records = list(iter_scored(V1 / "scored.jsonl"))
    assert len(records) == len(lines) == 8 and {line["scored_version"] for line in lines} == {1}
    for record, line in zip(records, lines, strict=True):
        assert record.scored_version == 2 and record.trajectory.schema_version == 2
        assert (record.total, record.success, record.rank, record.group, record.source) == (
            line["total"], line["success"], line["rank"], line["group"], line["source"])
        file, n = record.source.split(":")  # the trajectory is the one the rollout file's line upgrades to
        assert record.trajectory == read(V1 / file)[int(n) - 1]
        assert record.filter is None


def test_policy_and_episode_ids_are_those_schema_2_gives_the_same_agents() -> None:
    oracle, random = read(V1 / "oracle.jsonl"), read(V1 / "random.jsonl")
    assert len({t.episode_id for t in [*oracle, *random]}) == 8  # unique across the two files
    assert len({d["episode_id"] for d in raw("oracle") + raw("random")}) == 4  # schema 1's repeated
    for episodes in (oracle, random):
        for scenario in ("refund_damaged_item", "large_refund_needs_approval"):
            mine = [t for t in episodes if t.scenario_id == scenario]
            assert len(mine) == 2 and len({t.policy for t in mine}) == 1  # one policy per scenario's roles
    assert not {t.policy for t in oracle} & {t.policy for t in random}
    for t, agent in [*((t, "oracle") for t in oracle), *((t, "random") for t in random)]:
        template = load(resolve(t.scenario_id))
        v2 = run_episode(template, t.seed, agents_for(template, agent), trial=t.trial)
        assert (t.policy, t.episode_id) == (v2["policy"], v2["episode_id"])
        assert t.job_id is None and t.tools == {}


def test_agents_split_identity_from_transport_and_persona() -> None:
    line = raw("openai")[0]
    old = {a["role"]: a["config"] for a in line["agents"]}
    agents = {a.role: a for a in read(V1 / "openai.jsonl")[0].agents}
    support, customer = agents["support"], agents["customer"]
    for role, agent in agents.items():
        assert agent.transport == {k: old[role][k] for k in ("base_url", "timeout_s", "retries")}
        assert not set(TRANSPORT_KEYS) & set(agent.config) and "persona" not in agent.config
        assert agent.model == "fake-model" and agent.weights_id is None
    assert support.transport["base_url"].startswith("http://127.0.0.1:")
    assert old["support"]["reply_tool"] is True and support.extra_tools == [REPLY_SPEC]
    assert old["customer"]["reply_tool"] is False and customer.extra_tools == []
    assert customer.persona == old["customer"]["persona"] and customer.persona["name"]
    assert support.persona is None
    oracle = {a.role: a for a in read(V1 / "oracle.jsonl")[0].agents}
    assert oracle["customer"].persona == raw("oracle")[0]["agents"][0]["config"]["persona"]
    assert oracle["customer"].config == {} and oracle["customer"].transport == {}


def _full_prompts(traj: Trajectory, role: str) -> dict[int, list[int]]:
    """Each model turn's whole prompt, rebuilt from the chain fields alone."""
    out: dict[int, list[int]] = {}
    chain: list[int] = []
    for step in traj.steps:
        gen = step.generation
        if step.role != role or gen is None or gen["backend"] == "scripted":
            continue
        start, new = gen["prompt_from"], gen["prompt_ids"]
        assert start is not None and new is not None
        assert start in (0, len(chain))
        prompt = [*chain[:start], *new]
        out[step.turn] = prompt
        chain = [*prompt, *(gen["token_ids"] or [])]
    return out


def test_generations_are_typed_and_stored_as_token_chains() -> None:
    line = raw("openai")[0]
    traj = read(V1 / "openai.jsonl")[0]
    old = {s["turn"]: s["generation"] for s in line["steps"] if s.get("generation")}
    assert old[0] == {"backend": "scripted", "persona": old[0]["persona"], "opening": True}
    opening = traj.steps[0].generation
    assert opening is not None and opening["backend"] == "scripted" and opening["literal"] == "opening"
    assert opening["prompt_ids"] is None and opening["token_ids"] is None
    breaks, extends = [], []
    for role in ("support", "customer"):
        prompts = _full_prompts(traj, role)
        turns = [s["turn"] for s in line["steps"] if s["role"] == role and old.get(s["turn"], {}).get("backend") == "openai"]
        assert sorted(prompts) == turns
        previous: list[int] = []
        for turn in turns:
            assert prompts[turn] == old[turn]["prompt_token_ids"]  # exactly the prompt schema 1 recorded
            gen = next(s.generation for s in traj.steps if s.turn == turn)
            assert gen is not None
            extended = bool(previous) and old[turn]["prompt_token_ids"][:len(previous)] == previous
            if extended:
                extends.append(turn)
                assert gen["prompt_from"] == len(previous) and gen["chain_break"] is None
                assert len(gen["prompt_ids"] or []) < len(old[turn]["prompt_token_ids"])
            else:
                assert gen["prompt_from"] == 0
                assert (gen["chain_break"] is not None) == bool(previous)  # the first turn is no break
                if previous:
                    breaks.append(turn)
            previous = [*old[turn]["prompt_token_ids"], *old[turn]["token_ids"]]
            for key in ("token_ids", "logprobs", "model", "tool_choice", "finish_reason", "tool_call_format",
                        "response_id"):
                assert gen[key] == old[turn][key], key
            assert gen["sampling"] == old[turn]["sampling"] and gen["usage"] == old[turn]["usage"]
            assert (gen["api"], gen["logprobs_mode"], gen["weights_id"]) == ("chat", "raw", None)
    assert breaks == [3] and extends == [4, 5, 6, 7, 8]  # the fixture has both (see the module docstring)


def test_role_tokens_rebuild_the_recorded_completions() -> None:
    line = raw("openai")[0]
    traj = read(V1 / "openai.jsonl")[0]
    old = {s["turn"]: s["generation"] for s in line["steps"] if (s.get("generation") or {}).get("backend") == "openai"}
    for role in ("support", "customer"):
        tokens = role_tokens(traj, role)
        turns = [t for t in old if next(s for s in traj.steps if s.turn == t).role == role]
        assert [t for seg in tokens.segments for t in seg.turns] == turns and tokens.untokenized == []
        assert [c for seg in tokens.segments for c in seg.completions()] == [old[t]["token_ids"] for t in turns]
        for seg in tokens.segments:
            last = old[seg.turns[-1]]
            assert seg.ids == [*last["prompt_token_ids"], *last["token_ids"]]
            assert [lp for lp, mine in zip(seg.logprobs, seg.generated, strict=True) if mine] == [
                lp for t in seg.turns for lp in old[t]["logprobs"]]
        breaks = [s.turn for s in traj.steps if s.role == role and s.generation and s.generation["chain_break"]]
        assert [turn for turn, _ in tokens.breaks] == breaks
    assert [s.turns for s in role_tokens(traj, "support").segments] == [[1], [3, 4, 5, 6, 7]]
    assert role_tokens(traj, "customer").exact


def test_a_shipped_scenario_becomes_a_builtin_reference(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert raw("oracle")[0]["scenario_path"] == "scenarios/customer_support/refund_damaged_item.yaml"
    assert raw("openai")[0]["scenario_path"].startswith("/tmp/v1tree/scenarios/")  # by id: an absolute path
    monkeypatch.chdir(tmp_path)  # the relative path names nothing here
    assert {t.scenario_path for t in read(V1 / "oracle.jsonl")} == {
        "builtin:customer_support/refund_damaged_item.yaml", "builtin:customer_support/large_refund_needs_approval.yaml"}
    if not Path(raw("openai")[0]["scenario_path"]).exists():  # unless that checkout is made again
        assert read(V1 / "openai.jsonl")[0].scenario_path == "builtin:customer_support/refund_damaged_item.yaml"
    gone = tmp_path / "gone" / "scenarios" / "customer_support" / "refund_damaged_item.yaml"
    assert upgrade({**raw("openai")[0], "scenario_path": str(gone)})["scenario_path"] == (
        "builtin:customer_support/refund_damaged_item.yaml")
    own = tmp_path / "customer_support" / "refund_damaged_item.yaml"  # a user's own copy stays itself
    own.parent.mkdir()
    own.write_text(resolve("refund_damaged_item").read_text())
    assert upgrade({**raw("oracle")[0], "scenario_path": str(own)})["scenario_path"] == str(own)


def test_scoring_v1_files_works_from_another_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    config, scorers = load_scoring_config(None)
    inputs = [V1 / f"{name}.jsonl" for name in ROLLOUTS]
    summary = score_files(inputs, tmp_path / "scored.jsonl", Scoring(config, scorers))
    assert summary.scored == 9 and summary.excluded == 0
    records = list(iter_scored(tmp_path / "scored.jsonl"))
    assert [r.trajectory for r in records] == [t for path in inputs for t in read(path)]
    then = {(d["trajectory"]["seed"], d["source"].split(":")[0]): d["success"] for d in raw("scored")}
    for r in records[:8]:  # the oracle's and the random agent's verdicts are those schema 1 scoring gave
        assert r.success is then[(r.trajectory.seed, Path(r.source.split(":")[0]).name)]
        assert r.total is not None
    assert records[8].success is True  # the openai episode, against a server that plays the oracle's part


def test_a_broken_v1_line_is_a_located_error(tmp_path: Path) -> None:
    line = raw("oracle")[0]
    del line["agents"][1]["role"]
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(raw("oracle")[1]) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(TrajectoryFileError, match=r"broken\.jsonl:2: .*schema 1.*without 'role'"):
        read(path)
    scored = raw("scored")[0]
    scored["trajectory"]["steps"][0] = 3
    path.write_text(json.dumps(scored) + "\n")
    with pytest.raises(TrajectoryFileError, match=r"broken\.jsonl:1: .*broken schema 1 trajectory.*malformed"):
        list(iter_scored(path))


def test_a_turn_without_prompt_ids_starts_the_chain_over() -> None:
    line = raw("openai")[0]
    step = next(s for s in line["steps"] if s["turn"] == 5)
    step["generation"]["prompt_token_ids"] = None  # a server that did not send them back
    traj = Trajectory.model_validate(upgrade(line))
    gens = {s.turn: s.generation for s in traj.steps if s.generation is not None}
    assert gens[5] is not None and gens[5]["prompt_from"] is None and gens[5]["prompt_ids"] is None
    assert gens[6] is not None and gens[6]["prompt_from"] == 0 and gens[6]["chain_break"] is None
    tokens = role_tokens(traj, "support")
    assert tokens.untokenized == [5] and [s.turns for s in tokens.segments] == [[1], [3, 4], [6, 7]]


def test_a_job_does_not_append_to_a_schema_1_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A resumed job would add schema 2 lines of other policies (the upgrade computes them from
    schema 1's agents) to a schema 1 file: it is refused, saying why; the file is untouched."""
    from trajgym.cli.main import main

    out = tmp_path / "old.jsonl"
    out.write_bytes((V1 / "oracle.jsonl").read_bytes())
    before = out.read_bytes()
    assert main(["rollout", "refund_damaged_item", "--episodes", "2", "--out", str(out), "--resume",
                 "--no-progress"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "trajectory schema 1" in err and "choose another output file" in err and "Traceback" not in err
    assert out.read_bytes() == before
