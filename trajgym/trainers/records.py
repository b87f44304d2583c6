"""Training records from scored episodes: a role's conversation, SFT examples and DPO pairs.

A learner's conversation is rebuilt exactly as a model agent playing that role kept its history
(:class:`trajgym.agents.chat.ChatAgent`): each of the role's steps adds its observation messages,
then its action as an assistant message; an action that is no valid assistant message is kept as
the text the model wrote, as :meth:`~trajgym.agents.chat.ChatAgent._remember` keeps it. Every
message has the same keys (:class:`Message`), so an Arrow table holds a conversation, and the chat
template renders it byte for byte like the agent's own history.

Records are pydantic models whose fields are the dataset's columns, in order; ``tools`` and
``scores`` are JSON text (TRL's trainers ``json.loads`` a text ``tools`` column).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from trajgym import jsonio
from trajgym.envs.actions import ActionError, parse_message
from trajgym.trajectory.schema import StepRecord, Trajectory
from trajgym.trajectory.scored import ScoredTrajectory

MARGIN_SLACK = 1e-9
"""Totals are floats: a margin this close under ``min_margin`` still counts as reaching it."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FunctionCall(_Strict):
    name: str
    arguments: str
    """The arguments as the JSON text the model wrote (never decoded: the template prints it as is)."""


class ToolCall(_Strict):
    id: str | None
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(_Strict):
    """A chat message with every key present (None where it has none)."""

    role: str
    content: str | None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[ToolCall] | None = None


class SFTRecord(_Strict):
    """One episode's learner conversation, with where it came from and how it scored."""

    messages: list[Message]
    tools: str
    source: str
    episode_id: str
    scenario_id: str
    seed: int
    trial: int
    policy: str
    job_id: str | None
    weights_id: str | None
    total: float
    success: bool | None
    rank: int | None
    group: str
    scores: str
    filter_hash: str | None
    human: str | None = None
    """What a reviewer did (``trajgym review``): ``accept`` (kept whatever the scorers said), or
    ``edit turn N v<version> by <reviewer>`` (the conversation ends at the corrected turn)."""


class DPORecord(_Strict):
    """Two episodes of one variation, split where their assistants first answered differently."""

    prompt: list[Message]
    chosen: list[Message]
    rejected: list[Message]
    tools: str
    scenario_id: str
    seed: int
    group: str
    margin: float
    chosen_episode_id: str
    chosen_source: str
    chosen_total: float
    chosen_policy: str
    chosen_weights_id: str | None
    rejected_episode_id: str
    rejected_source: str
    rejected_total: float
    rejected_policy: str
    rejected_weights_id: str | None
    filter_hash: str | None
    human: str | None = None
    """A pair a reviewer made: ``edit ...`` (the corrected turn against the original) or ``accept > reject``."""


R = TypeVar("R", SFTRecord, DPORecord)


@dataclass
class Built(Generic[R]):
    """Records built, and how many episodes (or pairs) were skipped, by reason."""

    records: list[R] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)


def _text(value: Any) -> str:
    """Tool call arguments as the template prints them: text as is, anything else as its ``tojson``."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _call(raw: dict[str, Any]) -> ToolCall:
    fn = raw["function"] if isinstance(raw.get("function"), dict) else raw
    call_id = raw.get("id")
    return ToolCall(id=call_id if isinstance(call_id, str) else None,
                    function=FunctionCall(name=str(fn["name"]), arguments=_text(fn.get("arguments", "{}"))))


def normalize(message: dict[str, Any]) -> Message:
    """``message`` with every key of :class:`Message`; content that is not text becomes None (the
    template renders both as nothing), keys the template never reads are left out."""
    content, name, call_id = message.get("content"), message.get("name"), message.get("tool_call_id")
    calls = message.get("tool_calls") or None
    return Message(role=str(message["role"]), content=content if isinstance(content, str) else None,
                   name=name if isinstance(name, str) else None,
                   tool_call_id=call_id if isinstance(call_id, str) else None,
                   tool_calls=[_call(c) for c in calls] if calls else None)


def action_message(step: StepRecord) -> dict[str, Any]:
    """The step's action as the agent's history kept it: the assistant message, or (an action that
    is none) the text the model wrote (``generation.raw_content``), else the action's text."""
    try:
        msg = jsonio.loads(step.action)
    except ValueError:
        msg = None
    if isinstance(msg, dict) and msg.get("role") == "assistant":
        if isinstance(msg.get("content"), str) and msg["content"] and not msg.get("tool_calls"):
            return msg
        try:
            parse_message(msg, 0)
            return msg
        except ActionError:
            pass
    raw = step.generation["raw_content"] if step.generation is not None else None
    return {"role": "assistant", "content": raw if raw is not None else step.action}


