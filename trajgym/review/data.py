"""What the review page shows: the episodes of scored files (or of a ``trajgym loop`` run folder),
their queue rows, an episode as a conversation, and the edits a reviewer may make.

Episodes are keyed by their episode id (one per work unit, the same in every file that holds it)
and remember the line they were read from (``file:line``). A torn last line (a job killed mid-write)
is left out with a note the page shows; any other bad line is an error naming the file and line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trajgym.errors import TrajectoryFileError, TrajgymError
from trajgym.scorers.base import ScoringContext
from trajgym.trajectory.labels import DEFAULT_NAME, Label, LabelError
from trajgym.trajectory.lines import open_lines
from trajgym.trajectory.scored import WHAT, ScoredTrajectory, parse_scored

LEARNER = "support"


class ReviewDataError(TrajgymError):
    """The data to review cannot be read (a missing or corrupt file, a folder holding none)."""


def data_files(target: str | Path) -> tuple[list[Path], Path]:
    """The scored files to review and the labels file beside them: a scored file (labels in
    ``<file stem>.labels.sqlite``), or a loop run folder (every generation's ``scored.jsonl``,
    labels in ``RUN/labels.sqlite``)."""
    p = Path(target)
    if p.is_dir():
        files = sorted(p.glob("gen-*/scored.jsonl"))
        if not files:
            files = sorted(f for f in p.glob("*.jsonl") if not f.name.endswith(".dropped.jsonl"))
        if not files:
            raise ReviewDataError(f"{p} holds no scored files (no gen-*/scored.jsonl, no *.jsonl): give a scored "
                                  "file (`trajgym score ... --out SCORED.jsonl`) or a loop run folder")
        return files, p / DEFAULT_NAME
    if not p.is_file():
        raise ReviewDataError(f"no such file or folder: {p}")
    return [p], p.with_name(p.stem + ".labels.sqlite")


@dataclass
class Entry:
    source: str
    record: ScoredTrajectory
    row: dict[str, Any]


@dataclass
class ReviewData:
    """The episodes under review, in file order (see the module docstring)."""

    files: list[Path]
    entries: dict[str, Entry] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, files: list[Path]) -> ReviewData:
        data = cls(files)
        for path in files:
            try:
                lines = list(open_lines(path, WHAT))
            except OSError as exc:
                raise ReviewDataError(f"cannot read {path}: {exc.strerror or exc}") from None
            for n, raw, torn in lines:
                try:
                    rec = parse_scored(path, n, raw, torn)
                except TrajectoryFileError as exc:
                    if torn:
                        data.notes.append(f"{path}:{n}: the torn last line (a job killed mid-write) is left out")
                        continue
                    raise ReviewDataError(str(exc)) from None
                eid = rec.trajectory.episode_id
                if eid in data.entries:
                    data.notes.append(f"{path}:{n}: episode {eid} was read before (from {data.entries[eid].source}); "
                                      "the first is kept")
                    continue
                source = f"{path}:{n}"
                data.entries[eid] = Entry(source, rec, queue_row(rec, source))
        if not data.entries:
            raise ReviewDataError(f"no episodes in {', '.join(map(str, files))}")
        return data

    def get(self, episode_id: str) -> Entry:
        entry = self.entries.get(episode_id)
        if entry is None:
            raise LabelError(f"no episode {episode_id} in the data under review")
        return entry


def _weights(rec: ScoredTrajectory) -> str | None:
    for step in rec.trajectory.steps:
        if step.role == LEARNER and step.generation is not None and step.generation["weights_id"]:
            return step.generation["weights_id"]
    return next((a.weights_id for a in rec.trajectory.agents if a.role == LEARNER and a.weights_id), None)


def queue_row(rec: ScoredTrajectory, source: str) -> dict[str, Any]:
    """An episode's row in the queue: what the filters filter on."""
    t = rec.trajectory
    persona = next((a.persona for a in t.agents if a.role == "customer" and a.persona), None) or {}
    learner = next((a for a in t.agents if a.role == LEARNER), None)
    return {
        "episode_id": t.episode_id, "source": source, "scenario_id": t.scenario_id, "domain": t.domain,
        "seed": t.seed, "trial": t.trial, "group": rec.group, "policy": t.policy,
        "agent": learner.name if learner else None, "weights_id": _weights(rec),
        "total": rec.total, "success": rec.success, "blame": rec.blame or rec.excluded, "rank": rec.rank,
        "faults": sorted({f.kind for f in t.faults}), "turns": len(t.steps),
        "persona": {k: str(v) for k, v in persona.items() if k in ("mood", "language", "expertise")},
    }


def _action(step: Any) -> dict[str, Any]:
    from trajgym.trainers.records import action_message

    msg = action_message(step)
    calls = [{"name": (c.get("function") or c).get("name"), "arguments": (c.get("function") or c).get("arguments")}
             for c in msg.get("tool_calls") or []]
    for c in calls:
        if not isinstance(c["arguments"], str):
            c["arguments"] = json.dumps(c["arguments"], ensure_ascii=False)
    return {"content": msg.get("content") if isinstance(msg.get("content"), str) else None, "tool_calls": calls,
            "message": msg}


