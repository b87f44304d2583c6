"""The scripted supervisor: decides approval requests by its limit, then answers the agent."""

from __future__ import annotations

from typing import Any

from trajgym.agents.base import Agent, AgentContext
from trajgym.envs.actions import call, say


class ScriptedSupervisor(Agent):
    """Approves a request whose amount is within ``supervisor.approval_limit``, denies others."""

    kind = "scripted_supervisor"

    def reset(self, ctx: AgentContext) -> None:
        sup = ctx.instance.spec.supervisor
        self.limit = sup.approval_limit if sup is not None else 0.0
        self.decided: list[str] = []

    def act(self, messages: list[dict[str, Any]], info: dict[str, Any]) -> str:
        for event in info.get("events", []):
            if event.get("type") == "handoff" and isinstance(event.get("result"), dict):
                approval_id = event["result"].get("approval_id")
                amount = float((event.get("arguments") or {}).get("amount", 0) or 0)
                if approval_id:
                    approve = amount <= self.limit + 0.005
                    note = "within my limit" if approve else f"above my limit of {self.limit:.2f}"
                    return call("decide_approval", approval_id=approval_id, approve=approve, note=note)
            if event.get("type") == "tool_result" and event.get("name") == "decide_approval":
                content = event.get("content") or {}
                if event.get("ok"):
                    return say(f"Request {content.get('approval_id')} is {content.get('status')}.")
                return say("I could not record my decision; please ask again.")
        return say("I have no pending request from you.")
