"""The trajgym command line: rollout, show, list, schema; errors without tracebacks."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from trajgym.cli.main import main
from trajgym.trajectory import read


def test_rollout_appends_one_line_per_episode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run.jsonl"
    assert main(["rollout", "refund_damaged_item", "--episodes", "3", "--trials", "2", "--out", str(out),
                 "--no-progress"]) == 0
    episodes = read(out)
    assert len(episodes) == 6 and len({e.episode_id for e in episodes}) == 6
    assert sorted({e.trial for e in episodes}) == [0, 1]
    assert all(e.outcome.success for e in episodes)
    assert episodes[0].provenance.command and "rollout" in episodes[0].provenance.command
    text = capsys.readouterr().out
    assert "Rollout summary" in text and "refund_damaged_item" in text
    # a second job never appends to the first one's file by accident
    assert main(["rollout", "refund_damaged_item", "--agent", "random", "--out", str(out), "--no-progress"]) == 1
    assert len(read(out)) == 6


def test_show_renders_an_episode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run.jsonl"
    main(["rollout", "refund_damaged_item", "--episodes", "2", "--out", str(out), "--no-progress"])
    capsys.readouterr()
    second = read(out)[1].episode_id
    assert main(["show", str(out), "--episode", second]) == 0
    text = capsys.readouterr().out
    assert second in text and "refund_order" in text and "outcome" in text
    assert main(["show", str(out), "--list"]) == 0
    assert second in capsys.readouterr().out
    assert main(["show", str(out), "--episode", "nope"]) == 1
    assert "no episode 'nope'" in capsys.readouterr().err


def test_list_names_envs_and_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    assert "trajgym/CustomerSupport-v0" in text and "refund_damaged_item" in text


def test_schema_trajectory_is_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "trajectory"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "Trajectory" and "steps" in schema["properties"]
    assert main(["schema", "scenario"]) == 0
    assert "reference" in json.loads(capsys.readouterr().out)["properties"]


@pytest.mark.parametrize("argv", [
    ["rollout", "no_such_scenario", "--out", "x.jsonl"],
    ["rollout", "refund_damaged_item", "--agent", "gpt", "--out", "x.jsonl"],
    ["show", "missing.jsonl"],
    ["rollout", "refund_damaged_item", "--agent", "openai", "--request-timeout", "0", "--out", "x.jsonl"],
])
def test_bad_input_is_one_clear_line_without_traceback(argv: list[str], tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "trajgym", *argv], capture_output=True, text=True,
                          cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.startswith("error:")


def test_show_reports_a_broken_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "broken.jsonl"
    out.write_text("{not json\n")
    assert main(["show", str(out)]) == 1
    assert "broken.jsonl:1:" in capsys.readouterr().err


def test_rollout_with_a_model_agent_from_the_command_line(tmp_path: Path) -> None:
    from fake_openai import FakeOpenAI

    server = FakeOpenAI().start()
    try:
        out = tmp_path / "llm.jsonl"
        code = main(["rollout", "refund_damaged_item", "--agent", "openai", "--base-url", server.base_url,
                     "--model", "fake", "--tool-choice", "auto", "--temperature", "0", "--episodes", "2",
                     "--request-timeout", "30", "--concurrency", "2", "--out", str(out), "--no-progress"])
        assert code == 0
        episodes = read(out)
        assert len(episodes) == 2 and all(e.outcome.success for e in episodes)
        support = next(a for a in episodes[0].agents if a.role == "support")
        assert support.kind == "openai" and support.model == "fake" and support.transport["timeout_s"] == 30
        steps = [s for s in episodes[0].steps if s.role == "support"]
        assert all(s.generation and s.generation["token_ids"] and s.generation["logprobs"] for s in steps)
        assert steps[0].generation is not None and steps[0].generation["sampling"]["temperature"] == 0
    finally:
        server.stop()


def test_summary_shows_the_tokens_the_models_generated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fake_openai import FakeOpenAI

    from trajgym.rollout.runner import completion_tokens

    server = FakeOpenAI().start()
    try:
        out = tmp_path / "llm.jsonl"
        assert main(["rollout", "refund_damaged_item", "--agent", "openai", "--base-url", server.base_url,
                     "--model", "fake", "--episodes", "2", "--out", str(out), "--no-progress"]) == 0
    finally:
        server.stop()
    text = capsys.readouterr().out
    tokens = sum(completion_tokens(json.loads(line)) for line in out.read_text().splitlines())
    assert tokens > 0
    header = next(line for line in text.splitlines() if "scenario" in line and "eps" in line)
    assert "tokens" in header.split("┃")[-3]  # the column before the endings
    total = next(line for line in text.splitlines() if line.startswith("│ all"))
    assert total.split("│")[-3].strip() == str(tokens)
    assert "tokens/s" in text.split("Rollout summary")[1].splitlines()[0]  # the title gives the rate
    assert re.search(r"2 episodes, \d+ steps in [\d.]+ s \([\d.]+ episodes/s, [\d.]+ tokens/s\)", " ".join(text.split()))
    # scripted agents generate no tokens: no column, no rate
    assert main(["rollout", "refund_damaged_item", "--out", str(tmp_path / "oracle.jsonl"), "--no-progress"]) == 0
    text = capsys.readouterr().out
    header = next(line for line in text.splitlines() if "scenario" in line and "eps" in line)
    assert "tokens" not in header and "tokens/s" not in text
