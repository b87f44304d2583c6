"""A job can cap every scenario's turn limit (``--max-turns``, job file ``max_turns``): a capped
episode is the uncapped one cut at the cap, recorded with the limit it ran under; resume refuses
to mix limits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import BUILTIN, EXAMPLE

from trajgym.cli.main import main
from trajgym.errors import TrajgymError
from trajgym.rollout.agentspec import AgentSpec
from trajgym.rollout.jobfile import load_job
from trajgym.rollout.jobs import run_job
from trajgym.rollout.runner import plan
from trajgym.trajectory import read, strip_wall
from trajgym.world.loader import load


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _by_unit(path: Path) -> dict[tuple[str, int, int], dict[str, Any]]:
    return {(t["scenario_id"], t["seed"], t["trial"]): t for t in _lines(path)}


def test_a_capped_episode_is_the_uncapped_one_cut_short(tmp_path: Path) -> None:
    templates = [load(EXAMPLE), load(BUILTIN["large_refund_needs_approval"])]
    run_job(plan(templates, 2, seed=1), tmp_path / "full.jsonl", AgentSpec(), fsync=False)
    run_job(plan(templates, 2, seed=1, max_turns=5), tmp_path / "cut.jsonl", AgentSpec(), fsync=False)
    full, cut = _by_unit(tmp_path / "full.jsonl"), _by_unit(tmp_path / "cut.jsonl")
    assert full.keys() == cut.keys()
    for key, traj in cut.items():
        whole = full[key]
        assert whole["max_turns"] == load(BUILTIN[key[0]]).spec.limits.max_turns and not whole["truncated"]
        assert len(whole["steps"]) > 5
        assert traj["max_turns"] == 5 and traj["truncated"] and traj["termination"] == "max_turns"
        assert strip_wall(traj["steps"]) == strip_wall(whole["steps"][:5])
        assert not traj["outcome"]["success"] and traj["rewards"]["support"] == 0.0
    # a cap above the scenario's own limit changes nothing
    run_job(plan(templates, 2, seed=1, max_turns=10_000), tmp_path / "high.jsonl", AgentSpec(), fsync=False)
    assert {k: strip_wall(t) for k, t in _by_unit(tmp_path / "high.jsonl").items()} == {
        k: strip_wall(t) for k, t in full.items()}
    read(tmp_path / "cut.jsonl")  # the records validate against the trajectory schema


def test_resume_refuses_another_turn_limit(tmp_path: Path) -> None:
    out = tmp_path / "job.jsonl"
    units = plan([load(EXAMPLE)], 3, seed=2, max_turns=4)
    run_job(units[:2], out, AgentSpec(), fsync=False)
    with pytest.raises(TrajgymError, match=r"another turn limit: refund_damaged_item \(4, now 6\).*--max-turns"):
        run_job(plan([load(EXAMPLE)], 3, seed=2, max_turns=6), out, AgentSpec(), resume=True, fsync=False)
    result = run_job(units, out, AgentSpec(), resume=True, fsync=False)  # the same cap resumes
    assert (result.skipped, result.ran) == (2, 1)


def test_max_turns_from_the_command_line_and_job_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.jsonl"
    assert main(["rollout", "refund_damaged_item", "--max-turns", "3", "--out", str(out), "--no-progress"]) == 0
    assert [(t["max_turns"], len(t["steps"]), t["termination"]) for t in _lines(out)] == [(3, 3, "max_turns")]
    assert "limit:1" in capsys.readouterr().out
    assert main(["rollout", "refund_damaged_item", "--max-turns", "0", "--out", str(tmp_path / "x.jsonl")]) == 1
    assert "--max-turns must be at least 1" in capsys.readouterr().err

    job = tmp_path / "job.yaml"
    job.write_text("scenarios: [refund_damaged_item]\nmax_turns: 2\noutput: job.jsonl\n")
    assert load_job(job).max_turns == 2
    assert main(["rollout", "--job", str(job), "--no-progress"]) == 0
    assert [t["max_turns"] for t in _lines(tmp_path / "job.jsonl")] == [2]
    assert main(["rollout", "--job", str(job), "--max-turns", "3"]) == 1
    assert "--max-turns cannot be given with --job" in capsys.readouterr().err
    job.write_text("scenarios: [refund_damaged_item]\nmax_turns: 0\noutput: job.jsonl\n")
    with pytest.raises(TrajgymError, match=r"job.yaml:2:12: .*max_turns"):
        load_job(job)
