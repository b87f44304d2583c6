"""The labels store: verdicts, edits as versions, undo, conflicts, and two writers at once."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from trajgym.trajectory.labels import (
    EditConflictError,
    LabelError,
    LabelStore,
    cohen_kappa,
    open_labels,
)


def test_verdicts_undo_and_status(tmp_path: Path) -> None:
    store = LabelStore(tmp_path / "labels.sqlite")
    store.add("e1", "a.jsonl:1", "accept", reviewer="ana")
    store.add("e2", "a.jsonl:2", "reject", reviewer="ana", reason="wrong action: refunded twice")
    store.add("e3", "a.jsonl:3", "flag_simulator", reviewer="bo")
    store.add("e1", "a.jsonl:1", "reject", reviewer="bo", reason="policy violation")
    assert {k: v.action for k, v in store.status().items()} == {"e1": "reject", "e2": "reject", "e3": "flag_simulator"}
    assert store.verdicts() == {"e1": "reject", "e2": "reject"}
    undone = store.undo("e1", reviewer="bo")  # bo's own latest action on e1
    assert undone is not None and undone.undoes is not None
    assert store.status()["e1"].action == "accept" and store.status()["e1"].reviewer == "ana"
    assert store.undo("e1", reviewer="bo") is None  # nothing of bo's left on e1
    with pytest.raises(LabelError, match="needs a reason"):
        store.add("e4", "a.jsonl:4", "reject", reviewer="ana", reason="  ")
    with pytest.raises(LabelError, match="unknown verdict"):
        store.add("e4", "a.jsonl:4", "maybe", reviewer="ana")  # type: ignore[arg-type]
    # every action is a row, none rewritten
    assert [r.action for r in store.labels()] == ["accept", "reject", "flag_simulator", "reject", "undo"]
    # the file outlives the store
    store.close()
    again = open_labels(tmp_path / "labels.sqlite")
    assert again.verdicts() == {"e1": "accept", "e2": "reject"}


def test_edits_are_versions_and_conflicts_are_refused(tmp_path: Path) -> None:
    store = LabelStore(tmp_path / "l.sqlite")
    msg = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_order", "arguments": '{"order_id": "O2"}'}}]}
    first = store.edit("e1", "a.jsonl:1", 3, msg, reviewer="ana", base_version=0)
    assert first.version == 1 and store.edits()["e1"][3].payload == msg
    with pytest.raises(EditConflictError, match=r"edited by ana .*\(version 1\)"):
        store.edit("e1", "a.jsonl:1", 3, {"role": "assistant", "content": "hi"}, reviewer="bo", base_version=0)
    second = store.edit("e1", "a.jsonl:1", 3, {"role": "assistant", "content": "hi"}, reviewer="bo", base_version=1)
    assert second.version == 2
    store.undo("e1", reviewer="bo")
    assert store.edits()["e1"][3].version == 1  # back to ana's version


def _writer(path: str, who: str, n: int) -> None:
    store = LabelStore(path)
    for i in range(n):
        store.add(f"{who}-{i}", f"x:{i}", "accept", reviewer=who)


def test_two_reviewers_saving_at_once_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "l.sqlite")
    LabelStore(path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, who, 60)) for who in ("ana", "bo")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert len(LabelStore(path).verdicts()) == 120


def test_a_file_that_is_no_sqlite_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "labels.sqlite"
    bad.write_text("not a database, " * 100)
    with pytest.raises(LabelError, match="cannot open the labels"):
        LabelStore(bad)
    with pytest.raises(LabelError, match="no labels at"):
        open_labels(tmp_path / "missing.sqlite")
    assert sqlite3.sqlite_version


def test_cohen_kappa() -> None:
    assert cohen_kappa([]) == (None, None, 0)
    assert cohen_kappa([(True, True), (False, False)]) == (1.0, 1.0, 2)
    assert cohen_kappa([(True, True), (True, True)]) == (1.0, None, 2)  # chance agreement 1: undefined
    assert cohen_kappa([(True, False), (False, True)])[1] == -1.0
