"""Trajectory JSONL: schema-valid lines, append-only, broken lines reported with their number."""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from pathlib import Path

import pytest
from helpers import EXAMPLE

from trajgym.errors import TrajectoryFileError
from trajgym.rollout.episode import run_episode
from trajgym.rollout.runner import agents_for
from trajgym.trajectory import Trajectory, TrajectoryWriter, iter_episodes, read, strip_wall
from trajgym.world.loader import load


def _traj(seed: int = 0, agent: str = "oracle") -> dict:
    template = load(EXAMPLE)
    return run_episode(template, seed, agents_for(template, agent))


def test_written_episodes_validate_against_the_schema(tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    with TrajectoryWriter(out) as w:
        w.write(_traj(0))
        w.write(_traj(1, "random"))
    with TrajectoryWriter(out) as w:  # append-only: a second writer adds, never truncates
        w.write(_traj(2))
    episodes = read(out)
    assert [e.seed for e in episodes] == [0, 1, 2]
    first = episodes[0]
    assert isinstance(first, Trajectory)
    assert first.provenance.trajgym_version and first.scenario_hash and first.agents[0].kind
    assert {a.role for a in first.agents} == {"customer", "support"}
    assert first.steps[0].role == "customer" and first.final_state["orders"]["O1"]["status"] == "refunded"


def test_a_torn_last_line_is_reported_and_can_be_skipped(tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    with TrajectoryWriter(out) as w:
        w.write(_traj(0))
    with out.open("a") as fh:
        fh.write('{"schema_version": 1, "episode_id": "x", "ste')  # a crash mid-write
    with pytest.raises(TrajectoryFileError, match=r"t\.jsonl:2:"):
        list(iter_episodes(out))
    assert len(list(iter_episodes(out, skip_torn=True))) == 1


def test_unknown_schema_version_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    out.write_text(json.dumps({**_traj(0), "schema_version": 99}) + "\n")
    with pytest.raises(TrajectoryFileError, match="schema_version 99 is not supported"):
        read(out)


def test_strip_wall_removes_only_wall_fields() -> None:
    data = {"a": 1, "wall_x": 2, "b": [{"wall_y": 3, "c": 4}]}
    assert strip_wall(data) == {"a": 1, "b": [{"c": 4}]}


def test_wall_clock_lives_only_in_wall_fields() -> None:
    a, b = _traj(3), _traj(3)
    assert strip_wall(a) == strip_wall(b)
    schema_fields = json.dumps(Trajectory.model_json_schema())
    assert "wall_time" in schema_fields and "wall_duration_s" in schema_fields


def test_each_line_is_in_the_file_when_write_returns_and_on_disk_when_close_returns(tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    trajs = [_traj(seed) for seed in range(3)]
    with TrajectoryWriter(out) as w:
        for n, traj in enumerate(trajs, 1):
            w.write(traj)
            # flushed at once: a reader (or a resumed job after a kill) sees every written line
            assert [e["seed"] for e in iter_episodes(out)] == [t["seed"] for t in trajs[:n]]
    assert [json.loads(line) for line in out.read_text().splitlines()] == json.loads(json.dumps(trajs))
    assert not [t for t in threading.enumerate() if t.name.startswith("trajgym-fsync")]  # joined


def test_lines_are_fsynced_every_interval_while_they_come_and_at_close(tmp_path: Path, monkeypatch) -> None:
    synced: list[tuple[float, int]] = []  # (when, file size then)
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append((time.monotonic(), os.fstat(fd).st_size))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    out, traj = tmp_path / "t.jsonl", _traj(0)
    with TrajectoryWriter(out, fsync_interval_s=0.05) as w:
        time.sleep(0.15)
        assert synced == []  # nothing written, nothing to sync
        started, lines = time.monotonic(), 0
        while time.monotonic() - started < 0.4:
            w.write(traj)
            lines += 1
            time.sleep(0.002)
        last_write, during = time.monotonic(), len(synced)
    assert lines > 50 and 2 <= during <= lines // 5  # every interval, not every line
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(synced[:-1])]  # the last: at close
    assert min(gaps) >= 0.045  # none sooner than the interval after the one before
    when, size = synced[-1]
    assert when >= last_write and size == out.stat().st_size  # close synced every line
    with pytest.raises(ValueError, match="fsync_interval_s"):
        TrajectoryWriter(tmp_path / "u.jsonl", fsync_interval_s=0)


def test_a_failing_fsync_is_reported() -> None:
    # /dev/null takes writes but cannot be fsynced (EINVAL): the writer's thread meets the error,
    # and the next write, or else close, reports it
    traj = _traj(0)
    with pytest.raises(TrajectoryFileError, match=r"/dev/null.*cannot fsync"), TrajectoryWriter("/dev/null") as w:
        for _ in range(1000):
            w.write(traj)
