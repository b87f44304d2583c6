"""One episode's full transcript as an HTML ``<details>`` block, anchored ``#ep-<n>``.

Messages, tool calls with arguments and results, injected faults, policy violations, the score
breakdown with every finding (linked to its turn, ``#ep-<n>-t<turn>``) and the outcome. Every
piece of trajectory text is escaped (:mod:`trajgym.report.markup`).
"""

from __future__ import annotations

import json
from typing import Any

from trajgym.report.aggregate import EpisodeRow
from trajgym.report.markup import NA, Html, el, join
from trajgym.scorers.base import ScoreResult
from trajgym.trajectory.schema import StepRecord, ToolCallRecord, Trajectory

INLINE_CHARS = 240
"""Values longer than this fold into a ``<details>`` of their own."""


def anchor(row: EpisodeRow) -> str:
    return f"ep-{row.index}"


def verdict(success: bool | None) -> Html:
    if success is None:
        return el("span", "excluded", class_="badge excl")
    return el("span", "success", class_="badge ok") if success else el("span", "failure", class_="badge bad")


def fmt_score(value: float | None) -> str:
    return NA if value is None else f"{value:.2f}"


def _json(value: Any, indent: int | None = None) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=indent)


def _value(value: Any, label: str) -> Html:
    """A value inline when short, else folded with its length."""
    text = _json(value)
    if len(text) <= INLINE_CHARS:
        return el("code", text)
    return el("details", el("summary", f"{label} ({len(text):,} chars)"), el("pre", _json(value, indent=2)),
              class_="fold")


def _tool_call(tc: ToolCallRecord) -> Html:
    faults = [el("div", f"fault injected: {f.kind} (call {f.call}, applied={f.applied})", class_="fault")
              for f in tc.faults]
    violations = [el("div", f"policy violation [{v.rule}]: {v.message}", class_="violation") for v in tc.violations]
    status = "ok" if tc.ok else f"error{f' ({tc.error_type})' if tc.error_type else ''}"
    return el("div",
              el("div", el("span", tc.name, class_="tool"), " ", _value(tc.arguments, "arguments")),
              el("div", el("span", f"→ {status}", class_="ok" if tc.ok else "err"), " ", _value(tc.content, "result"),
                 " " if tc.latency_ms else None, el("span", f"+{tc.latency_ms} ms", class_="muted")
                 if tc.latency_ms else None),
              faults, violations, class_="call" + ("" if tc.ok else " failed"))


def _step(step: StepRecord, prefix: str) -> Html:
    body: list[Html] = []
    if step.error:
        body.append(el("div", "malformed action: ", _value(step.action, "action"), el("span", f" ({step.error})"),
                       class_="err"))
    body.extend(_tool_call(tc) for tc in step.tool_calls)
    if step.message is not None:
        body.append(el("div", step.message, class_="msg"))
    return el("li", el("span", str(step.turn), class_="turn"), el("span", step.role, class_="role"),
              el("div", body, class_="body"), id=f"{prefix}-t{step.turn}", class_=f"step role-{step.role}")


def _prompts(traj: Trajectory) -> Html:
    seen: dict[str, str] = {}
    for step in traj.steps:
        if step.role not in seen:
            seen[step.role] = "\n\n".join(str(m.get("content", "")) for m in step.observation
                                          if m.get("role") == "system")
    items = [el("details", el("summary", f"{role}'s instructions"), el("pre", text), class_="fold")
             for role, text in seen.items() if text]
    return el("div", items, class_="prompts") if items else Html("")


def _scores(row: EpisodeRow, prefix: str) -> Html:
    record = row.record
    if not record.scores:
        return el("p", "not scored", class_="muted")
    lines = []
    for name, result in sorted(record.scores.items()):
        if result is None:
            lines.append(el("tr", el("td", name), el("td", "n/a", colspan=4, class_="muted")))
            continue
        lines.append(el("tr", el("td", name), el("td", fmt_score(result.score), class_="num"),
                        el("td", {True: "yes", False: "no", None: NA}[result.passed]),
                        el("td", "veto" if result.veto else ""), el("td", str(len(result.findings)), class_="num")))
    table = el("table", el("thead", el("tr", [el("th", h) for h in ("scorer", "score", "passed", "veto", "findings")])),
               el("tbody", lines), class_="scores")
    return join([table, _findings(record.scores, prefix)])


