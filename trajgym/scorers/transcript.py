"""Trajectories rendered for an LLM judge: a readable transcript (:func:`transcript`). (The chat
rendering a reward model reads is the data products' :func:`trajgym.trajectory.chat.chat_messages`.)

It shows the episode from the agent's side: the customer's (and supervisor's) messages, the agent's
messages, each tool call with its arguments and result. The transcript also marks, on lines starting
with ``!!``, what the test harness knows and the agent may not: faults injected into the tools,
policy violations, malformed actions. Long parts are cut to a budget each (saying how much was cut),
and a transcript over its total budget keeps its beginning and its end and says what it left out.
"""

from __future__ import annotations

from dataclasses import dataclass

from trajgym.trajectory.chat import DEFAULT_BUDGET, Budget, as_text, call_text, clip
from trajgym.trajectory.schema import FaultRecord, StepRecord, Trajectory


def _fault_note(fault: FaultRecord) -> str:
    where = f" into call {fault.call} of {fault.tool}" if fault.tool else ""
    applied = "; the write took effect anyway" if fault.applied else ""
    detail = f" {as_text(fault.detail)}" if fault.detail else ""
    return f"!! fault injected{where}: {fault.kind}{detail}{applied}"


def _step_entries(step: StepRecord, role: str, budget: Budget) -> list[str]:
    who = f"{step.role} (agent)" if step.role == role else step.role
    head = f"[turn {step.turn}] {who}"
    out: list[str] = []
    if step.error:
        out.append(f"{head} sent a malformed action: {clip(step.action, budget.arguments)}\n"
                   f"!! malformed action: {clip(step.error, budget.arguments)}")
    for call in step.tool_calls:
        lines = [f"{head} calls {call_text(call, budget)}"]
        lines += [_fault_note(f) for f in call.faults]
        lines += [f"!! policy violation [{v.rule}]: {v.message}" for v in call.violations]
        out.append("\n".join(lines))
    if step.message:
        out.append(f"{head}: {clip(step.message, budget.message)}")
    return out


def transcript_entries(traj: Trajectory, role: str = "support", budget: Budget = DEFAULT_BUDGET) -> list[str]:
    """The transcript as a list of entries (each one event, possibly several lines), in turn order.
    Faults that hit no tool call (a customer's change of mind) appear at their turn."""
    loose = sorted((f for f in traj.faults if f.tool is None), key=lambda f: f.turn)
    out: list[str] = []
    for step in traj.steps:
        while loose and loose[0].turn <= step.turn:
            out.append(f"[turn {loose[0].turn}] {_fault_note(loose.pop(0))}")
        out += _step_entries(step, role, budget)
    out += [f"[turn {f.turn}] {_fault_note(f)}" for f in loose]
    ending = f"[end] the episode ended: {traj.termination}"
    if traj.truncated:
        ending += " (cut off at the turn limit)"
    out.append(ending)
    return out


@dataclass(frozen=True)
class Transcript:
    text: str
    entries: int
    omitted: int
    """entries left out in the middle to fit the budget"""
    omitted_chars: int


def fit(entries: list[str], max_chars: int, head_share: float = 0.3) -> Transcript:
    """Join ``entries`` with newlines; over ``max_chars``, keep the first entries (about
    ``head_share`` of the budget) and the last ones, with a line saying what was left out."""
    total = sum(len(e) + 1 for e in entries)
    if total <= max_chars:
        return Transcript("\n".join(entries), len(entries), 0, 0)
    marker_room = 100
    head: list[str] = []
    used = 0
    for entry in entries:
        if used + len(entry) + 1 > max_chars * head_share:
            break
        head.append(entry)
        used += len(entry) + 1
    tail: list[str] = []
    room = max_chars - used - marker_room
    for entry in reversed(entries[len(head):]):
        if len(entry) + 1 > room:
            break
        tail.append(entry)
        room -= len(entry) + 1
    tail.reverse()
    left_out = entries[len(head):len(entries) - len(tail)]
    chars = sum(len(e) + 1 for e in left_out)
    marker = f"[... {len(left_out)} events ({chars} characters) left out here to fit the context ...]"
    return Transcript("\n".join([*head, marker, *tail]), len(entries), len(left_out), chars)


def transcript(traj: Trajectory, *, role: str = "support", max_chars: int = 12000,
               budget: Budget = DEFAULT_BUDGET) -> Transcript:
    """The episode as text for a judge, at most about ``max_chars`` characters."""
    return fit(transcript_entries(traj, role, budget), max_chars)
