"""trajgym scenarios as TRL environments: train with TRL's GRPOTrainer on a trajgym world directly.

TRL's ``GRPOTrainer(environment_factory=...)`` (TRL 1.16, transformers >= 5.2) takes a class whose
instances have ``reset(**row)`` (returning text appended to the prompt), one method per tool the
model may call (typed arguments, a Google-style docstring: transformers turns them into the tool
schemas) and optionally ``get_reward()``. :func:`environment_class` builds that class for a scenario:

- ``reset(seed=..., trial=...)`` starts an episode of the scenario (the row's ``seed``, else a
  fresh one), lets the other roles (the simulated customer, the supervisor) act, and returns the
  learner's instructions and what came in (the customer's opening);
- each of the learner's tools is a method with the scenario's parameters; calling it runs the call
  through the fault layer and returns what the learner sees (an injected error included);
- ``reply(message)`` says something to the conversation partner; the partner's answer comes back as
  the result (the customer's next message), or a note that the conversation is over;
- ``get_reward()`` is the episode's reward from the scenario's goal (1 when it was met).

    from trl import GRPOConfig, GRPOTrainer
    from trajgym.trainers.trl_env import environment_class, prepare_tokenizer

    trainer = GRPOTrainer(model=..., args=GRPOConfig(..., max_steps=10),
                          processing_class=prepare_tokenizer(tokenizer),
                          environment_factory=environment_class("refund_damaged_item"))

The class plays the other roles with trajgym's scripted simulators (the Gymnasium view,
:class:`trajgym.rollout.gym_env.TrajgymGymEnv`).
"""

from __future__ import annotations

import inspect
import itertools
import json
import keyword
from typing import Any

from trajgym.errors import TrajgymError
from trajgym.rollout.gym_env import TrajgymGymEnv
from trajgym.trajectory.chat import REPLY_TOOL

_TYPES: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool, "array": list,
                          "object": dict}
_seeds = itertools.count(1)

RESPONSE_TEMPLATE: dict[str, Any] = {
    "defaults": {"role": "assistant"},
    "start_anchor": "<|im_start|>assistant\n",
    "fields": {
        "tool_calls": {"open": "<tool_call>", "close_pattern": r"</tool_call>\s*", "repeats": True, "content": "json",
                       "transform": {"type": "function", "function": "{content}"}},
        "content": {"close_pattern": r"<\|im_end\|>\s*", "content": "text"},
    },
}
"""How transformers parses an answer of trajgym's serving template (ChatML, Hermes ``<tool_call>`` blocks)
back into a message: TRL's tool loop needs it, and knows only the templates of the models it ships."""


def prepare_tokenizer(tokenizer: Any) -> Any:
    """Give ``tokenizer`` (of a model served with trajgym's chat template: the bundled SmolLM2, a
    model trajgym trained) the response template TRL's tool loop parses answers with; returned."""
    if getattr(tokenizer, "response_template", None) is None:
        tokenizer.response_template = RESPONSE_TEMPLATE
    return tokenizer


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "(no description)"


def _tool_method(spec: dict[str, Any]) -> Any:
    """A method calling the tool ``spec`` (an OpenAI function schema) with a signature and a
    Google-style docstring that transformers reads back into the same schema."""
    fn = spec["function"]
    name = fn["name"]
    params = fn.get("parameters") or {}
    props: dict[str, Any] = params.get("properties") or {}
    required = set(params.get("required") or [])
    for p in props:
        if not p.isidentifier() or keyword.iskeyword(p):
            raise TrajgymError(f"tool {name}: parameter {p!r} is no Python name, so it cannot be a method argument")

    def call(self: TrajgymEnvironment, **arguments: Any) -> str:
        return self._call(name, {k: v for k, v in arguments.items() if v is not None})

    parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    annotations: dict[str, Any] = {}
    ordered = sorted(props, key=lambda p: p not in required)  # required first: no default before them
    for p in ordered:
        kind = _TYPES.get(str(props[p].get("type")), str)
        annotations[p] = kind if p in required else kind | None
        parameters.append(inspect.Parameter(p, inspect.Parameter.KEYWORD_ONLY,
                                            default=inspect.Parameter.empty if p in required else None,
                                            annotation=annotations[p]))
    annotations["return"] = str
    call.__name__ = call.__qualname__ = name
    call.__signature__ = inspect.Signature(parameters, return_annotation=str)  # type: ignore[attr-defined]
    call.__annotations__ = annotations
    args = "".join(f"\n    {p}: {_one_line(props[p].get('description', p))}" for p in ordered)
    call.__doc__ = (f"{_one_line(fn.get('description', name))}\n" + (f"\nArgs:{args}\n" if args else "")
                    + "\nReturns:\n    The tool's answer as JSON text (an error object when the call failed).\n")
    return call


