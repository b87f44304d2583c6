"""Reading trajectory schema version 1: each line upgraded in memory to version 2, never rewritten.

What a version 1 line lacks, and what the upgrade puts there:

- ``policy``: computed from its agents as version 2 computes it; ``episode_id`` is derived again
  with it (version 1 ids repeat across policies on the same seeds); ``job_id`` stays unknown (None).
- agents: the settings of how a server was reached (``base_url``, timeouts, retries, device) move
  from ``config`` to ``transport``, a customer's drawn ``persona`` to its own field, and a model
  agent that offered the reply tool lists it in ``extra_tools``.
- generations: the version 1 record stored each turn's whole prompt; version 2 keeps what is new
  since the previous turn (``prompt_from``, ``prompt_ids``) where the prompt extends it, and
  records a chain break where it does not (version 1 agents re-rendered their history, so it often
  did not).
- ``scenario_path``: a path to a shipped scenario becomes ``builtin:<domain>/<file>``: a relative one
  (the scenario given as a path), or an absolute one into a trajgym checkout or install that is
  not here (version 1 recorded a scenario given by its id as the absolute path of its file).
- ``tools``: version 1 did not record the tools offered; the upgrade leaves it empty.
"""

from __future__ import annotations

from typing import Any

from trajgym.scenario.catalog import builtin_ref
from trajgym.trajectory.chat import REPLY_SPEC
from trajgym.trajectory.tokens import extend_chain
from trajgym.trajectory.units import episode_id, policy_id

TRANSPORT_KEYS = ("base_url", "timeout_s", "retries", "device")
"""Version 1 agent config keys that say how a model was reached, not what it does."""

_GENERATION_KEYS = ("backend", "model", "sampling", "tool_choice", "token_ids", "logprobs", "finish_reason",
                    "tool_call_format", "raw_content", "response_id", "prefill", "wall_latency_ms")


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """A version 1 trajectory line (decoded) as a version 2 one. Raises ValueError if it is none."""
    if data.get("schema_version") != 1:
        raise ValueError(f"not a version 1 trajectory (schema_version {data.get('schema_version')!r})")
    for key in ("agents", "steps", "scenario_id", "seed", "trial", "scenario_path"):
        if key not in data:
            raise ValueError(f"version 1 trajectory without '{key}'")
    try:
        agents = [_agent(a) for a in data["agents"]]
        policy = policy_id(agents)
        chains: dict[str, list[int]] = {}
        steps = [_step(s, chains) for s in data["steps"]]
    except KeyError as exc:
        raise ValueError(f"version 1 trajectory with an agent or step without {exc}") from None
    except (TypeError, AttributeError) as exc:
        raise ValueError(f"version 1 trajectory with a malformed agent or step ({exc})") from None
    out = dict(data)
    out.update(schema_version=2, agents=agents, policy=policy, steps=steps, job_id=None, tools={},
               episode_id=episode_id(data["scenario_id"], data["seed"], data["trial"], policy),
               scenario_path=_scenario_path(str(data["scenario_path"])))
    return out


def _agent(agent: dict[str, Any]) -> dict[str, Any]:
    config = dict(agent.get("config") or {})
    transport = {k: config.pop(k) for k in TRANSPORT_KEYS if k in config}
    persona = config.pop("persona", None)
    extra = [REPLY_SPEC] if config.get("reply_tool") else []
    return {"role": agent["role"], "name": agent["name"], "kind": agent["kind"], "model": agent.get("model"),
            "weights_id": None, "config": config, "transport": transport,
            "persona": persona if isinstance(persona, dict) and persona else None, "extra_tools": extra}


def _step(step: dict[str, Any], chains: dict[str, list[int]]) -> dict[str, Any]:
    gen = step.get("generation")
    if not isinstance(gen, dict):
        return step
    return {**step, "generation": _generation(gen, chains.setdefault(step["role"], []))}


def _generation(gen: dict[str, Any], chain: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {k: gen.get(k) for k in _GENERATION_KEYS}
    backend = gen.get("backend")
    out["sampling"] = dict(gen.get("sampling") or {})
    if gen.get("seed") is not None:  # the hf agent's per-call seed
        out["sampling"]["seed"] = gen["seed"]
    out.update(weights_id=None, loop_generation=None,
               api={"openai": "chat", "hf": "local"}.get(str(backend)),
               logprobs_mode=gen.get("logprobs_mode") or ("raw" if backend == "openai" else None),
               literal="opening" if gen.get("opening") else "goal_change" if gen.get("goal_change") else None,
               prompt_from=None, prompt_ids=None, chain_break=None, usage=_usage(gen.get("usage")))
    prompt, completion = gen.get("prompt_token_ids"), gen.get("token_ids")
    if isinstance(prompt, list):
        start, new, why = extend_chain(chain, prompt)
        out.update(prompt_from=start, prompt_ids=new,
                   chain_break=why and f"{why} (schema 1: agents re-rendered their history)")
        chain[:] = [*prompt, *(completion or [])]
    else:  # no prompt ids: the next turn starts the chain over, as a version 2 agent records it
        chain.clear()
    return out


def _usage(usage: Any) -> dict[str, int | None] | None:
    if not isinstance(usage, dict):
        return None
    return {k: usage.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}


def _scenario_path(path: str) -> str:
    """A path that names a shipped scenario file becomes its ``builtin:`` reference
    (:func:`~trajgym.scenario.catalog.builtin_ref`): a relative one, or an absolute one into a
    trajgym install or checkout that is not on this machine. Any other path is kept."""
    if path.startswith("builtin:"):
        return path
    return builtin_ref(path) or path
