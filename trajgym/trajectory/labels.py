"""Human review labels: what people decided about episodes, in SQLite next to the data.

Every review action is a row, never rewritten: a verdict on an episode (``accept``, ``reject`` with
a reason, ``flag_simulator``: the simulator was wrong, ``skip``), an ``edit`` of one of the learner's
turns (a new version of that turn, stored here; the trajectory file is never touched, and the turns
after an edited one are stale, since the world would have answered differently), or an ``undo`` of
the reviewer's latest action on an episode. An episode's status is its latest verdict not undone.

Rows are keyed by the episode id (unique per work unit, stable across files) and carry the
``source`` line they were made on, the reviewer, the time and the turn's version. Writes take
SQLite's write lock (``BEGIN IMMEDIATE``), so two tabs or two reviewers saving at once both land;
an edit names the version it was made from, and one made from a version that is no longer the
latest is refused with :class:`EditConflictError` (who saved in between, and when).

    >>> store = LabelStore(":memory:")
    >>> _ = store.add("ep-1", "a.jsonl:1", "accept", reviewer="ana")
    >>> store.status()["ep-1"].action
    'accept'
    >>> _ = store.undo("ep-1", reviewer="ana")
    >>> store.status()
    {}
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from trajgym.errors import TrajgymError

Action = Literal["accept", "reject", "flag_simulator", "skip", "edit", "undo"]
VERDICTS: tuple[Action, ...] = ("accept", "reject", "flag_simulator", "skip")
REJECT_REASONS = ("wrong action", "policy violation", "made something up", "rude or unclear", "gave up too early",
                  "other")
"""The short list a reviewer picks a rejection reason from (free text may follow)."""
DEFAULT_NAME = "labels.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    episode_id TEXT NOT NULL,
    source TEXT NOT NULL,
    turn INTEGER,
    reviewer TEXT NOT NULL,
    time TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('accept', 'reject', 'flag_simulator', 'skip', 'edit', 'undo')),
    reason TEXT,
    version INTEGER NOT NULL DEFAULT 0,
    payload TEXT,
    undoes INTEGER REFERENCES labels(id)
);
CREATE INDEX IF NOT EXISTS labels_episode ON labels (episode_id);
"""


class LabelError(TrajgymError):
    """A label that cannot be stored (an unknown action, a missing reason, a bad edit)."""


class EditConflictError(LabelError):
    """An edit made from a version of the turn that someone else has replaced since."""

    def __init__(self, episode_id: str, turn: int, base: int, latest: Label) -> None:
        self.latest = latest
        super().__init__(f"turn {turn} of {episode_id} was edited by {latest.reviewer} at {latest.time} (version "
                         f"{latest.version}) after the version {base} this edit was made from: reload the episode "
                         "and edit again")


class Label(BaseModel):
    """One row of the labels table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int
    episode_id: str
    source: str
    turn: int | None
    reviewer: str
    time: str
    action: Action
    reason: str | None = None
    version: int = 0
    payload: Any = None
    """An edit: the turn's new assistant message; an undo: nothing (``undoes`` names the row)."""
    undoes: int | None = None


def _now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


