"""The episode engine every env view shares.

An :class:`Episode` holds one scenario instance: the world, the fault layer, whose turn it is, the
messages waiting for each role, and the trajectory being recorded. The PettingZoo AEC and Parallel
envs, the Gymnasium env and the rollout runner are thin views over it.

Turns: the customer opens; the support agent calls tools (keeping the turn) until it answers with
a plain message, which passes the turn to the customer. A tool tagged ``handoff`` (e.g.
``request_supervisor_approval``) passes the turn to that role, whose plain message passes it back.
Every action of any role is one turn.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from trajgym import jsonio
from trajgym.envs.actions import ActionError, ParsedAction, ToolCall, parse_action
from trajgym.faults.layer import FaultLayer, FaultRecord
from trajgym.scenario.schema import ForbiddenAction, Goal, GoalChange, ToolFault
from trajgym.seeding import rng
from trajgym.trajectory.schema import Generation
from trajgym.trajectory.units import episode_id
from trajgym.world.conditions import evaluate
from trajgym.world.control import ENDINGS, ControlTools
from trajgym.world.loader import ScenarioInstance, ScenarioTemplate
from trajgym.world.tools import ToolResult

PARTNER = {"support": "customer", "customer": "support", "supervisor": "support"}


@dataclass
class RoleView:
    """What waits for one role: chat messages (OpenAI format) and structured events."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


def _args_match(expected: dict[str, Any], actual: Any) -> bool:
    if not isinstance(actual, dict):
        return False
    for key, want in expected.items():
        got = actual.get(key)
        if isinstance(want, int | float) and isinstance(got, int | float):
            if abs(float(want) - float(got)) > 0.005:
                return False
        elif got != want:
            return False
    return True


