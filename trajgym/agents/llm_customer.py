"""A customer played by a chat model: the scenario's persona, opening, private facts and goal.

It opens with the scenario's request, reveals a fact only when asked for it, changes its mind
when a ``customer_goal_change`` fault fires (from that turn on its prompt holds the new request and
what it now wants to hear), and ends the chat with an explicit signal: the ``end_conversation``
tool once it has been told what it wanted to hear, or ``request_human`` when it gives up. The
persona (name, mood, language, expertise) may be drawn from a pool under the episode seed; the
persona used is recorded in its trajectory's agent record (``persona``), so a job can report its mix.

In the customer's view the support agent's messages arrive as user messages and the customer's
own as assistant messages; the env's first system message (written for the scenario's own
persona) is replaced by this agent's prompt.
"""

from __future__ import annotations

from typing import Any, Literal

from trajgym.agents.base import AgentContext
from trajgym.agents.chat import generation
from trajgym.agents.openai_agent import OpenAIAgent
from trajgym.envs.actions import say
from trajgym.scenario.schema import Fact, GoalChange
from trajgym.seeding import rng

MOOD_STYLE = {
    "calm": "polite and patient",
    "angry": "annoyed and short-tempered, but you stay on topic",
    "confused": "unsure of the details and you ask for clarification",
    "hurried": "in a hurry; you write short messages",
}
EXPERTISE_STYLE = {
    "novice": "You are not comfortable with technology or jargon.",
    "average": "",
    "expert": "You know how online shops work and use precise terms.",
}
PERSONA_KEYS = ("name", "mood", "language", "expertise")

PROMPT = """You are {name}, a customer chatting with a company's support desk. You are {mood_style}. {expertise_style}
Write in the language '{language}'. Write only what you would type in the chat, one short message at a time.

Your request: {request}

What you know. Say each item only when the support agent asks for it, never all at once unprompted:
{facts}

What you want to hear before you are satisfied:
{goal}

When your request is handled and you were told what you wanted, call the end_conversation tool.
If the agent cannot help you after several tries, call the request_human tool.
Never pretend to be the support agent and never invent facts you were not given."""

CHANGED_REQUEST = """{message}
(You first asked: "{opening}" Then you changed your mind: you now want what you just said instead.)"""


class LLMCustomer(OpenAIAgent):
    """The customer role played by a model behind an OpenAI-compatible server.

    Extra args: ``persona_pool`` (a list of persona dicts, one drawn per episode), or ``moods`` /
    ``languages`` / ``expertise`` (each a list, one drawn per episode and field);
    ``literal_opening`` (default True) sends the scenario's opening verbatim as the first message
    when the persona's language is the scenario's, else the model writes it; ``literal_change``
    (default True) does the same with a goal change's message on the turn it fires.
    """

    kind = "llm_customer"

    def __init__(self, *, persona_pool: list[dict[str, Any]] | None = None,
                 moods: list[str] | None = None, languages: list[str] | None = None,
                 expertise: list[str] | None = None, literal_opening: bool = True,
                 literal_change: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("sampling", {"temperature": 0.7})
        super().__init__(**kwargs)
        self.persona_pool = [dict(p) for p in persona_pool or []]
        self.pools = {"mood": list(moods or []), "language": list(languages or []),
                      "expertise": list(expertise or [])}
        self.literal_opening = literal_opening
        self.literal_change = literal_change
        self.opened = False

    def config(self) -> dict[str, Any]:
        out = super().config()
        out.update(literal_opening=self.literal_opening, literal_change=self.literal_change)
        if self.persona_pool:
            out["persona_pool"] = self.persona_pool
        out.update({k: v for k, v in self.pools.items() if v})
        return out

    def draw_persona(self, base: dict[str, Any], seed: int) -> dict[str, Any]:
        """The scenario's persona with the pool's overrides, drawn under ``seed``."""
        persona = dict(base)
        gen = rng(seed, "llm_customer", "persona")
        if self.persona_pool:
            pick = self.persona_pool[int(gen.integers(len(self.persona_pool)))]
            persona.update({k: v for k, v in pick.items() if k in PERSONA_KEYS})
        for key, options in self.pools.items():
            if options:
                persona[key] = options[int(gen.integers(len(options)))]
        return persona

    def reset(self, ctx: AgentContext) -> None:
        super().reset(ctx)
        spec = ctx.instance.spec
        if spec.customer is None:
            raise ValueError(f"scenario {spec.id} has no customer section")
        self.spec = spec.customer
        base = self.spec.persona.model_dump()
        self.persona = self.draw_persona(base, ctx.seed)
        self.persona_changed = self.persona.get("language") != base.get("language")
        self.faults = spec.faults
        self.system_prompt = self.prompt(spec.goal.tell)
        self.history = [{"role": "system", "content": self.system_prompt}]
        self.opened = False
        self.first = True

    def prompt(self, wants: list[Fact], change: str | None = None) -> str:
        """The system prompt: the persona, the request (changed to ``change`` after a change of
        mind), the private facts and ``wants``, what the customer wants to hear."""
        facts = "\n".join(f"- {f.says}" for f in self.spec.facts) or "- (nothing special)"
        goal = "\n".join(f"- {f.name} (e.g. {' or '.join(f.any_of)})" for f in wants)
        request = self.spec.opening if change is None else CHANGED_REQUEST.format(
            message=change, opening=self.spec.opening)
        persona = self.persona or {}
        return PROMPT.format(
            name=persona["name"], mood_style=MOOD_STYLE.get(persona["mood"], persona["mood"]),
            expertise_style=EXPERTISE_STYLE.get(persona["expertise"], ""),
            language=persona["language"], request=request, facts=facts,
            goal=goal or "- that your request was handled")

    def change_goal(self, info: dict[str, Any]) -> str | None:
        """Follow a ``goal_change`` event among ``info``'s: a new system prompt from now on. Returns
        the change-of-mind message, or None when no goal changed."""
        for event in info.get("events", []):
            if event.get("type") != "goal_change":
                continue
            change = self.faults[event["fault"]["index"]]
            if not isinstance(change, GoalChange):
                raise ValueError(f"goal_change event for fault {event['fault']['index']}, which is a {change.kind}")
            self.system_prompt = self.prompt(change.goal.tell, event["message"])
            self.replace_message(0, {"role": "system", "content": self.system_prompt})
            return str(event["message"])
        return None

    def observe(self, messages: list[dict[str, Any]]) -> None:
        if self.first:  # the env's own instructions assume the scenario's persona: ours replace it
            self.first = False
            messages = messages[1:] if messages and messages[0].get("role") == "system" else messages
        super().observe(messages)

    async def aact(self, messages: list[dict[str, Any]], info: dict[str, Any]) -> str:
        self.observe(messages)
        if not self.opened:
            self.opened = True
            if self.literal_opening and not self.persona_changed:
                return self.say_literally(self.spec.opening, "opening")
        change = self.change_goal(info)
        if change is not None and self.literal_change and not self.persona_changed:
            return self.say_literally(change, "goal_change")
        return await self.generate(info)

    def say_literally(self, text: str, literal: Literal["opening", "goal_change"]) -> str:
        """Say the scenario's own words (no model call); the step's generation says which."""
        self.history.append({"role": "assistant", "content": text})
        self.generation = generation("scripted", model=self.model, weights_id=self.weights_id, literal=literal)
        return say(text)
