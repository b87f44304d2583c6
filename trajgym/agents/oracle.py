"""The oracle support agent: plays the scenario's reference solution and recovers from faults.

It stands in for a skilled human: it retries a failed call, tells the customer to hold on when a
system keeps failing, re-reads data that came back stale, partial or malformed, checks whether a
timed-out write took effect before repeating it, follows the customer's change of mind, and
transfers to a human when a system stays down.
"""

from __future__ import annotations

from typing import Any

from trajgym.agents.base import Agent, AgentContext, support_messages
from trajgym.envs.actions import call, say
from trajgym.scenario.schema import GoalChange, RefAction
from trajgym.world.control import ControlTools
from trajgym.world.tools import ToolKit, ToolSpec, whole_result

HOLD = "Sorry, this is taking longer than expected: something I need is failing. Please bear with me a moment."
GIVE_UP = ("I'm sorry, a system I need keeps failing and I cannot finish this now. I'm transferring you "
           "to a human colleague who will follow up with you.")


def _clean(event: dict[str, Any]) -> bool:
    """A successful result that is whole: not cut-off JSON, not from a stale cache, not partial."""
    return whole_result(bool(event.get("ok")), event.get("content"))


class OracleAgent(Agent):
    """Reference solution + fault recovery. Deterministic."""

    kind = "oracle"
    max_retries = 4

    def reset(self, ctx: AgentContext) -> None:
        spec = ctx.instance.spec
        self.plan: list[RefAction] = list(spec.reference)
        self.pos = 0
        self.changes = [f for f in spec.faults if isinstance(f, GoalChange)]
        self.toolkit: type[ToolKit] = ctx.instance.domain.toolkit
        self.specs: dict[str, ToolSpec] = {**self.toolkit.specs(), **ControlTools.specs()}
        self.pending: RefAction | None = None
        self.verifying = False
        self.retries = 0
        self.giving_up = False
        self.closing = 0

    def act(self, messages: list[dict[str, Any]], info: dict[str, Any]) -> str:
        heard = support_messages(messages, "customer")
        for change in self.changes:
            if change.message in heard:
                self.plan, self.pos, self.pending, self.verifying = list(change.reference), 0, None, False
                self.changes.remove(change)
                break
        if self.giving_up:
            return call("transfer_to_human", summary="a system we need stayed down; the request is not done")
        results = [e for e in info.get("events", []) if e.get("type") == "tool_result"]
        if self.pending is not None and results:
            decided = self._after_result(results[-1])
            if decided is not None:
                return decided
        return self._next()

    def _after_result(self, event: dict[str, Any]) -> str | None:
        assert self.pending is not None and self.pending.call is not None
        spec = self.specs[self.pending.call]
        if self.verifying:
            if _clean(event):
                self.verifying = False
                if self.toolkit.effect_visible(self.pending.call, self.pending.args, event["content"]):
                    self._advance()
                    return None
                return self._issue(self.pending)  # it did not apply: do it again
            return self._retry(lambda: self._verify_call(spec))
        if _clean(event):
            self._advance()
            return None
        if event.get("error_type") == "timeout" and spec.kind == "write" and spec.verify:
            self.verifying = True
            return self._verify_call(spec)
        if event.get("error_type") in ("invalid_arguments", "unknown_tool"):
            return self._give_up()
        pending = self.pending
        return self._retry(lambda: self._issue(pending))

    def _retry(self, again: Any) -> str:
        self.retries += 1
        if self.retries > self.max_retries:
            return self._give_up()
        if self.retries == 2:
            return say(HOLD)
        return str(again())

    def _give_up(self) -> str:
        """The call keeps failing: play its fallback plan if the scenario gives one, else hand over."""
        fallback = self.pending.fallback if self.pending is not None else None
        if fallback:
            self.plan, self.pos, self.pending, self.retries, self.verifying = list(fallback), 0, None, 0, False
            return self._next()
        self.giving_up = True
        return say(GIVE_UP)

    def _verify_call(self, spec: ToolSpec) -> str:
        assert self.pending is not None and spec.verify is not None
        wanted = self.specs[spec.verify].args_model.model_fields
        return call(spec.verify, **{k: v for k, v in self.pending.args.items() if k in wanted})

    def _advance(self) -> None:
        self.pending = None
        self.retries = 0
        self.pos += 1

    def _issue(self, action: RefAction) -> str:
        assert action.call is not None
        self.pending = action
        return call(action.call, **action.args)

    def _next(self) -> str:
        if self.pending is not None:  # a hold message went out; try the call again
            return self._issue(self.pending)
        if self.pos < len(self.plan):
            action = self.plan[self.pos]
            if action.say is not None:
                self.pos += 1
                return say(action.say)
            return self._issue(action)
        self.closing += 1
        if self.closing <= 2:
            return say("Is there anything else I can help you with today?")
        return call("transfer_to_human", summary="the customer still needs help after the plan was done")