def raw_messages(traj: Trajectory, role: str = "support") -> list[dict[str, Any]]:
    """``role``'s history as the agent kept it (the messages as recorded, not normalized)."""
    out: list[dict[str, Any]] = []
    for step in traj.steps:
        if step.role == role:
            out.extend(step.observation)
            out.append(action_message(step))
    return out


def learner_conversation(traj: Trajectory, role: str = "support") -> list[Message]:
    """``role``'s conversation (:func:`raw_messages`), every message normalized."""
    return [normalize(m) for m in raw_messages(traj, role)]


def learner_messages(traj: Trajectory, role: str = "support") -> list[dict[str, Any]]:
    """:func:`learner_conversation` as plain dicts (what a dataset row and a chat template take)."""
    return [m.model_dump() for m in learner_conversation(traj, role)]


def learner_tools(traj: Trajectory, role: str = "support") -> list[dict[str, Any]]:
    """The tools ``role``'s model was offered: its agent's extra tools (the reply tool) first, then
    the role's, as :meth:`~trajgym.agents.chat.ChatAgent.tools_of` orders them (none without role tools)."""
    tools = traj.tools.get(role) or []
    extra = [t for a in traj.agents if a.role == role for t in a.extra_tools]
    return [*extra, *tools] if tools else []


def weights_id(traj: Trajectory, role: str = "support") -> str | None:
    """The weights behind ``role``'s answers: its first generation's that names them, else its agent's."""
    for step in traj.steps:
        if step.role == role and step.generation is not None and step.generation["weights_id"]:
            return step.generation["weights_id"]
    return next((a.weights_id for a in traj.agents if a.role == role and a.weights_id), None)


def _skip_reason(rec: ScoredTrajectory, role: str) -> str | None:
    if rec.total is None:
        return f"excluded ({rec.excluded or 'no total'})"
    if not any(s.role == role for s in rec.trajectory.steps):
        return f"no {role} turns"
    return None


def sft_record(rec: ScoredTrajectory, role: str = "support") -> SFTRecord:
    """The SFT record of a scored (not excluded) episode."""
    t = rec.trajectory
    if rec.total is None:
        raise ValueError(f"episode {t.episode_id} is excluded from scoring ({rec.excluded}): no record")
    scores = {name: (r.score if r is not None else None) for name, r in rec.scores.items()}
    return SFTRecord(
        messages=learner_conversation(t, role), tools=jsonio.text(learner_tools(t, role)), source=rec.source,
        episode_id=t.episode_id, scenario_id=t.scenario_id, seed=t.seed, trial=t.trial, policy=t.policy,
        job_id=t.job_id, weights_id=weights_id(t, role), total=rec.total, success=rec.success, rank=rec.rank,
        group=rec.group, scores=jsonio.text(scores), filter_hash=rec.filter.hash if rec.filter else None)


def sft_records(records: Iterable[ScoredTrajectory], role: str = "support") -> Built[SFTRecord]:
    """An SFT record per scored episode in which ``role`` acted; the others counted by reason."""
    out: Built[SFTRecord] = Built()
    for rec in records:
        why = _skip_reason(rec, role)
        if why:
            out.skipped[why] += 1
        else:
            out.records.append(sft_record(rec, role))
    return out


