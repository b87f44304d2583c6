"""The scripted supervisor: decides approval requests by its rules, then answers the agent."""

from __future__ import annotations

import json
from typing import Any

from trajgym.agents.base import Agent, AgentContext
from trajgym.envs.actions import call, say


class ScriptedSupervisor(Agent):
    """Follows the scenario's ``supervisor`` section: approves a request whose amount is within
    ``approval_limit`` unless its arguments mention one of ``deny``; answers "later" to the first
    ``delay`` requests, so the agent has to chase."""

    kind = "scripted_supervisor"

    def reset(self, ctx: AgentContext) -> None:
        sup = ctx.instance.spec.supervisor
        self.limit = sup.approval_limit if sup is not None else 0.0
        self.deny = list(sup.deny) if sup is not None else []
        self.delay = sup.delay if sup is not None else 0

    def act(self, messages: list[dict[str, Any]], info: dict[str, Any]) -> str:
        for event in info.get("events", []):
            if event.get("type") == "handoff" and isinstance(event.get("result"), dict):
                approval_id = event["result"].get("approval_id")
                if not approval_id:
                    continue
                if self.delay > 0:
                    self.delay -= 1
                    return say(f"I'm busy right now; I'll look at request {approval_id} later.")
                args = event.get("arguments") or {}
                amount = float(args.get("amount", 0) or 0)
                text = json.dumps(args).lower()
                denied = next((d for d in self.deny if d.lower() in text), None)
                if denied is not None:
                    approve, note = False, f"I can't approve anything involving {denied}"
                elif amount > self.limit + 0.005:
                    approve, note = False, f"above my limit of {self.limit:.2f}"
                else:
                    approve, note = True, "approved"
                return call("decide_approval", approval_id=approval_id, approve=approve, note=note)
            if event.get("type") == "tool_result" and event.get("name") == "decide_approval":
                content = event.get("content") or {}
                if event.get("ok"):
                    return say(f"Request {content.get('approval_id')} is {content.get('status')}.")
                return say("I could not record my decision; please ask again.")
        return say("I have no pending request from you.")
