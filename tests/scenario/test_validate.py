"""`trajgym validate` on broken files: every problem located as file:line:col, never a traceback.

Each file under tests/fixtures/broken/ is the valid example with one defect; tests/fixtures/broken_expected.yaml says
where `validate` must locate it and a fragment of what it must say.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from trajgym.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
BROKEN = ROOT / "tests" / "fixtures" / "broken"
EXPECTED: dict[str, dict[str, Any]] = yaml.safe_load((BROKEN.parent / "broken_expected.yaml").read_text())
FIXTURES = sorted(p.name for p in BROKEN.glob("*.yaml"))


def test_every_fixture_has_an_expectation() -> None:
    assert len(FIXTURES) >= 20
    assert sorted(EXPECTED) == FIXTURES


@pytest.mark.parametrize("name", FIXTURES)
def test_validate_locates_the_defect(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(BROKEN / name)
    expected = EXPECTED[name]
    assert main(["validate", path]) == 1
    captured = capsys.readouterr()
    out = captured.out
    assert "Traceback" not in out + captured.err
    assert "internal error" not in out
    where = f"{path}:{expected['line']}:" + (f"{expected['col']}: " if "col" in expected else "")
    located = [line for line in out.splitlines() if line.startswith(where)]
    assert located, f"no problem at {where!r} in:\n{out}"
    assert any(expected["contains"] in line for line in located), out
    problems = [line for line in out.splitlines() if line.startswith(f"{path}:")]
    assert len(problems) == 1, f"one defect, one problem; got:\n{out}"


@pytest.mark.parametrize("name", ["yaml_tab_indentation.yaml", "binary_garbage.yaml", "invalid_date.yaml",
                                  "unknown_top_level_key_tols.yaml", "world_missing_customer.yaml"])
def test_validate_in_a_subprocess_has_no_traceback(name: str) -> None:
    path = BROKEN / name
    proc = subprocess.run([sys.executable, "-m", "trajgym", "validate", str(path)],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    expected = EXPECTED[name]
    assert f"{path}:{expected['line']}:" in proc.stdout
    assert expected["contains"] in proc.stdout


def test_the_shipped_scenarios_are_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(ROOT / "scenarios")]) == 0
    assert "ok:" in capsys.readouterr().out


def test_a_missing_path_is_one_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    assert main(["validate", str(missing)]) == 1
    captured = capsys.readouterr()
    assert f"'{missing}' does not exist" in captured.out
    assert "Traceback" not in captured.out + captured.err


def test_a_missing_path_does_not_hide_the_others(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = BROKEN / "empty.yaml"
    assert main(["validate", str(tmp_path / "nope.yaml"), str(broken)]) == 1
    out = capsys.readouterr().out
    assert "nope.yaml' does not exist" in out
    assert f"{broken}:1:1: the file is empty" in out


def test_a_folder_without_scenarios_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path)]) == 1
    assert "no scenario files" in capsys.readouterr().out


def test_a_folder_reports_every_broken_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    names = ["duplicate_key.yaml", "unknown_domain.yaml", "yaml_unclosed_bracket.yaml", "not_utf8.yaml"]
    (tmp_path / "nested").mkdir()
    for i, name in enumerate(names):
        shutil.copy(BROKEN / name, (tmp_path / "nested" if i % 2 else tmp_path) / name)
    shutil.copy(ROOT / "scenarios" / "customer_support" / "refund_damaged_item.yaml", tmp_path / "good.yaml")
    assert main(["validate", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    for i, name in enumerate(names):
        path = (tmp_path / "nested" if i % 2 else tmp_path) / name
        assert f"{path}:{EXPECTED[name]['line']}:{EXPECTED[name]['col']}: " in out
    assert "good.yaml" not in out
    assert "4 problem(s) in 4 of 5 file(s)" in out


def test_two_files_with_one_id_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    example = ROOT / "scenarios" / "customer_support" / "refund_damaged_item.yaml"
    shutil.copy(example, tmp_path / "a.yaml")
    shutil.copy(example, tmp_path / "b.yaml")
    assert main(["validate", str(tmp_path)]) == 1
    assert f"{tmp_path / 'b.yaml'}:3:5: scenario id 'refund_damaged_item' is also used by" in capsys.readouterr().out


def test_a_terminal_that_cannot_show_the_text_gets_escapes(tmp_path: Path) -> None:
    example = (ROOT / "scenarios" / "customer_support" / "refund_damaged_item.yaml").read_text()
    path = tmp_path / "umlaut.yaml"
    path.write_text(example.replace("\ntools:\n", "\ntööls:\n"), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "trajgym", "validate", str(path)], capture_output=True,
                          text=True, cwd=ROOT, check=False, env={**os.environ, "PYTHONIOENCODING": "ascii"})
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "unknown key 't\\xf6\\xf6ls' in the top level; did you mean 'tools'?" in proc.stdout