def _same(a: Message, b: Message) -> bool:
    """Whether two messages say the same (call ids aside: the template never shows them)."""
    def key(m: Message) -> tuple[Any, ...]:
        calls = [(c.function.name, c.function.arguments) for c in m.tool_calls or []]
        return m.role, m.content or "", calls

    return key(a) == key(b)


def split_at_first_difference(better: list[Message], worse: list[Message]
                              ) -> tuple[list[Message], Message, Message] | str:
    """``(prompt, chosen, rejected)``: the messages both share, up to the first assistant message
    where they differ; or why there is none (a string)."""
    for i, (a, b) in enumerate(zip(better, worse, strict=False)):
        if _same(a, b):
            continue
        if a.role == "assistant" and b.role == "assistant":
            return better[:i], a, b
        return "the conversations part at a non-assistant message"
    return "no assistant message differs"


def _order(rec: ScoredTrajectory) -> tuple[float, float, str]:
    return (-(rec.total or 0.0), rec.rank if rec.rank is not None else float("inf"), rec.trajectory.episode_id)


def dpo_records(records: Iterable[ScoredTrajectory], role: str = "support",
                min_margin: float = 0.1) -> Built[DPORecord]:
    """Preference pairs within each variation (``group``): its best episode (highest total, then
    rank) against each other one whose total is at least ``min_margin`` lower, split at the first
    assistant message where the two differ. Pairs skipped and episodes unusable are counted by reason."""
    out: Built[DPORecord] = Built()
    groups: dict[str, list[ScoredTrajectory]] = defaultdict(list)
    for rec in records:
        why = _skip_reason(rec, role)
        if why:
            out.skipped[f"episode {why}"] += 1
        else:
            groups[rec.group].append(rec)
    for group in sorted(groups):
        ranked = sorted(groups[group], key=_order)
        if len(ranked) == 1:
            out.skipped["episode alone in its group (nothing to pair with)"] += 1
            continue
        best, rest = ranked[0], ranked[1:]
        for worse in rest:
            made = dpo_pair(best, worse, role, min_margin)
            if isinstance(made, str):
                out.skipped[f"pair: {made}"] += 1
            else:
                out.records.append(made)
    return out


def dpo_pair(better: ScoredTrajectory, worse: ScoredTrajectory, role: str = "support",
             min_margin: float = 0.1) -> DPORecord | str:
    """The pair of two scored episodes of one variation, or why they make none."""
    if better.total is None or worse.total is None:
        return "an episode is excluded from scoring"
    margin = better.total - worse.total
    if margin < min_margin - MARGIN_SLACK:
        return f"margin < {min_margin:g}"
    b, w = better.trajectory, worse.trajectory
    tools = jsonio.text(learner_tools(b, role))
    if tools != jsonio.text(learner_tools(w, role)):
        return "different tools offered"
    split = split_at_first_difference(learner_conversation(b, role), learner_conversation(w, role))
    if isinstance(split, str):
        return split
    prompt, chosen, rejected = split
    stamp = better.filter.hash if better.filter else None
    return DPORecord(
        prompt=prompt, chosen=[chosen], rejected=[rejected], tools=tools, scenario_id=b.scenario_id, seed=b.seed,
        group=better.group, margin=round(margin, 9),
        chosen_episode_id=b.episode_id, chosen_source=better.source, chosen_total=better.total,
        chosen_policy=b.policy, chosen_weights_id=weights_id(b, role),
        rejected_episode_id=w.episode_id, rejected_source=worse.source, rejected_total=worse.total,
        rejected_policy=w.policy, rejected_weights_id=weights_id(w, role), filter_hash=stamp)


# -- pairs and records from human review labels ------------------------------------------------------


