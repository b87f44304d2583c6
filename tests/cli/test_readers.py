"""Every command that reads a data product (show, score: trajectories; filter, report: scored records)
meets a damaged file with one located message, ``FILE:LINE: what is wrong; what to do``, a non-zero
exit and no traceback, and writes nothing."""

from __future__ import annotations

import gzip
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from trajgym.cli.main import main
from trajgym.trajectory import iter_scored

EPISODES = 3
V1 = Path(__file__).resolve().parent.parent / "fixtures" / "v1"


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A valid trajectory file (the oracle on a built-in scenario) and its scored file, as bytes."""
    root = tmp_path_factory.mktemp("readers")
    traj, scored = root / "t.jsonl", root / "s.jsonl"
    assert main(["rollout", "refund_damaged_item", "--episodes", str(EPISODES), "--out", str(traj),
                 "--no-progress"]) == 0
    assert main(["score", str(traj), "--out", str(scored), "--no-progress", "--workers", "1"]) == 0
    return {"trajectory": traj.read_bytes(), "scored": scored.read_bytes()}


def _binary(good: bytes) -> tuple[bytes, int]:
    data = bytearray(os.urandom(200))
    data[0] = data[7] = data[150] = 0xFF  # never UTF-8, and line 1 is never blank
    return bytes(data), 1


def _gzip(good: bytes) -> tuple[bytes, int]:
    return gzip.compress(good), 1


def _array(good: bytes) -> tuple[bytes, int]:
    return good.splitlines(keepends=True)[0] + b"[1, 2]\n", 2


def _string(good: bytes) -> tuple[bytes, int]:
    return b'"text"\n' + good, 1


def _torn_last(good: bytes) -> tuple[bytes, int]:
    lines = good.splitlines(keepends=True)
    return b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2], len(lines)


def _torn_middle(good: bytes) -> tuple[bytes, int]:
    lines = good.splitlines(keepends=True)
    return lines[0] + lines[1][: len(lines[1]) // 2] + b"\n" + b"".join(lines[2:]), 2


DAMAGES: dict[str, tuple[Callable[[bytes], tuple[bytes, int]], str]] = {
    "binary": (_binary, "not UTF-8 text"),
    "gzip": (_gzip, "is this a binary file?"),
    "array": (_array, "a JSON value that is not an object (an array)"),
    "string": (_string, "a JSON value that is not an object (a string)"),
    "torn_last": (_torn_last, "the last line is cut short"),
    "torn_middle": (_torn_middle, "not JSON (Unterminated string starting at column"),
}
"""damage -> (what it makes of a valid file: the bytes and the line to blame, what the message says)."""

READS = {"show": "trajectory", "score": "trajectory", "filter": "scored", "report": "scored"}


def _argv(command: str, path: str) -> list[str]:
    return {"show": ["show", path],
            "score": ["score", path, "--out", "out.jsonl", "--no-progress", "--workers", "1"],
            "filter": ["filter", path, "--config", "filters.yaml", "--out", "out.jsonl"],
            "report": ["report", path, "--out", "out.html"]}[command]


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run the command line; return its exit code and its stderr on one line (rich wraps long lines)."""
    capsys.readouterr()
    rc = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, " ".join(err.split())


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "filters.yaml").write_text("filters:\n  - drop_excluded: true\n", encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("damage", sorted(DAMAGES))
@pytest.mark.parametrize("command", sorted(READS))
def test_a_damaged_file_is_one_located_error(command: str, damage: str, good: dict[str, bytes], workdir: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    make, says = DAMAGES[damage]
    data, line = make(good[READS[command]])
    (workdir / "in.jsonl").write_bytes(data)
    rc, err = _run(_argv(command, "in.jsonl"), capsys)
    assert rc == 1
    assert err.startswith(f"error: in.jsonl:{line}: "), err
    assert says in err
    if damage == "torn_last":  # what to do depends on who writes the file
        fix = "--skip-torn" if READS[command] == "trajectory" else "write it again"
        assert fix in err
    assert sorted(p.name for p in workdir.iterdir()) == ["filters.yaml", "in.jsonl"], "it wrote something"


@pytest.mark.parametrize("command", sorted(READS))
def test_the_other_data_product_is_named(command: str, good: dict[str, bytes], workdir: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    wrong = "scored" if READS[command] == "trajectory" else "trajectory"
    (workdir / "in.jsonl").write_bytes(good[wrong])
    rc, err = _run(_argv(command, "in.jsonl"), capsys)
    assert rc == 1 and err.startswith("error: in.jsonl:1: ")
    assert ("a scored trajectory (trajgym score output)" if wrong == "scored" else "not scored yet") in err


@pytest.mark.parametrize("line", [
    pytest.param(b"{}", id="empty-object"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, id="nested-too-deep"),
])
@pytest.mark.parametrize("command", sorted(READS))
def test_a_json_object_that_is_no_record_is_located(command: str, line: bytes, good: dict[str, bytes],
                                                    workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = good[READS[command]].splitlines(keepends=True)[0]
    (workdir / "in.jsonl").write_bytes(first + line + b"\n")
    rc, err = _run(_argv(command, "in.jsonl"), capsys)
    assert rc == 1 and err.startswith("error: in.jsonl:2: "), err


@pytest.mark.parametrize("field,value", [("seed", [1]), ("scenario_path", None), ("policy", {"a": 1})])
def test_a_unit_key_field_of_the_wrong_type_is_located(field: str, value: object, good: dict[str, bytes],
                                                       workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = good["trajectory"].splitlines(keepends=True)
    bad = json.loads(lines[1])
    bad[field] = value
    (workdir / "in.jsonl").write_bytes(lines[0] + json.dumps(bad).encode() + b"\n")
    resume = ["rollout", "refund_damaged_item", "--episodes", str(EPISODES), "--out", "in.jsonl", "--resume",
              "--no-progress"]
    for argv in (_argv("show", "in.jsonl"), _argv("score", "in.jsonl"), resume):
        rc, err = _run(argv, capsys)
        assert rc == 1 and err.startswith(f"error: in.jsonl:2: not a valid trajectory ({field}: "), err


def test_score_skip_torn_leaves_out_only_a_torn_last_line(good: dict[str, bytes], workdir: Path,
                                                          capsys: pytest.CaptureFixture[str],
                                                          caplog: pytest.LogCaptureFixture) -> None:
    torn, line = _torn_last(good["trajectory"])
    (workdir / "in.jsonl").write_bytes(torn)
    with caplog.at_level(logging.WARNING):
        rc, err = _run(["score", "in.jsonl", "--out", "out.jsonl", "--no-progress", "--workers", "1",
                        "--skip-torn"], capsys)
    assert rc == 0, err
    assert len(list(iter_scored(workdir / "out.jsonl"))) == EPISODES - 1
    assert f"in.jsonl:{line}: skipped the torn last line" in caplog.text
    middle, _ = _torn_middle(good["trajectory"])  # a broken line that is not the last one is never skipped
    (workdir / "mid.jsonl").write_bytes(middle)
    rc, err = _run(["score", "mid.jsonl", "--out", "mid-out.jsonl", "--no-progress", "--workers", "1",
                    "--skip-torn"], capsys)
    assert rc == 1 and err.startswith("error: mid.jsonl:2: ")


def test_show_skip_torn_shows_the_rest(good: dict[str, bytes], workdir: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    torn, _ = _torn_last(good["trajectory"])
    (workdir / "in.jsonl").write_bytes(torn)
    first = json.loads(good["trajectory"].splitlines()[0])["episode_id"]
    rc, _ = _run(["show", "in.jsonl", "--skip-torn"], capsys)
    assert rc == 0
    capsys.readouterr()
    assert main(["show", "in.jsonl", "--list", "--skip-torn"]) == 0
    listed = capsys.readouterr().out
    assert first in listed
    assert main(["show", "in.jsonl", "--list"]) == 1


def test_show_names_an_empty_file(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "in.jsonl").write_bytes(b"\n\n")
    rc, err = _run(["show", "in.jsonl"], capsys)
    assert rc == 1 and "no episodes in in.jsonl" in err


V1_TRAJECTORIES = sorted(p for p in V1.glob("*.jsonl") if b'"scored_version"' not in p.read_bytes()[:200]) \
    if V1.is_dir() else []


@pytest.mark.skipif(not V1_TRAJECTORIES, reason="no schema 1 fixtures (tests/fixtures/v1) yet")
@pytest.mark.parametrize("path", V1_TRAJECTORIES, ids=lambda p: p.name)
def test_show_reads_a_schema_1_file(path: Path, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    assert json.loads(lines[0])["schema_version"] == 1
    rc, err = _run(["show", str(path)], capsys)
    assert rc == 0, err
    capsys.readouterr()
    assert main(["show", str(path), "--list"]) == 0
    assert capsys.readouterr().out.count(json.loads(lines[0])["scenario_id"][:10]) >= 1
    torn, line = _torn_last(path.read_bytes())
    (workdir / "in.jsonl").write_bytes(torn)
    rc, err = _run(["show", "in.jsonl"], capsys)
    assert rc == 1 and err.startswith(f"error: in.jsonl:{line}: the last line is cut short")