class Episode:
    """One running episode of a scenario instance."""

    def __init__(self, instance: ScenarioInstance, *, trial: int = 0, episode_id_: str | None = None,
                 max_turns: int | None = None, policy: str = "") -> None:
        self.instance = instance
        spec = instance.spec
        self.spec = spec
        self.max_turns = spec.limits.max_turns if max_turns is None else min(max_turns, spec.limits.max_turns)
        """The turn limit: the scenario's ``limits.max_turns``, or a lower cap (a job's ``max_turns``)."""
        self.domain = instance.domain
        self.roles: list[str] = list(spec.roles)
        self.policy = policy
        """Who plays (:func:`trajgym.trajectory.units.policy_id`; empty for a view whose learner is the caller)."""
        self.episode_id = episode_id_ or episode_id(spec.id, instance.seed, trial, policy)
        self.trial = trial
        self.state = instance.fresh_state()
        self.toolkit = self.domain.toolkit(self.state)
        tool_faults = [f for f in spec.faults if isinstance(f, ToolFault)]
        self.goal_changes = [(i, f) for i, f in enumerate(spec.faults) if isinstance(f, GoalChange)]
        self.faults = FaultLayer(tool_faults, self.toolkit, instance.seed,
                                 stale_state=instance.fresh_state)
        # fault records carry the index in spec.faults, not in the tool-fault sublist
        self._fault_index = [i for i, f in enumerate(spec.faults) if isinstance(f, ToolFault)]
        self.checker = self.domain.checker(instance.policy_params)
        self.control = ControlTools(None)
        specs = {**self.domain.toolkit.specs(), **ControlTools.specs()}
        self.allowed: dict[str, list[str]] = {r: list(spec.tools.get(r, [])) for r in self.roles}  # type: ignore[call-overload]
        self.tool_schemas: dict[str, list[dict[str, Any]]] = {
            r: [specs[name].schema for name in names] for r, names in self.allowed.items()
        }
        self._handoff = {name: specs[name].handoff for names in self.allowed.values() for name in names}
        self.goal: Goal = spec.goal
        self.goal_changed_at: int | None = None
        self.turn = 0
        self.turn_role = "customer" if "customer" in self.roles else self.roles[0]
        self.customer_turns = 0
        self.done = False
        self.truncated = False
        self.termination: str | None = None
        self.infra_error: str | None = None
        self.told: dict[str, int] = {}
        self.violations: list[dict[str, Any]] = []
        self.forbidden_hits: list[dict[str, Any]] = []
        self.fault_log: list[dict[str, Any]] = []
        self.steps: list[dict[str, Any]] = []
        self.views: dict[str, RoleView] = {r: RoleView() for r in self.roles}
        self.wall_started = time.time()
        self._outcome: dict[str, Any] | None = None
        for role in self.roles:
            self.views[role].messages.append({"role": "system", "content": self._instructions(role)})
        self.views[self.turn_role].messages.append(
            {"role": "user", "name": "environment", "content": "The support chat is open. Start the conversation."}
        )

    @classmethod
    def start(cls, template: ScenarioTemplate, seed: int, *, trial: int = 0, max_turns: int | None = None,
              policy: str = "") -> Episode:
        return cls(template.instantiate(seed), trial=trial, max_turns=max_turns, policy=policy)

    # ------------------------------------------------------------------------------------------
    # views

    def _instructions(self, role: str) -> str:
        text = self.domain.role_instructions[role]
        spec = self.spec
        if role == "customer" and spec.customer is not None:
            c = spec.customer
            facts = "\n".join(f"- {f.says}" for f in c.facts) or "- (nothing special)"
            return text.format(name=c.persona.name, mood=c.persona.mood, opening=c.opening, facts=facts)
        limit = spec.supervisor.approval_limit if spec.supervisor else 0.0
        return text.format(policy=self.instance.policy_text, limit=limit)

    def peek(self, role: str) -> list[dict[str, Any]]:
        """Messages waiting for ``role`` (not consumed)."""
        return self.views[role].messages

    def drain(self, role: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Take the messages and events waiting for ``role``."""
        view = self.views[role]
        messages, events = view.messages, view.events
        view.messages, view.events = [], []
        return messages, events

    def info(self, role: str, events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The structured view for ``role``: tool schemas, and tool results / faults / handoffs."""
        return {
            "role": role,
            "turn": self.turn,
            "acting": self.turn_role if not self.done else None,
            "tools": self.tool_schemas.get(role, []),
            "events": self.views[role].events if events is None else events,
            "episode_id": self.episode_id,
            "scenario_id": self.spec.id,
        }

    # ------------------------------------------------------------------------------------------
    # stepping

    def step(self, role: str, action: str, generation: Generation | None = None) -> dict[str, Any]:
        """Apply ``role``'s action; ``generation`` is what the model returned with it (token ids,
        logprobs, sampling settings), kept in the step record. Returns the recorded step."""
        if self.done:
            raise RuntimeError("the episode is over; reset it")
        if role != self.turn_role:
            raise RuntimeError(f"it is {self.turn_role}'s turn, not {role}'s")
        t0 = time.perf_counter()
        observation, _events = self.drain(role)
        step: dict[str, Any] = {
            "turn": self.turn, "role": role, "observation": observation, "action": action,
            "message": None, "tool_calls": [], "error": None, "generation": generation,
            "wall_time": time.time(),
        }
        if role == "customer":
            self.customer_turns += 1
        try:
            parsed = parse_action(action, self.turn)
        except ActionError as exc:
            step["error"] = str(exc)
            self._feedback(role, f"Your last action was malformed: {exc}")
        else:
            self._apply(role, parsed, step)
        self.steps.append(step)
        self.turn += 1
        if not self.done and self.turn >= self.max_turns:
            self.done, self.truncated, self.termination = True, True, "max_turns"
        if self.done:
            try:
                self.toolkit.finalize()
                self._outcome = self._evaluate()
            finally:
                self.close()
        step["wall_ms"] = (time.perf_counter() - t0) * 1000.0
        return step

    def _feedback(self, role: str, text: str) -> None:
        self.views[role].messages.append({"role": "user", "name": "environment", "content": text})
        self.views[role].events.append({"type": "action_error", "message": text})

    def _apply(self, role: str, parsed: ParsedAction, step: dict[str, Any]) -> None:
        handoff: tuple[str, dict[str, Any]] | None = None
        ending: str | None = None
        for call in parsed.tool_calls:
            faults: list[FaultRecord] = []
            violations: list[dict[str, Any]] = []
            if ending is not None:
                result = ToolResult.error("conversation_ended", "the conversation has ended")
            else:
                result, faults, violations = self._call(role, call)
                if result.ok and call.name in ENDINGS:
                    ending = ENDINGS[call.name]
                target = self._handoff.get(call.name)
                if result.ok and target and target in self.roles and target != role:
                    handoff = (target, {"tool": call.name, "arguments": call.arguments, "result": result.content})
            record = {
                "id": call.id, "name": call.name, "arguments": call.arguments, "ok": result.ok,
                "content": result.content, "error_type": result.error_type, "applied": result.applied,
                "latency_ms": result.meta.get("latency_ms", 0),
                "faults": [f.to_dict() for f in faults], "violations": violations,
            }
            step["tool_calls"].append(record)
            view = self.views[role]
            view.messages.append({"role": "tool", "tool_call_id": call.id, "name": call.name,
                                  "content": jsonio.text(result.content)})
            view.events.append({"type": "tool_result", **record})
        if ending is not None:
            self.done, self.termination = True, ending
            return
        if parsed.content and not parsed.tool_calls:
            step["message"] = parsed.content
            self._deliver(role, parsed.content)
        elif handoff is not None:
            target, detail = handoff
            self.turn_role = target
            text = (f"Request from support: {detail['tool']} {json.dumps(detail['arguments'])} -> "
                    f"{json.dumps(detail['result'])}")
            self.views[target].messages.append({"role": "user", "name": role, "content": text})
            self.views[target].events.append({"type": "handoff", "from": role, **detail})

    def _call(self, role: str, call: ToolCall) -> tuple[ToolResult, list[FaultRecord], list[dict[str, Any]]]:
        if call.name not in self.allowed[role]:
            available = ", ".join(self.allowed[role]) or "none"
            return ToolResult.error("unknown_tool", f"tool '{call.name}' is not available to {role} "
                                                    f"(available: {available})"), [], []
        if call.error is not None:
            return ToolResult.error("invalid_arguments", f"{call.name}: {call.error}"), [], []
        if call.name in ENDINGS:
            return self.control.call(call.name, call.arguments), [], []
        checked = self.toolkit.validate(call.name, call.arguments)
        if isinstance(checked, ToolResult):  # bad arguments: the call never reaches the world
            return checked, [], []
        args = checked
        violations = [
            {"turn": self.turn, "role": role, "tool": call.name, "rule": v.rule, "message": v.message}
            for v in self.checker.before_call(role, call.name, args, self.state)
        ]
        self.violations += violations
        for rule in self.spec.forbidden:
            if rule.tool == call.name and _args_match(rule.args, args):
                self.forbidden_hits.append(self._forbidden_record(rule, call))
        self.toolkit.turn = self.turn
        result, faults = self.faults.call(call.name, args, self.turn)
        for f in faults:
            f.index = self._fault_index[f.index]
            self.fault_log.append(f.to_dict())
        self.checker.after_call(role, call.name, args, result, self.state)
        return result, faults, violations

    def _forbidden_record(self, rule: ForbiddenAction, call: ToolCall) -> dict[str, Any]:
        return {"turn": self.turn, "tool": call.name, "arguments": call.arguments, "reason": rule.reason}

    def _deliver(self, role: str, text: str) -> None:
        target = PARTNER.get(role, "support")
        if target not in self.roles:
            self._feedback(role, f"there is no {target} to talk to")
            return
        if role == "support" and target == "customer":
            lowered = text.lower()
            for fact in self.goal.tell:
                if fact.name not in self.told and any(s.lower() in lowered for s in fact.any_of):
                    self.told[fact.name] = self.turn
        self.views[target].messages.append({"role": "user", "name": role, "content": text})
        self.turn_role = target
        if target == "customer":
            self._maybe_change_goal()

    def _maybe_change_goal(self) -> None:
        upcoming = self.customer_turns + 1
        for index, change in self.goal_changes:
            if change.at_customer_turn != upcoming or self.goal_changed_at is not None:
                continue
            chance = change.probability
            if chance is not None and not rng(self.instance.seed, "fault", index).random() < chance:
                continue
            self.goal = change.goal
            self.goal_changed_at = self.turn
            record = FaultRecord(index, "customer_goal_change", None, self.turn, upcoming,
                                 detail={"message": change.message})
            self.fault_log.append(record.to_dict())
            view = self.views["customer"]
            view.messages.append({"role": "system", "content": f"You change your mind. Say: {change.message}"})
            view.events.append({"type": "goal_change", "message": change.message, "fault": record.to_dict()})

    # ------------------------------------------------------------------------------------------
    # outcome and record

    def _evaluate(self) -> dict[str, Any]:
        final = self.state.model_dump(mode="json")
        conditions = []
        for cond in self.goal.state:
            ok, actual = evaluate(cond, final)
            conditions.append({"path": cond.path, "operator": cond.operator,
                               "expected": getattr(cond, cond.operator), "actual": actual, "ok": ok})
        facts = [{"name": f.name, "told": f.name in self.told, "turn": self.told.get(f.name)}
                 for f in self.goal.tell]
        end_ok = self.termination in self.goal.end
        success = (all(c["ok"] for c in conditions) and all(f["told"] for f in facts) and end_ok
                   and not self.violations and not self.forbidden_hits)
        return {"success": success, "conditions": conditions, "facts": facts, "end_ok": end_ok,
                "allowed_endings": list(self.goal.end),
                "violations": self.violations, "forbidden": self.forbidden_hits,
                "goal_changed_at": self.goal_changed_at, "final_state": final}

    def abort(self, reason: str) -> None:
        """End the episode because the infrastructure failed (not the agent): it is recorded with
        termination ``infra_error`` and must be run again."""
        if self.done:
            return
        self.done, self.termination, self.infra_error = True, "infra_error", reason
        try:
            self._outcome = self._evaluate()
            self._outcome["success"] = False
        finally:
            self.close()

    def close(self) -> None:
        """Free the world's resources (idempotent); the env views call it on reset and close."""
        self.toolkit.close()
        if self.faults.stale_toolkit is not None:
            self.faults.stale_toolkit.close()

    @property
    def outcome(self) -> dict[str, Any]:
        if self._outcome is None:
            raise RuntimeError("the episode is not over")
        return self._outcome

    def rewards(self) -> dict[str, float]:
        """Terminal reward of every role: 1.0 for a successful episode, else 0.0."""
        if not self.done or self.infra_error is not None:
            return dict.fromkeys(self.roles, 0.0)
        value = 1.0 if self.outcome["success"] else 0.0
        return dict.fromkeys(self.roles, value)
