"""A file `trajgym rollout` made is scored from any working directory: built-in scenarios are recorded
as ``builtin:<domain>/<file>``, any other scenario file by its absolute path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from trajgym.cli.main import main
from trajgym.scenario.catalog import builtin_scenarios
from trajgym.trajectory import iter_scored, read

BUILTIN_ID = "refund_damaged_item"


def test_score_works_from_another_folder_on_builtin_and_relative_scenarios(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    proj, elsewhere = tmp_path / "proj", tmp_path / "elsewhere"
    proj.mkdir()
    elsewhere.mkdir()
    text = builtin_scenarios()[BUILTIN_ID].read_text(encoding="utf-8")
    assert f"\nid: {BUILTIN_ID}\n" in text
    (proj / "my_refund.yaml").write_text(text.replace(f"\nid: {BUILTIN_ID}\n", "\nid: my_refund\n"), encoding="utf-8")
    shutil.copy(builtin_scenarios()[BUILTIN_ID], proj / "same_refund.yaml")  # a verbatim copy: not the built-in
    monkeypatch.chdir(proj)
    assert main(["rollout", BUILTIN_ID, "my_refund.yaml", "--episodes", "2", "--out", "run.jsonl",
                 "--no-progress"]) == 0
    assert main(["rollout", "same_refund.yaml", "--episodes", "2", "--out", "copy.jsonl", "--no-progress"]) == 0
    runs = [proj / "run.jsonl", proj / "copy.jsonl"]
    recorded = {(t.scenario_id, t.scenario_path) for run in runs for t in read(run)}
    assert recorded == {(BUILTIN_ID, f"builtin:customer_support/{BUILTIN_ID}.yaml"),
                        ("my_refund", str((proj / "my_refund.yaml").resolve())),
                        (BUILTIN_ID, str((proj / "same_refund.yaml").resolve()))}

    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["score", *map(str, runs), "--out", "scored.jsonl", "--no-progress", "--workers", "1"]) == 0, \
        capsys.readouterr().err
    records = list(iter_scored(elsewhere / "scored.jsonl"))
    assert len(records) == 6
    assert all(r.excluded is None and r.total is not None for r in records)
    assert {(r.trajectory.scenario_id, r.trajectory.scenario_path) for r in records} == recorded


def test_two_scenario_files_with_one_id_are_refused_not_shadowed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(builtin_scenarios()[BUILTIN_ID], tmp_path / "my_refund.yaml")
    monkeypatch.chdir(tmp_path)
    assert main(["rollout", BUILTIN_ID, "my_refund.yaml", "--out", "run.jsonl", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"two scenario files have the id '{BUILTIN_ID}'" in err and "my_refund.yaml" in err
    assert not (tmp_path / "run.jsonl").exists() or not (tmp_path / "run.jsonl").read_bytes()
    # one file given twice (by id and by path) is one scenario, played once
    builtin = str(builtin_scenarios()[BUILTIN_ID])
    assert main(["rollout", BUILTIN_ID, builtin, "--episodes", "2", "--out", "once.jsonl", "--no-progress"]) == 0
    assert len(read(tmp_path / "once.jsonl")) == 2
