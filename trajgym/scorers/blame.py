"""Blame attribution: who caused a failed episode, so that failures that are not the agent's
(a simulator that broke character or ended early, a fault that made the task impossible, a model
server that went down) can be dropped before training.

The order of precedence: ``infrastructure`` (the episode ended in ``infra_error``), then
``simulator`` (any simulator finding, from :func:`simulator_findings` or from a scorer), then
``tool`` (a scorer's finding that blames a tool or injected fault, e.g. an outage that lasted to the
end), else ``agent``.

    >>> from trajgym.scorers.base import Finding, ScoreResult
    >>> attribute_from("customer_ended", success=False, findings=[])
    'agent'
    >>> attribute_from("customer_ended", success=False, findings=[Finding(kind="x", message="", blame="tool")])
    'tool'
    >>> attribute_from("infra_error", success=False, findings=[])
    'infrastructure'
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from trajgym.scorers.base import Blame, Finding, Scorer, ScoreResult, ScoringContext, register
from trajgym.trajectory.schema import Trajectory

SUPPORT_VOICE = re.compile(
    r"\b(how (can|may) i (help|assist) you|i am (the|a|your) (support|customer service) (agent|representative)"
    r"|thank(s| you) for contacting (us|support)|as an ai\b|i('m| am) an ai\b|as a language model"
    r"|is there anything else i can help you with)",
    re.IGNORECASE,
)
"""Phrases a customer does not write: a simulator that says them has slipped into the agent's role."""

EARLY_END = {"customer_ended", "customer_requested_human"}


def simulator_findings(traj: Trajectory) -> list[Finding]:
    """Ways the customer simulator broke the episode, each at its turn:

    - a malformed customer action (the simulator could not follow the protocol);
    - a customer message in the support agent's voice, or repeating the agent's last message;
    - the customer ending (or asking for a human) before the agent had two turns, or right after
      the agent asked them a question that they never answered, with the goal not reached yet.
    """
    out: list[Finding] = []
    last_support: str | None = None
    support_turns = 0
    for step in traj.steps:
        if step.role == "support":
            support_turns += 1
            if step.message:
                last_support = step.message
            continue
        if step.role != "customer":
            continue
        if step.error:
            out.append(Finding(kind="simulator_malformed", turn=step.turn, blame="simulator",
                               message=f"the customer simulator's action was malformed: {step.error}"))
        text = step.message or ""
        if text and SUPPORT_VOICE.search(text):
            out.append(Finding(kind="simulator_broke_character", turn=step.turn, blame="simulator",
                               message=f"the customer wrote as the support agent would: {text[:120]!r}"))
        elif text and last_support and text.strip().lower() == last_support.strip().lower():
            out.append(Finding(kind="simulator_echo", turn=step.turn, blame="simulator",
                               message="the customer repeated the support agent's message"))
    if traj.termination in EARLY_END:
        last = next((s for s in reversed(traj.steps) if s.role == "customer"), None)
        turn = last.turn if last is not None else None
        said_nothing = last is not None and not (last.message or "").strip()
        if support_turns < 2:
            out.append(Finding(kind="simulator_ended_early", turn=turn, blame="simulator",
                               message=f"the customer ended the chat ({traj.termination}) after "
                                       f"{support_turns} support turn(s)"))
        elif (last_support is not None and last_support.rstrip().endswith("?") and said_nothing
              and not _goal_reached(traj)):
            out.append(Finding(kind="simulator_ended_early", turn=turn, blame="simulator",
                               message="the customer ended the chat instead of answering the agent's question"))
    return out


def _goal_reached(traj: Trajectory) -> bool:
    """Whether the goal's state conditions held and its facts were told when the episode ended."""
    out = traj.outcome
    return all(c.ok for c in out.conditions) and all(f.told for f in out.facts)


def attribute_from(termination: str, *, success: bool | None, findings: Iterable[Finding]) -> Blame | None:
    """The blame of an episode from its ending, its success and every finding about it."""
    if termination == "infra_error":
        return "infrastructure"
    if success:
        return None
    blames = {f.blame for f in findings}
    order: tuple[Blame, ...] = ("simulator", "tool")
    return next((b for b in order if b in blames), "agent")


@register
class SimulatorScorer(Scorer):
    """1.0 when the customer simulator played its part, 0.0 when it broke the episode; the
    findings (:func:`simulator_findings`) say where. Run with weight 0 it only feeds blame.

    >>> SimulatorScorer().name
    'simulator'
    """

    name = "simulator"
    forkable = True

    def score(self, traj: Trajectory, ctx: ScoringContext) -> ScoreResult:
        findings = simulator_findings(traj)
        return ScoreResult(score=0.0 if findings else 1.0, passed=not findings, findings=findings)


def attribute(traj: Trajectory, scores: dict[str, ScoreResult | None], success: bool | None) -> Blame | None:
    """Blame of a scored trajectory from its scorers' findings (and :func:`simulator_findings` when
    the ``simulator`` scorer did not run)."""
    findings = [f for r in scores.values() if r is not None for f in r.findings]
    if "simulator" not in scores:
        findings += simulator_findings(traj)
    return attribute_from(traj.termination, success=success, findings=findings)
