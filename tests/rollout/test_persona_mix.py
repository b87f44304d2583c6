"""A job reports the mix of customer personas it ran: the scenario's own (scripted customer) or drawn
from a pool under the seed (LLM customer), counted per mood, language and expertise."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fake_openai import FakeOpenAI
from helpers import BUILTIN, EXAMPLE

from trajgym.cli.main import main
from trajgym.rollout.agentspec import AgentChoice, AgentSpec
from trajgym.rollout.jobs import run_job
from trajgym.rollout.runner import PERSONA_TRAITS, plan
from trajgym.world.loader import load


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _mix(personas: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    return {trait: dict(Counter(p[trait] for p in personas)) for trait in PERSONA_TRAITS}


def test_scripted_customers_report_the_scenarios_personas(tmp_path: Path) -> None:
    templates = [load(EXAMPLE), load(BUILTIN["refund_outside_window"]), load(BUILTIN["missing_account_details"])]
    units = plan(templates, episodes=2, seed=3)
    result = run_job(units, tmp_path / "job.jsonl", AgentSpec(), concurrency=4, fsync=False)
    # what each scenario declares, as instantiated for each unit's seed
    declared = [u.template.instantiate(u.seed).spec.customer.persona.model_dump() for u in units]  # type: ignore[union-attr]
    assert result.persona_mix == _mix(declared)
    assert result.persona_mix["mood"] == {"calm": 2, "angry": 2, "confused": 2}
    assert result.persona_mix["expertise"] == {"average": 4, "novice": 2}
    # the persona is recorded with the scripted customer in every trajectory
    for traj in _lines(tmp_path / "job.jsonl"):
        customer = next(a for a in traj["agents"] if a["role"] == "customer")
        assert customer["kind"] == "scripted_customer"
        assert customer["persona"]["mood"] in {"calm", "angry", "confused"}
    # per scenario too
    assert result.summary["refund_outside_window"].personas["mood"] == {"angry": 2}


def test_llm_customers_report_the_drawn_mix(tmp_path: Path) -> None:
    server = FakeOpenAI().start()
    try:
        options = {"base_url": server.base_url, "model": "fake-model", "retries": 2, "backoff_s": 0.01,
                   "moods": ["angry", "confused", "calm"], "languages": ["en", "de"],
                   "expertise": ["novice", "expert"]}
        agents = AgentSpec({"customer": AgentChoice("llm_customer", options)})
        units = plan([load(EXAMPLE)], episodes=12, seed=0)
        result = run_job(units, tmp_path / "job.jsonl", agents, concurrency=6, fsync=False)
    finally:
        server.stop()
    trajs = _lines(tmp_path / "job.jsonl")
    played = [next(a for a in t["agents"] if a["role"] == "customer")["persona"] for t in trajs]
    assert result.persona_mix == _mix(played)
    mix = result.persona_mix
    assert sum(mix["mood"].values()) == 12 and len(mix["mood"]) >= 2 and len(mix["language"]) == 2
    assert set(mix["expertise"]) <= {"novice", "expert"}
    # the persona is drawn per episode, recorded beside the agent's identity, never in it: one policy
    assert len({t["policy"] for t in trajs}) == 1
    assert all("persona" not in next(a for a in t["agents"] if a["role"] == "customer")["config"] for t in trajs)


def test_rollout_prints_the_persona_mix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run.jsonl"
    code = main(["rollout", "refund_damaged_item", "refund_outside_window", "--episodes", "2",
                 "--out", str(out), "--no-progress"])
    assert code == 0
    text = capsys.readouterr().out
    assert "Customer personas" in text
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in text.splitlines()
            if line.count("│") == 3 and line.split("│")[1].strip() in PERSONA_TRAITS}
    assert rows == {"mood": "angry 2  calm 2", "language": "en 4", "expertise": "average 4"}
