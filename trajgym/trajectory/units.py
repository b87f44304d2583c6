"""Work units and the one rule for "the line that counts" of each.

A work unit is one episode to play: ``(scenario_id, seed, trial, policy)``. The policy is who
played (:func:`policy_id`), so a file holding the oracle's and a model's episodes on the same seeds
holds two units per seed, never one shadowing the other. A job appends a unit's episode when it
ends; a resumed job plays again the units whose only lines ended in ``infra_error``, so a unit may
have several lines. The one that counts (:func:`counting`) is the unit's latest line that did not
end in ``infra_error``, else its latest ``infra_error`` line (kept so a scorer or a report can count
the unit as an infrastructure failure).

    >>> a = policy_id([{"role": "support", "kind": "oracle", "name": "oracle", "model": None,
    ...                 "weights_id": None, "config": {}}])
    >>> a == policy_id([{"role": "support", "kind": "oracle", "name": "oracle", "config": {}}])
    True
    >>> a == policy_id([{"role": "support", "kind": "random", "name": "random", "config": {}}])
    False
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import orjson

from trajgym.seeding import stable_seed


class UnitKey(NamedTuple):
    """A work unit's stable key: the same fields of its trajectory."""

    scenario_id: str
    seed: int
    trial: int
    policy: str


IDENTITY_KEYS = ("role", "kind", "name", "model", "weights_id", "config")
"""What makes an agent's identity (:class:`~trajgym.trajectory.schema.AgentRecord`'s fields): how
it was reached (``transport``) and the persona drawn for one episode are not part of it."""


def policy_id(agents: Iterable[Mapping[str, Any]]) -> str:
    """A stable 12-hex id of who played: every agent's identity (:data:`IDENTITY_KEYS`), in role order."""
    identities = sorted(({k: agent.get(k) for k in IDENTITY_KEYS} for agent in agents),
                        key=lambda a: str(a["role"]))
    text = orjson.dumps(identities, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)
    return hashlib.blake2b(text, digest_size=6).hexdigest()


def episode_id(scenario_id: str, seed: int, trial: int, policy: str) -> str:
    """A deterministic episode id, unique per work unit: ``<scenario>-<13 hex>``."""
    return f"{scenario_id}-{stable_seed('episode', scenario_id, seed, trial, policy):016x}"[: len(scenario_id) + 14]


def unit_key(trajectory: Mapping[str, Any]) -> UnitKey:
    """The key of the work unit an episode played (a trajectory line as a dict, version 2)."""
    return UnitKey(trajectory["scenario_id"], trajectory["seed"], trajectory["trial"], trajectory["policy"])


def group_key(scenario_id: str, seed: int) -> str:
    """The scenario variation ``<scenario_id>@<seed>``: its trials and policies are ranked together."""
    return f"{scenario_id}@{seed}"


class Head(NamedTuple):
    """What picks a line: its unit and how it ended (and where its scenario is, for scorers; the turn
    limit it ran under, for a resumed job)."""

    key: UnitKey
    infra: bool
    episode_id: str
    scenario_path: str
    scenario_hash: str
    max_turns: int | None = None
    schema_version: int = 2
    """The schema the line was written in (a schema 1 line is read upgraded)."""


def counting(heads: Iterable[tuple[int, Head]]) -> list[tuple[int, Head]]:
    """The lines that count, one per unit, as (line number, head) in the order of the file: each
    unit's latest line that did not end in ``infra_error``, else its latest ``infra_error`` line."""
    chosen: dict[UnitKey, tuple[int, Head]] = {}
    for n, head in heads:
        held = chosen.get(head.key)
        if held is None or not head.infra or held[1].infra:
            chosen[head.key] = (n, head)
    return sorted(chosen.values(), key=lambda line: line[0])


def finished(heads: Iterable[tuple[int, Head]]) -> Iterator[tuple[int, Head]]:
    """The lines that count and did not end in ``infra_error`` (the units a resumed job skips)."""
    return ((n, h) for n, h in counting(heads) if not h.infra)
