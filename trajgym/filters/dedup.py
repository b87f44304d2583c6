"""Exact and near-duplicate removal: of each set of copies, keep the best-scored episode.

Two episodes are **exact duplicates** when their normalized decision chains are equal
(:func:`trajgym.filters.decisions.chain_hash`), and **near duplicates** when the cosine similarity of
their chains' embeddings (:class:`trajgym.filters.embed.Embedder`) is at least a threshold: the same
decisions with the messages reworded. What the customer said never counts (see
:mod:`trajgym.filters.decisions`).

Copies are looked for within a ``scope``: the trials of one scenario variation (``group``, the
default: the same task with the same values), every episode of a scenario (``scenario``) or the
whole dataset (``dataset``). Episodes are visited best first (highest ``total``, then best ``rank``,
then file order; excluded episodes last): each is kept unless it is a copy of one already kept, so
the best of each cluster stays and a chain of ever-so-slightly different episodes cannot drag in
one that is far from every kept episode.

On all-MiniLM-L6-v2 embeddings of real episodes (``tests/filters/test_near_dedup.py``), an episode
and copies of it with every agent message reworded are 0.96-0.98 similar, while episodes of the same
variation that decided otherwise (a hand-over instead of a refund, the random agent) are 0.82 or
less: :data:`DEFAULT_NEAR` sits between. Across variations the values differ, but often barely:
the oracle's episodes of two seeds of one built-in scenario are 0.58-1.0 similar (a workflow's
step ids are the same in every seed), and the random agent's episodes look alike whatever the
task. So with ``scope: scenario`` an episode that differs from a better one only in its drawn
values is a copy (thinning a dataset of near-identical runs), and ``scope: dataset`` also merges
episodes of different tasks whose decisions read alike.

Only episodes that share their scope with another one are embedded: with ``scope: group``, a
variation played once costs nothing.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from trajgym.filters.decisions import DEFAULT_ROLES, chain_hash
from trajgym.filters.embed import Embedder, Vectors
from trajgym.trajectory.scored import ScoredTrajectory

log = logging.getLogger(__name__)

Scope = Literal["group", "scenario", "dataset"]
"""Where copies are looked for: one scenario variation, one scenario, or everywhere."""

DEFAULT_NEAR = 0.9
"""Default cosine similarity at or above which two decision chains are near duplicates."""

CHUNK = 512
"""Episodes compared with the kept ones in one matrix product."""


@dataclass(frozen=True)
class Duplicate:
    """Record ``index`` is a copy of the kept record ``of`` (indices into the input list)."""

    index: int
    of: int
    similarity: float
    """1.0 for an exact duplicate, else the cosine similarity of the two chains' embeddings."""


def best_first(records: Sequence[ScoredTrajectory]) -> list[int]:
    """Indices of ``records``, best first: highest total, then best rank, then file order;
    excluded (unscored) records last."""
    def key(i: int) -> tuple[bool, float, bool, int, int]:
        r = records[i]
        return (r.total is None, -(r.total or 0.0), r.rank is None, r.rank or 0, i)

    return sorted(range(len(records)), key=key)


def scope_key(record: ScoredTrajectory, scope: Scope) -> str:
    """The set of episodes ``record`` is compared with."""
    if scope == "group":
        return record.group
    if scope == "scenario":
        return record.trajectory.scenario_id
    return ""


def _buckets(records: Sequence[ScoredTrajectory], scope: Scope) -> list[list[int]]:
    """Indices per scope, each bucket best first."""
    out: dict[str, list[int]] = defaultdict(list)
    for i in best_first(records):
        out[scope_key(records[i], scope)].append(i)
    return list(out.values())


def exact_duplicates(records: Sequence[ScoredTrajectory], *, scope: Scope = "group",
                     roles: Sequence[str] = DEFAULT_ROLES) -> list[Duplicate]:
    """Records whose normalized decision chain equals that of a better one in their scope."""
    out: list[Duplicate] = []
    for bucket in _buckets(records, scope):
        first: dict[str, int] = {}
        for i in bucket:
            h = chain_hash(records[i].trajectory, roles)
            if h in first:
                out.append(Duplicate(i, first[h], 1.0))
            else:
                first[h] = i
    return sorted(out, key=lambda d: d.index)


def greedy_clusters(vectors: Vectors, order: Sequence[int], threshold: float) -> list[Duplicate]:
    """Visit ``order`` (indices into the unit ``vectors``); keep each one whose similarity to every
    kept one is below ``threshold``, else report it as a duplicate of its most similar kept one."""
    kept: list[int] = []
    out: list[Duplicate] = []
    for start in range(0, len(order), CHUNK):
        chunk = list(order[start: start + CHUNK])
        block = vectors[chunk]
        best_prev = np.zeros(len(chunk), dtype=np.intp)
        sim_prev = np.full(len(chunk), -2.0, dtype=np.float32)
        if kept:
            against = block @ vectors[kept].T
            best_prev = against.argmax(axis=1)
            sim_prev = against[np.arange(len(chunk)), best_prev]
        inside = block @ block.T
        kept_here: list[int] = []  # positions in chunk
        for j, i in enumerate(chunk):
            best, sim = -1, -2.0
            if sim_prev[j] >= threshold:
                best, sim = kept[int(best_prev[j])], float(sim_prev[j])
            if kept_here:
                k = int(np.argmax(inside[j, kept_here]))
                s = float(inside[j, kept_here[k]])
                if s >= threshold and s > sim:
                    best, sim = chunk[kept_here[k]], s
            if best >= 0:
                out.append(Duplicate(i, best, min(sim, 1.0)))
            else:
                kept_here.append(j)
        kept += [chunk[j] for j in kept_here]
    return out


def near_duplicates(records: Sequence[ScoredTrajectory], *, threshold: float = DEFAULT_NEAR,
                    scope: Scope = "group", roles: Sequence[str] = DEFAULT_ROLES,
                    embedder: Embedder | None = None, vectors: Vectors | None = None) -> list[Duplicate]:
    """Records whose decision chain embeds within ``threshold`` cosine similarity of a better kept
    one in their scope (see the module docstring). ``vectors`` (one unit row per record) skips the
    embedding; otherwise ``embedder`` (default: a new :class:`Embedder`) embeds the chains."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"a near-duplicate threshold is a cosine similarity in (0, 1], not {threshold}")
    buckets = [b for b in _buckets(records, scope) if len(b) > 1]
    if not buckets:
        return []
    if vectors is None:
        needed = sorted(i for b in buckets for i in b)
        embedded = (embedder or Embedder()).embed([records[i].trajectory for i in needed], roles)
        vectors = np.zeros((len(records), embedded.shape[1]), dtype=np.float32)
        vectors[needed] = embedded
    if len(vectors) != len(records):
        raise ValueError(f"{len(vectors)} vectors for {len(records)} records")
    out: list[Duplicate] = []
    for bucket in buckets:
        out += greedy_clusters(vectors, bucket, threshold)
    log.info("near-duplicate search (cos >= %.3f, scope %s): %d of %d episodes are copies",
             threshold, scope, len(out), len(records))
    return sorted(out, key=lambda d: d.index)
