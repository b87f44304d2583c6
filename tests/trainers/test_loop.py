"""`trajgym loop`: generations of play, score, filter, train, serve, evaluate in one run folder; the
curriculum, the data policy (accumulate with an oracle anchor, or replace), human labels, and a loop
killed with SIGKILL mid-generation that resumes to the same generations with nothing written twice.
The player is the oracle and the server a stand-in (``loop_fake_server``), so no vLLM is needed; the
trainer is real (TRL's SFT on a tiny model)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("trl")

from trainers_helpers import scored

from trajgym.cli.main import main as cli_main
from trajgym.errors import TrajgymError
from trajgym.rollout.episode import run_episode
from trajgym.rollout.runner import agents_for
from trajgym.scenario.catalog import resolve
from trajgym.trainers.loop import allocate, curriculum, keep, read_labels
from trajgym.trajectory.schema import FaultRecord, Trajectory
from trajgym.world.loader import load

HERE = Path(__file__).parent


def _config(tmp_path: Path, tiny_model: Path, name: str, **extra: str) -> Path:
    lines = {
        "start": str(tiny_model), "output": name, "generations": "2",
        "scenarios": "[refund_damaged_item, employee_onboarding]", "held_out_scenarios": "[order_status_inquiry]",
        "episodes_per_generation": "3", "anchor_episodes": "1", "player": "oracle",
        "server": '"loop_fake_server:FakeServer"',
        "train": "{max_steps: 1, precision: fp32, max_length: 4096, learning_rate: 1.0e-3}",
        "eval": "{episodes: 1}", **extra}
    path = tmp_path / f"{name}.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in lines.items()))
    return path


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}


def _loop(config: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "trajgym.cli.main", "loop", str(config), *extra],
                            cwd=config.parent, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _keys(path: Path) -> list[tuple[str, int, int]]:
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            d = json.loads(line)
            t = d.get("trajectory", d)
            out.append((t["scenario_id"], t["seed"], t["trial"]))
    return out


def test_allocate_and_curriculum() -> None:
    assert allocate(7, {"a": 1.0, "b": 1.0, "c": 1.0}) in ({"a": 3, "b": 2, "c": 2}, {"a": 2, "b": 3, "c": 2},
                                                           {"a": 2, "b": 2, "c": 3})
    assert allocate(3, {"a": 0.0, "b": 5.0, "c": 0.0}) == {"a": 1, "b": 1, "c": 1}  # the floor: one each
    with pytest.raises(TrajgymError, match="cannot give each"):
        allocate(1, {"a": 1.0, "b": 1.0})
    template = load(resolve("refund_damaged_item"))
    ok = Trajectory.model_validate(run_episode(template, 1, agents_for(template, "oracle")))
    bad = Trajectory.model_validate(run_episode(template, 1, agents_for(template, "random")))
    wf = load(resolve("employee_onboarding"))
    wf_ok = Trajectory.model_validate(run_episode(wf, 1, agents_for(wf, "oracle")))
    prev = [scored(ok, 1.0), scored(bad, 0.1), scored(bad, 0.1), scored(wf_ok, 1.0)]
    plan_ = curriculum(["employee_onboarding", "refund_damaged_item"], prev, total=10, floor=0.2)
    assert plan_["failure_rate"] == {"employee_onboarding": 0.0, "refund_damaged_item": pytest.approx(0.6667, 1e-3)}
    assert plan_["episodes"]["refund_damaged_item"] > plan_["episodes"]["employee_onboarding"] >= 1
    assert sum(plan_["episodes"].values()) == 10
    assert curriculum(["a", "b"], [], total=4, floor=0.1)["episodes"] == {"a": 2, "b": 2}


def test_curriculum_draws_toward_the_fault_kinds_that_fail() -> None:
    template = load(resolve("refund_damaged_item"))
    ok = Trajectory.model_validate(run_episode(template, 1, agents_for(template, "oracle")))

    def episode(scenario: str, *, timeout: bool) -> Trajectory:
        faults = [FaultRecord(index=0, kind="timeout", tool="issue_refund", turn=2, call=1, applied=False)]
        return ok.model_copy(update={"scenario_id": scenario, "faults": faults if timeout else []})

    # a and b passed every episode, c failed every one, and c's episodes met timeouts; a injects timeouts too
    prev = [scored(episode("a", timeout=False), 1.0), scored(episode("a", timeout=False), 1.0),
            scored(episode("b", timeout=False), 1.0), scored(episode("b", timeout=False), 1.0),
            scored(episode("c", timeout=True), 0.1), scored(episode("c", timeout=True), 0.1)]
    kinds = {"a": ["timeout"], "b": [], "c": ["timeout"]}
    plan_ = curriculum(["a", "b", "c"], prev, total=20, floor=0.1, fault_kinds=kinds)
    assert plan_["fault_failure_rate"] == {"timeout": 1.0}
    assert plan_["pressure"] == {"a": 0.5, "b": 0.0, "c": 1.0}
    assert plan_["episodes"]["c"] > plan_["episodes"]["a"] > plan_["episodes"]["b"] >= 1
    assert sum(plan_["episodes"].values()) == 20
    flat = curriculum(["a", "b", "c"], prev, total=20, floor=0.1)  # scenarios alone: a weighs what b does
    assert flat["pressure"] == {"a": 0.0, "b": 0.0, "c": 1.0}
    assert flat["episodes"]["a"] < plan_["episodes"]["a"]
    unseen = curriculum(["a", "b", "c", "d"], prev, total=20, floor=0.1, fault_kinds=kinds)
    assert unseen["pressure"]["d"] == 1.0  # never played: nothing says the policy can do it


def test_keep_with_human_labels(tmp_path: Path) -> None:
    template = load(resolve("refund_damaged_item"))
    ok = Trajectory.model_validate(run_episode(template, 1, agents_for(template, "oracle")))
    bad = Trajectory.model_validate(run_episode(template, 2, agents_for(template, "random")))
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({"episode_id": ok.episode_id, "action": "reject"}) + "\n"
                      + json.dumps({"episode_id": bad.episode_id, "action": "accept"}) + "\n")
    read = read_labels(labels)
    assert keep(scored(ok, 1.0), min_total=0.0, labels={}) and not keep(scored(bad, 0.1), min_total=0.0, labels={})
    assert not keep(scored(ok, 1.0), min_total=0.0, labels=read)  # the human's verdict overrides the scorers'
    assert keep(scored(bad, 0.1), min_total=0.0, labels=read)
    labels.write_text('{"episode_id": "x", "action": "maybe"}\n')
    with pytest.raises(TrajgymError, match=r"labels.jsonl:1: action is accept or reject"):
        read_labels(labels)


@pytest.mark.slow
def test_loop_killed_mid_generation_resumes_to_the_same_generations(tiny_model: Path, tmp_path: Path) -> None:
    straight = _loop(_config(tmp_path, tiny_model, "straight"))
    killed_cfg = _config(tmp_path, tiny_model, "killed")
    killed = _loop(killed_cfg)
    deadline = time.monotonic() + 600
    while not (tmp_path / "killed" / "gen-02" / "train").exists():
        assert killed.poll() is None, killed.stdout.read().decode() if killed.stdout else ""
        assert time.monotonic() < deadline
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)  # in the middle of generation 2's training
    killed.wait()
    assert not (tmp_path / "killed" / "gen-02" / "generation.json").exists()
    out, _ = straight.communicate(timeout=600)
    assert straight.returncode == 0, out.decode()
    # started again without --resume: refused, nothing touched
    again = _loop(killed_cfg)
    text, _ = again.communicate(timeout=120)
    assert again.returncode == 1 and "--resume" in text.decode()
    resumed = _loop(killed_cfg, "--resume")
    text, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, text.decode()
    assert "generation 1: done before" in text.decode()
    a, b = tmp_path / "straight", tmp_path / "killed"
    for g in (0, 1, 2):
        ra = json.loads((a / f"gen-{g:02d}" / "generation.json").read_text())
        rb = json.loads((b / f"gen-{g:02d}" / "generation.json").read_text())
        assert ra["eval"] == rb["eval"]
        if g:
            assert ra["curriculum"] == rb["curriculum"] and ra["kept"] == rb["kept"] and ra["data"] == rb["data"]
            assert json.loads((a / f"gen-{g:02d}" / "curriculum.json").read_text()) == json.loads(
                (b / f"gen-{g:02d}" / "curriculum.json").read_text())
    # nothing written twice: every file of episodes holds each unit once, the same units as the straight run
    for rel in ("anchor/oracle.jsonl", "gen-01/episodes.jsonl", "gen-02/episodes.jsonl", "gen-02/eval/episodes.jsonl",
                "gen-02/kept.jsonl", "gen-02/train-input.jsonl"):
        keys = _keys(b / rel)
        assert max(Counter(keys).values()) == 1, rel
        assert sorted(keys) == sorted(_keys(a / rel)), rel
    # accumulate: generation 2 trains on both generations' kept episodes plus the oracle anchor
    data = json.loads((b / "gen-02" / "generation.json").read_text())["data"]
    assert data["generations"] == [1, 2] and data["anchor"] >= 1
    assert data["own"] == json.loads((b / "gen-01" / "generation.json").read_text())["kept"] + json.loads(
        (b / "gen-02" / "generation.json").read_text())["kept"]
    # the server was told to serve each generation's model, once per generation
    loads = [json.loads(line)["model"] for line in (b / "fake-server-loads.jsonl").read_text().splitlines()]
    assert loads == [str(b / "gen-01" / "train" / "model"), str(b / "gen-02" / "train" / "model")]
    rows = (b / "loop.csv").read_text().splitlines()
    assert rows[0].startswith("step,") and len(rows) == 4


def test_replace_trains_on_the_generation_alone(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.syspath_prepend(str(HERE))
    config = _config(tmp_path, tiny_model, "replace", data="replace", generations="2")
    assert cli_main(["loop", str(config)]) == 0
    out = capsys.readouterr().out
    assert "held-out seeds" in out
    data = json.loads((tmp_path / "replace" / "gen-02" / "generation.json").read_text())["data"]
    assert data["generations"] == [2] and data["anchor"] == 0
    assert not (tmp_path / "replace" / "anchor").exists()
    # the report of the run folder: a Loop section with the generations' table and curves, then every episode
    assert cli_main(["report", str(tmp_path / "replace")]) == 0
    page = (tmp_path / "replace" / "report.html").read_text()
    assert 'id="loop"' in page and 'id="loop-table"' in page and 'id="plot-loop"' in page
    assert page.count("<tr") > 3 and "gen-01/scored.jsonl" in page
    assert cli_main(["report", str(tmp_path)]) == 1  # a folder that holds no loop: a clear error