def _findings(scores: dict[str, ScoreResult | None], prefix: str) -> Html:
    items = []
    for name, result in sorted(scores.items()):
        for f in result.findings if result is not None else []:
            where = el("a", f"turn {f.turn}", href=f"#{prefix}-t{f.turn}") if f.turn is not None else "no turn"
            items.append(el("li", el("span", name, class_="tool"), " ", el("span", f.kind, class_="kind"), " · ", where,
                            f" · blame {f.blame}" if f.blame else "", " — ", f.message))
    return el("ul", items, class_="findings") if items else Html("")


def _outcome(traj: Trajectory) -> Html:
    out = traj.outcome
    rows = [el("tr", el("td", f"{c.path} {c.operator}"), el("td", _json(c.expected)), el("td", _json(c.actual)),
               el("td", "✓" if c.ok else "✗", class_="ok" if c.ok else "err")) for c in out.conditions]
    rows += [el("tr", el("td", f"told: {f.name}"), el("td", "told"),
                el("td", f"turn {f.turn}" if f.told else "not told"),
                el("td", "✓" if f.told else "✗", class_="ok" if f.told else "err")) for f in out.facts]
    rows.append(el("tr", el("td", "ending"), el("td", " | ".join(out.allowed_endings) or "allowed"),
                   el("td", traj.termination), el("td", "✓" if out.end_ok else "✗", class_="ok" if out.end_ok else "err")))
    rows += [el("tr", el("td", f"violation [{v.rule}]"), el("td", "none"), el("td", f"turn {v.turn}: {v.message}"),
                el("td", "✗", class_="err")) for v in out.violations]
    rows += [el("tr", el("td", "forbidden call"), el("td", "never"), el("td", f"turn {h.turn}: {h.tool}"),
                el("td", "✗", class_="err")) for h in out.forbidden]
    head = el("thead", el("tr", [el("th", h) for h in ("check", "expected", "actual", "ok")]))
    return el("table", head, el("tbody", rows), class_="outcome")


def _meta(row: EpisodeRow) -> Html:
    record, traj = row.record, row.trajectory
    agents = ", ".join(f"{a.role}={a.name}" + (f" ({a.model})" if a.model else "") for a in traj.agents)
    pairs: list[tuple[str, Any]] = [
        ("episode", traj.episode_id), ("scenario", f"{traj.scenario_id} ({traj.domain}, {traj.scenario_hash})"),
        ("seed / trial", f"{traj.seed} / {traj.trial}"), ("agents", agents), ("ended", traj.termination),
        ("group", f"{record.group}: rank {record.rank if record.rank is not None else NA} of {record.group_size}"),
        ("total", fmt_score(record.total)), ("blame", record.blame or NA), ("source", record.source or NA)]
    if record.excluded:
        pairs.append(("excluded", record.excluded))
    if traj.infra_error:
        pairs.append(("infra error", traj.infra_error))
    return el("dl", [join([el("dt", k), el("dd", v)]) for k, v in pairs], class_="meta")


def transcript(row: EpisodeRow) -> Html:
    """The episode's ``<details id="ep-<n>">`` block."""
    traj, prefix = row.trajectory, anchor(row)
    faults = [el("li", f"turn {f.turn}: {f.kind} on {f.tool or 'the customer'} (call {f.call}, applied={f.applied})")
              for f in traj.faults]
    summary = el("summary", el("span", f"#{row.index}", class_="idx"), " ", el("b", traj.episode_id), " · ",
                 traj.scenario_id, f" · seed {traj.seed} · trial {traj.trial} · ", verdict(row.success),
                 f" · total {fmt_score(row.record.total)}")
    return el("details",
              summary,
              el("div", _meta(row), el("h4", "Scores"), _scores(row, prefix),
                 el("h4", f"Injected faults ({len(traj.faults)})"),
                 el("ul", faults, class_="faults") if faults else el("p", "none", class_="muted"),
                 el("h4", f"Transcript ({len(traj.steps)} turns)"), _prompts(traj),
                 el("ol", [_step(s, prefix) for s in traj.steps], class_="steps"),
                 el("h4", "Outcome"), _outcome(traj),
                 el("p", el("a", "back to the episode table", href=f"#row-{row.index}")),
                 class_="episode-body"),
              id=prefix, class_="episode")
