"""The scripted customer: opens with the scenario's request, answers what it is asked with its
private facts, changes its mind when the scenario says so, and ends the chat once it has been told
what it wanted to hear, or asks for a human when its patience runs out."""

from __future__ import annotations

from typing import Any

from trajgym.agents.base import Agent, AgentContext, support_messages
from trajgym.envs.actions import call, say
from trajgym.scenario.schema import Fact, GoalChange

RESTATE = {
    "calm": "Sorry, I still need help with this. {opening}",
    "angry": "This is getting ridiculous. {opening}",
    "confused": "I'm sorry, I don't quite follow. {opening}",
    "hurried": "I'm in a hurry, please. {opening}",
}
HOLD_WORDS = ("moment", "hold on", "please wait", "bear with", "one sec")
HANDOVER_WORDS = ("transferring you", "transfer you", "connect you with", "hand you over")


class ScriptedCustomer(Agent):
    """Plays the scenario's ``customer`` section. Deterministic."""

    kind = "scripted_customer"

    def __init__(self) -> None:
        super().__init__()
        self.persona: dict[str, Any] | None = None
        """The persona played (the scenario's), recorded so a job can report its mix."""

    def reset(self, ctx: AgentContext) -> None:
        spec = ctx.instance.spec
        if spec.customer is None:
            raise ValueError(f"scenario {spec.id} has no customer section")
        self.spec = spec.customer
        self.persona = spec.customer.persona.model_dump()
        self.faults = spec.faults
        self.wants: list[Fact] = list(spec.goal.tell)
        self.told: set[str] = set()
        self.patience = spec.customer.patience
        self.opened = False

    def act(self, messages: list[dict[str, Any]], info: dict[str, Any]) -> str:
        if not self.opened:
            self.opened = True
            return say(self.spec.opening)
        parts: list[str] = []
        for event in info.get("events", []):
            if event.get("type") == "goal_change":
                change = self.faults[event["fault"]["index"]]
                if isinstance(change, GoalChange):
                    self.wants, self.told = list(change.goal.tell), set()
                parts.append(event["message"])
        text = support_messages(messages, "support").lower()
        for fact in self.wants:
            if any(s.lower() in text for s in fact.any_of):
                self.told.add(fact.name)
        answers = [f.says for f in self.spec.facts if any(k.lower() in text for k in f.keywords)]
        satisfied = all(f.name in self.told for f in self.wants) if self.wants else "?" not in text
        if satisfied and not parts:  # told everything it wanted: done, whatever else was asked
            if any(w in text for w in HANDOVER_WORDS):  # let the agent hand the chat over
                return say("Okay, thank you. I'll wait for your colleague.")
            return call("end_conversation", reason="my request is handled")
        parts += answers
        if parts:
            return say(" ".join(parts))
        self.patience -= 1
        if self.patience < 0:
            return call("request_human", reason="no progress")
        if any(w in text for w in HOLD_WORDS):
            return say("Okay, I'll wait.")
        return say(RESTATE[self.spec.persona.mood].format(opening=self.spec.opening))
