"""The random agent: random tool calls with random arguments, random chat, malformed text.

A floor for the data: it almost never solves a scenario. Seeded, so it is reproducible.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trajgym.agents.base import Agent, AgentContext
from trajgym.envs.actions import call, say
from trajgym.seeding import rng

PHRASES = (
    "Could you tell me more?", "I have processed that.", "Please hold.", "Thanks for waiting!",
    "What is your order number?", "Let me check.", "That is not possible.", "Goodbye!",
)
IDS = ("O1", "O2", "O3", "C1", "C2", "A1", "T1", "SKU-1", "M", "x")


class RandomAgent(Agent):
    kind = "random"

    def __init__(self, malformed: float = 0.2, tool: float = 0.5) -> None:
        super().__init__()
        self.p_malformed = malformed
        self.p_tool = tool

    def reset(self, ctx: AgentContext) -> None:
        self.rng: np.random.Generator = rng(ctx.seed, "random-agent", ctx.role)
        self.tools = ctx.tools

    def config(self) -> dict[str, Any]:
        return {"malformed": self.p_malformed, "tool": self.p_tool}

    def _value(self, schema: dict[str, Any]) -> Any:
        if "enum" in schema:
            return schema["enum"][int(self.rng.integers(len(schema["enum"])))]
        kinds = [s.get("type") for s in schema.get("anyOf", [schema])]
        kind = kinds[int(self.rng.integers(len(kinds)))]
        if kind == "number":
            return round(float(self.rng.uniform(0, 500)), 2)
        if kind == "integer":
            return int(self.rng.integers(0, 10))
        if kind == "boolean":
            return bool(self.rng.integers(2))
        if kind == "null":
            return None
        return IDS[int(self.rng.integers(len(IDS)))]

    def act(self, messages: list[dict[str, Any]], info: dict[str, Any]) -> str:
        r = self.rng.random()
        if r < self.p_malformed:
            n = int(self.rng.integers(1, 40))
            return "".join(chr(int(c)) for c in self.rng.integers(32, 127, size=n))
        if r < self.p_malformed + self.p_tool and self.tools:
            fn = self.tools[int(self.rng.integers(len(self.tools)))]["function"]
            props = fn["parameters"].get("properties", {})
            args = {k: self._value(v) for k, v in props.items() if self.rng.random() < 0.9}
            return call(fn["name"], args)
        return say(PHRASES[int(self.rng.integers(len(PHRASES)))])