class LabelStore:
    """The labels of a dataset, in the SQLite file ``path`` (created when missing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL" if self.path != ":memory:" else "PRAGMA journal_mode=MEMORY")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise LabelError(f"cannot open the labels {self.path}: {exc} (is it an SQLite file?)") from None

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self._db
        db.execute("BEGIN IMMEDIATE")  # the write lock: a second writer waits (timeout) instead of failing
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _insert(self, db: sqlite3.Connection, **row: Any) -> Label:
        row = {"turn": None, "reason": None, "version": 0, "payload": None, "undoes": None, **row, "time": _now()}
        stored = {**row, "payload": None if row["payload"] is None else json.dumps(row["payload"], ensure_ascii=False)}
        cur = db.execute(f"INSERT INTO labels ({', '.join(stored)}) VALUES ({', '.join('?' * len(stored))})",
                         tuple(stored.values()))
        return Label(id=int(cur.lastrowid or 0), **row)

    def add(self, episode_id: str, source: str, action: Action, *, reviewer: str, reason: str | None = None) -> Label:
        """A verdict on an episode. ``reject`` needs a reason."""
        if action not in VERDICTS:
            raise LabelError(f"unknown verdict {action!r}: one of {', '.join(VERDICTS)}")
        if action == "reject" and not (reason or "").strip():
            raise LabelError("a rejection needs a reason (pick one, or write one)")
        with self._write() as db:
            return self._insert(db, episode_id=episode_id, source=source, action=action, reviewer=reviewer,
                                reason=(reason or "").strip() or None)

    def edit(self, episode_id: str, source: str, turn: int, message: dict[str, Any], *, reviewer: str,
             base_version: int, reason: str | None = None) -> Label:
        """A new version of the learner's turn ``turn`` (the whole assistant message), made from
        version ``base_version`` (0: the original). Raises :class:`EditConflictError` when another edit
        of that turn landed since."""
        with self._write() as db:
            latest = self._latest_edit(db, episode_id, turn)
            current = latest.version if latest is not None else 0
            if current != base_version:
                assert latest is not None
                raise EditConflictError(episode_id, turn, base_version, latest)
            return self._insert(db, episode_id=episode_id, source=source, turn=turn, action="edit",
                                reviewer=reviewer, version=current + 1, payload=message, reason=reason)

    def undo(self, episode_id: str, *, reviewer: str) -> Label | None:
        """Undo ``reviewer``'s latest action on the episode that is not undone yet (None: nothing to undo)."""
        with self._write() as db:
            live = [lab for lab in self._effective(db, episode_id) if lab.reviewer == reviewer]
            if not live:
                return None
            target = live[-1]
            return self._insert(db, episode_id=episode_id, source=target.source, turn=target.turn, action="undo",
                                reviewer=reviewer, undoes=target.id, version=target.version)

    # -- reading ----------------------------------------------------------------------------------------

    def labels(self, episode_id: str | None = None) -> list[Label]:
        """Every row (of one episode), oldest first."""
        return self._rows(self._db, episode_id)

    def _rows(self, db: sqlite3.Connection, episode_id: str | None) -> list[Label]:
        query = "SELECT id, episode_id, source, turn, reviewer, time, action, reason, version, payload, undoes FROM labels"
        args: tuple[Any, ...] = ()
        if episode_id is not None:
            query += " WHERE episode_id = ?"
            args = (episode_id,)
        out = []
        for row in db.execute(query + " ORDER BY id", args):
            data = dict(zip(("id", "episode_id", "source", "turn", "reviewer", "time", "action", "reason", "version",
                             "payload", "undoes"), row, strict=True))
            data["payload"] = json.loads(data["payload"]) if data["payload"] is not None else None
            out.append(Label(**data))
        return out

    def _effective(self, db: sqlite3.Connection, episode_id: str | None = None) -> list[Label]:
        rows = self._rows(db, episode_id)
        undone = {r.undoes for r in rows if r.action == "undo"}
        return [r for r in rows if r.action != "undo" and r.id not in undone]

    def _latest_edit(self, db: sqlite3.Connection, episode_id: str, turn: int) -> Label | None:
        edits = [r for r in self._effective(db, episode_id) if r.action == "edit" and r.turn == turn]
        return edits[-1] if edits else None

    def status(self) -> dict[str, Label]:
        """Each labelled episode's latest verdict that is not undone."""
        out: dict[str, Label] = {}
        for row in self._effective(self._db):
            if row.action in VERDICTS:
                out[row.episode_id] = row
        return out

    def edits(self, episode_id: str | None = None) -> dict[str, dict[int, Label]]:
        """episode id -> turn -> the turn's latest version that is not undone."""
        out: dict[str, dict[int, Label]] = {}
        for row in self._effective(self._db, episode_id):
            if row.action == "edit" and row.turn is not None:
                out.setdefault(row.episode_id, {})[row.turn] = row
        return out

    def verdicts(self) -> dict[str, Literal["accept", "reject"]]:
        """episode id -> accept or reject, for the episodes whose status is one of them (what
        overrides the scorers in a filter or an export)."""
        out: dict[str, Literal["accept", "reject"]] = {}
        for eid, lab in self.status().items():
            if lab.action == "accept":
                out[eid] = "accept"
            elif lab.action == "reject":
                out[eid] = "reject"
        return out


def open_labels(path: str | Path, *, must_exist: bool = True) -> LabelStore:
    """The label store at ``path``; a clear error when it is missing (and ``must_exist``)."""
    p = Path(path)
    if must_exist and not p.is_file():
        raise LabelError(f"no labels at {p}: review episodes first (`trajgym review DATA`), which writes them")
    return LabelStore(p)


def cohen_kappa(pairs: Iterable[tuple[bool, bool]]) -> tuple[float | None, float | None, int]:
    """(agreement, Cohen's kappa, n) of two raters' yes/no verdicts; None where undefined
    (no pairs; kappa when chance agreement is 1).

    >>> cohen_kappa([(True, True), (False, False), (True, False), (True, True)])
    (0.75, 0.5, 4)
    """
    items = list(pairs)
    n = len(items)
    if not n:
        return None, None, 0
    agree = sum(a == b for a, b in items) / n
    pa, pb = sum(a for a, _ in items) / n, sum(b for _, b in items) / n
    chance = pa * pb + (1 - pa) * (1 - pb)
    kappa = None if chance >= 1 else round((agree - chance) / (1 - chance), 4)
    return round(agree, 4), kappa, n


def agreement(records: Iterable[Any], verdicts: Mapping[str, str]) -> list[dict[str, Any]]:
    """Per scorer, how often its ``passed`` matched the reviewers' accept (True) or reject (False)
    on the episodes both judged, and Cohen's kappa: whether an automated filter can be trusted.
    ``records`` are :class:`~trajgym.trajectory.scored.ScoredTrajectory`; the episode's overall
    success counts as the scorer ``success``."""
    pairs: dict[str, list[tuple[bool, bool]]] = {}
    for rec in records:
        human = verdicts.get(rec.trajectory.episode_id)
        if human not in ("accept", "reject"):
            continue
        accepted = human == "accept"
        if rec.success is not None:
            pairs.setdefault("success", []).append((bool(rec.success), accepted))
        for name, result in rec.scores.items():
            if result is not None and result.passed is not None:
                pairs.setdefault(name, []).append((bool(result.passed), accepted))
    out = []
    for name in sorted(pairs, key=lambda n: (n != "success", n)):
        agree, kappa, n = cohen_kappa(pairs[name])
        out.append({"scorer": name, "episodes": n, "agreement": agree, "kappa": kappa})
    return out