def split_at_turn(traj: Trajectory, turn: int, role: str = "support") -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``role``'s conversation before its action at ``turn`` (the prompt of that turn), and that
    action as the agent kept it. Raises ValueError when ``role`` did not act at ``turn``."""
    out: list[dict[str, Any]] = []
    for step in traj.steps:
        if step.role != role:
            continue
        out.extend(step.observation)
        if step.turn == turn:
            return out, action_message(step)
        out.append(action_message(step))
    raise ValueError(f"episode {traj.episode_id}: {role} did not act at turn {turn}")


def edited_sft_record(rec: ScoredTrajectory, turn: int, message: dict[str, Any], *, note: str,
                      role: str = "support") -> SFTRecord:
    """The SFT record of an episode a reviewer corrected at ``turn``: the conversation up to that
    turn with the corrected ``message`` last (what came after answered the original: stale, left out)."""
    prompt, _ = split_at_turn(rec.trajectory, turn, role)
    t = rec.trajectory
    scores = {name: (r.score if r is not None else None) for name, r in rec.scores.items()}
    return SFTRecord(
        messages=[normalize(m) for m in [*prompt, message]], tools=jsonio.text(learner_tools(t, role)),
        source=rec.source, episode_id=t.episode_id, scenario_id=t.scenario_id, seed=t.seed, trial=t.trial,
        policy=t.policy, job_id=t.job_id, weights_id=weights_id(t, role), total=rec.total if rec.total is not None
        else 0.0, success=rec.success, rank=rec.rank, group=rec.group, scores=jsonio.text(scores),
        filter_hash=rec.filter.hash if rec.filter else None, human=note)


def edit_pair(rec: ScoredTrajectory, turn: int, message: dict[str, Any], *, note: str,
              role: str = "support") -> DPORecord | str:
    """The corrected turn (chosen) against the original one (rejected), after the same prompt; or
    why there is no pair (the correction says the same as the original)."""
    prompt, original = split_at_turn(rec.trajectory, turn, role)
    chosen, rejected = normalize(message), normalize(original)
    if _same(chosen, rejected):
        return "the edit says what the original said"
    t = rec.trajectory
    total = rec.total if rec.total is not None else 0.0
    wid = weights_id(t, role)
    return DPORecord(
        prompt=[normalize(m) for m in prompt], chosen=[chosen], rejected=[rejected],
        tools=jsonio.text(learner_tools(t, role)), scenario_id=t.scenario_id, seed=t.seed, group=rec.group,
        margin=0.0, chosen_episode_id=t.episode_id, chosen_source=rec.source, chosen_total=total,
        chosen_policy="human", chosen_weights_id=None, rejected_episode_id=t.episode_id, rejected_source=rec.source,
        rejected_total=total, rejected_policy=t.policy, rejected_weights_id=wid,
        filter_hash=rec.filter.hash if rec.filter else None, human=note)


def verdict_pairs(records: Iterable[ScoredTrajectory], verdicts: Mapping[str, str],
                  role: str = "support") -> Built[DPORecord]:
    """Within each variation, every episode a reviewer accepted against every one they rejected,
    split at the first learner turn where the two differ (whatever the scorers' totals)."""
    out: Built[DPORecord] = Built()
    groups: dict[str, list[ScoredTrajectory]] = defaultdict(list)
    for rec in records:
        if verdicts.get(rec.trajectory.episode_id) in ("accept", "reject"):
            groups[rec.group].append(rec)
    for group in sorted(groups):
        accepted = [r for r in groups[group] if verdicts[r.trajectory.episode_id] == "accept"]
        rejected = [r for r in groups[group] if verdicts[r.trajectory.episode_id] == "reject"]
        for good in accepted:
            for bad in rejected:
                made = dpo_pair(good.model_copy(update={"total": 1.0}), bad.model_copy(update={"total": 0.0}),
                                role, min_margin=0.0)
                if isinstance(made, str):
                    out.skipped[f"human pair: {made}"] += 1
                else:
                    out.records.append(made.model_copy(update={
                        "human": "accept > reject", "margin": 1.0, "chosen_total": good.total or 0.0,
                        "rejected_total": bad.total or 0.0}))
    return out
