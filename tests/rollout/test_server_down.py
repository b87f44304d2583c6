"""A model server that goes down mid-job: no episode is scored as the agent's failure, and resume
plays the lost units again once the server is back."""

from __future__ import annotations

import json
from pathlib import Path

from fake_openai import FakeOpenAI
from helpers import EXAMPLE

from trajgym.rollout.agentspec import AgentSpec
from trajgym.rollout.jobs import run_job
from trajgym.rollout.runner import plan
from trajgym.trajectory import latest_per_unit
from trajgym.world.loader import load


def test_server_down_mid_job_then_resume(tmp_path: Path) -> None:
    out = tmp_path / "job.jsonl"
    units = plan([load(EXAMPLE)], episodes=6, seed=5)
    down = FakeOpenAI(fail_after=20).start()  # about three episodes' worth of answers, then 503s
    try:
        agents = AgentSpec.support("openai", base_url=down.base_url, model="fake", retries=2, backoff_s=0.01)
        first = run_job(units, out, agents, concurrency=2, fsync=False)
    finally:
        down.stop()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    infra = [t for t in lines if t["termination"] == "infra_error"]
    assert len(lines) == 6 and infra, "the server should have died mid-job"
    for traj in infra:
        assert not traj["outcome"]["success"] and traj["rewards"]["support"] == 0.0
        assert "503" in traj["infra_error"] or "overloaded" in traj["infra_error"]
    # every episode that did end normally succeeded: none is the agent's failure
    assert all(t["outcome"]["success"] for t in lines if t["termination"] != "infra_error")
    assert first.summary  # the job reported what it ran

    back = FakeOpenAI().start()
    try:
        agents = AgentSpec.support("openai", base_url=back.base_url, model="fake", retries=2, backoff_s=0.01)
        run_job(units, out, agents, concurrency=2, resume=True, fsync=False)
    finally:
        back.stop()
    latest = latest_per_unit(out)
    assert len(latest) == 6 and all(t["outcome"]["success"] for t in latest.values())
    assert len(out.read_text().splitlines()) == 6 + len(infra)  # the infra-error lines stay
