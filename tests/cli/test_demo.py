"""The demo's job (``make demo``), played against the fake OpenAI server instead of vLLM: SmolLM2's
settings, every episode cut at the demo's turn limit, and the summary with tokens/s and personas."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI

from trajgym.cli import demo
from trajgym.cli.main import main as cli_main


def test_the_demo_job(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo.jsonl"
    args = demo.parser().parse_args([str(out), "refund_damaged_item", "cancel_shipped_order", "--max-turns", "6"])
    assert (args.episodes, args.concurrency, args.request_timeout) == (1, 64, 600.0)
    server = FakeOpenAI().start()
    try:
        assert cli_main([*demo.rollout_argv(args, server.base_url), "--no-progress"]) == 0
    finally:
        server.stop()
    trajs = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(t["scenario_id"] for t in trajs) == ["cancel_shipped_order", "refund_damaged_item"]
    for traj in trajs:
        assert traj["max_turns"] == 6 and len(traj["steps"]) <= 6 and traj["infra_error"] is None
        agents = {a["role"]: a for a in traj["agents"]}
        assert agents["support"]["kind"] == "openai" and agents["customer"]["kind"] == "llm_customer"
        config = agents["support"]["config"]
        assert config["tool_choice"] == "required" and config["strict"] and agents["support"]["transport"]["timeout_s"] == 600
        assert config["sampling"] == {"temperature": 0.7, "max_tokens": 128}
    # every request the server saw forced a tool call and carried its own seed
    assert server.requests and all(r["tool_choice"] == "required" or "end_conversation" in json.dumps(r["tools"])
                                   for r in server.requests)
    assert len({r["seed"] for r in server.requests}) == len(server.requests)
    text = capsys.readouterr().out
    assert re.search(r"Rollout summary \([^)]*\): [\d.]+ episodes/s, [\d.]+ tokens/s", " ".join(text.split()))
    moods = sorted(next(a for a in t["agents"] if a["role"] == "customer")["persona"]["mood"]
                   for t in trajs)
    mood_row = next(line for line in text.split("Customer personas")[1].splitlines() if "│ mood" in line)
    assert sorted(mood_row.split("│")[2].split()[::2]) == moods