class TrajgymEnvironment:
    """The base of every scenario's class (see the module docstring); not used on its own."""

    scenario: str = ""
    learner: str = "support"

    def __init__(self) -> None:
        self.env = TrajgymGymEnv(self.scenario, learner=self.learner)
        self.reward = 0.0
        self.done = False

    def reset(self, **row: Any) -> str:
        """Start an episode (``seed`` and ``trial`` from the dataset row, when it has them) and return
        what the learner is told first."""
        seed = row.get("seed")
        self.env.reset(seed=int(seed) if seed is not None else next(_seeds) * 7919,
                                 options={"trial": int(row.get("trial", 0))})
        self.reward, self.done = 0.0, False
        return _text(self._drain())

    def _drain(self) -> list[dict[str, Any]]:
        episode = self.env.episode
        assert episode is not None
        messages, _ = episode.drain(self.learner)
        return messages

    def _act(self, action: dict[str, Any]) -> list[dict[str, Any]]:
        if self.done:
            return [{"role": "user", "content": "The conversation is over: nothing more can be done."}]
        _, reward, terminated, truncated, _ = self.env.step(json.dumps(action))
        self.done = bool(terminated or truncated)
        self.reward = float(reward)
        messages = self._drain()
        if self.done:
            messages.append({"role": "user", "content": "(the conversation has ended)"})
        return messages

    def _call(self, name: str, arguments: dict[str, Any]) -> str:
        action = {"role": "assistant", "content": None, "tool_calls": [
            {"id": f"call_{name}", "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}]}
        return _text(self._act(action))

    def get_reward(self) -> float:
        """The episode's reward for the learner (1.0 when the goal was met; 0 until the episode ends)."""
        return self.reward


def reply(self: TrajgymEnvironment, message: str) -> str:
    """Say something to the person you are helping and wait for their answer.

    Args:
        message: what to say.

    Returns:
        Their answer (or a note that the conversation has ended).
    """
    return _text(self._act({"role": "assistant", "content": message}))


def _text(messages: list[dict[str, Any]]) -> str:
    parts = []
    for m in messages:
        content = m.get("content")
        text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
        parts.append(text if m.get("role") in ("tool", "system") else f"[{m.get('role')}] {text}")
    return "\n".join(parts)


def environment_class(scenario: str, *, learner: str = "support") -> type[TrajgymEnvironment]:
    """A class for TRL's ``environment_factory`` that plays ``scenario`` (an id or a file) as
    ``learner``: its tools as methods, ``reply`` to talk, ``reset`` and ``get_reward``."""
    probe = TrajgymGymEnv(scenario, learner=learner)
    probe.reset(seed=0)
    assert probe.episode is not None
    specs = probe.episode.info(learner)["tools"]
    probe.close()
    methods: dict[str, Any] = {}
    for spec in specs:
        name = spec["function"]["name"]
        if name in (REPLY_TOOL, "reset", "get_reward") or name.startswith("_"):
            raise TrajgymError(f"scenario {scenario}: tool {name!r} clashes with the environment's own methods")
        methods[name] = _tool_method(spec)
    methods[REPLY_TOOL] = reply
    cls_name = "".join(w.capitalize() for w in probe.template.id.replace("-", "_").split("_")) + "Env"
    return type(cls_name, (TrajgymEnvironment,), {"scenario": scenario, "learner": learner, **methods,
                                                  "__doc__": f"trajgym scenario {probe.template.id} as a TRL "
                                                             f"environment ({learner} learns)."})