def diff(a: Any, b: Any, path: str = "") -> list[dict[str, Any]]:
    """Where two JSON values differ: ``[{path, episode, reference}]`` (a missing side is None).

    >>> diff({"o": {"status": "refunded", "n": 1}}, {"o": {"status": "open", "n": 1}})
    [{'path': 'o.status', 'episode': 'refunded', 'reference': 'open'}]
    """
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += diff(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            out += diff(x, y, f"{path}[{i}]")
        return out
    return [] if a == b else [{"path": path or "(all)", "episode": a, "reference": b}]


def episode_view(entry: Entry, edits: dict[int, Label], ctx: ScoringContext | None = None) -> dict[str, Any]:
    """An episode as the page shows it: each step with what was said or called, the tool results
    (injected faults and policy violations in place), the scorers' findings at their turns, the
    reviewers' edits (turns after the first edit are stale), and the world against the reference."""
    rec = entry.record
    t = rec.trajectory
    findings: dict[int | None, list[dict[str, Any]]] = {}
    scores = []
    for name, result in rec.scores.items():
        if result is None:
            continue
        scores.append({"name": name, "score": result.score, "passed": result.passed})
        for f in result.findings:
            findings.setdefault(f.turn, []).append({"scorer": name, "kind": f.kind, "message": f.message,
                                                    "blame": f.blame})
    first_edit = min(edits) if edits else None
    steps = []
    for i, step in enumerate(t.steps):
        act = _action(step)
        edit = edits.get(step.turn) if step.role == LEARNER else None
        steps.append({
            "index": i, "turn": step.turn, "role": step.role, "learner": step.role == LEARNER,
            "editable": step.role == LEARNER, "content": act["content"], "tool_calls": act["tool_calls"],
            "message": step.message, "error": step.error,
            "observation": step.observation if step.role == LEARNER and _first_of(t, i) else [],
            "results": [{"name": c.name, "ok": c.ok, "content": c.content, "error_type": c.error_type,
                         "faults": [f.model_dump() for f in c.faults],
                         "violations": [v.model_dump() for v in c.violations]} for c in step.tool_calls],
            "findings": findings.get(step.turn, []),
            "edit": edit.model_dump() if edit is not None else None,
            "stale": first_edit is not None and step.turn > first_edit,
        })
    reference: dict[str, Any]
    world: list[dict[str, Any]] = []
    try:
        from trajgym.scorers.reference import reference_run

        run = reference_run(ctx or ScoringContext(), t)
        reference = {"success": run.success, "matched": run.matched}
        world = diff(t.final_state, run.final_state)
    except Exception as exc:  # a reference that cannot be replayed (a broken sandbox) must not hide the episode
        reference = {"error": f"the reference run could not be played: {exc}"}
    return {
        "row": entry.row, "steps": steps, "scores": scores, "episode_findings": findings.get(None, []),
        "outcome": {"success": t.outcome.success, "termination": t.termination,
                    "conditions": [c.model_dump() for c in t.outcome.conditions]},
        "reference": reference, "world_diff": world, "tools": t.tools.get(LEARNER, []),
    }


def _first_of(t: Any, i: int) -> bool:
    return not any(s.role == LEARNER for s in t.steps[:i])


def edited_message(entry: Entry, turn: int, edit: dict[str, Any]) -> dict[str, Any]:
    """The learner's turn ``turn`` with a reviewer's change: ``{"kind": "message", "content": ...}``
    or ``{"kind": "tool_call", "index": i, "arguments": "<JSON text>"}``. Raises LabelError, saying
    what is wrong, for a turn the learner did not take, arguments that are not a JSON object, or
    arguments the tool's schema rejects."""
    t = entry.record.trajectory
    step = next((s for s in t.steps if s.turn == turn and s.role == LEARNER), None)
    if step is None:
        raise LabelError(f"the learner did not act at turn {turn} of {t.episode_id}: nothing to edit there")
    msg = dict(_action(step)["message"])
    kind = edit.get("kind")
    if kind == "message":
        content = edit.get("content")
        if not isinstance(content, str) or not content.strip():
            raise LabelError("an edited message needs some text")
        return {"role": "assistant", "content": content}
    if kind != "tool_call":
        raise LabelError(f"an edit is of a message or a tool_call, not {kind!r}")
    calls = [dict(c) for c in msg.get("tool_calls") or []]
    index = edit.get("index", 0)
    if not isinstance(index, int) or not 0 <= index < len(calls):
        raise LabelError(f"turn {turn} has {len(calls)} tool call(s): no call {index} to edit")
    text = edit.get("arguments")
    try:
        arguments = json.loads(text) if isinstance(text, str) else None
    except ValueError as exc:
        raise LabelError(f"the arguments are not JSON: {exc}") from None
    if not isinstance(arguments, dict):
        raise LabelError("the arguments must be a JSON object, e.g. {\"order_id\": \"O1\"}")
    fn = dict(calls[index].get("function") or {})
    name = fn.get("name")
    schema = next((s["function"].get("parameters") for s in t.tools.get(LEARNER, [])
                   if s.get("function", {}).get("name") == name), None)
    if schema is None:
        raise LabelError(f"the learner has no tool {name!r} to call")
    import jsonschema

    try:
        jsonschema.validate(arguments, schema)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "the arguments"
        raise LabelError(f"{name} rejects these arguments: {where}: {exc.message}") from None
    fn["arguments"] = json.dumps(arguments, ensure_ascii=False)
    calls[index] = {**calls[index], "function": fn}
    return {**msg, "role": "assistant", "tool_calls": calls}
