"""Diversity figures of a set of episodes: how many different things the agent did.

- ``episodes``;
- ``distinct_decision_chains``: distinct action-name sequences
  (:func:`trajgym.filters.decisions.action_names`, e.g. ``find_customer verify_identity get_order
  refund_order say``), and ``distinct_chain_share``, that count over the episodes;
- ``action_<n>gram_entropy_bits`` for n = 1, 2, 3: the Shannon entropy, in bits, of the action
  n-grams pooled over the episodes (n-grams never cross from one episode into the next). 0 when
  every n-gram is the same; log2(k) when k n-grams are equally frequent;
- ``embedding_spread`` (only with an :class:`~trajgym.filters.embed.Embedder`): the mean cosine
  distance, 1 - cos, between the decision-chain embeddings of every two episodes. 0 for copies;
  different episodes of the built-in scenarios are about 0.2-0.5 apart.

:func:`diversity` has the signature and keys of the report's diversity function
(:data:`trajgym.report.aggregate.DiversityFn`), so
``write_report(..., diversity=functools.partial(diversity, embedder=Embedder()))`` adds the spread.

    >>> round(entropy({"a": 2, "b": 1, "c": 1}), 3)
    1.5
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from trajgym.filters.decisions import DEFAULT_ROLES, action_names
from trajgym.filters.embed import Embedder, Vectors
from trajgym.trajectory.schema import Trajectory
from trajgym.trajectory.scored import ScoredTrajectory

MAX_N = 3
Episodes = Sequence[Trajectory | ScoredTrajectory]


def entropy(counts: Mapping[Any, int]) -> float:
    """Shannon entropy in bits of the distribution given by ``counts`` (0 for an empty one)."""
    total = sum(counts.values())
    if total == 0:
        return 0.0
    return max(0.0, -sum(c / total * math.log2(c / total) for c in counts.values() if c > 0))


def ngrams(sequences: Iterable[Sequence[str]], n: int) -> Counter[tuple[str, ...]]:
    """Counts of the n-grams of each sequence (a sequence shorter than n has none)."""
    if n < 1:
        raise ValueError(f"n-grams need n >= 1, not {n}")
    out: Counter[tuple[str, ...]] = Counter()
    for seq in sequences:
        out.update(tuple(seq[i: i + n]) for i in range(len(seq) - n + 1))
    return out


def ngram_entropy(sequences: Iterable[Sequence[str]], n: int) -> float:
    """Entropy in bits of the n-grams pooled over ``sequences``."""
    return entropy(ngrams(sequences, n))


def embedding_spread(vectors: Vectors) -> float:
    """Mean cosine distance between every two of the unit ``vectors`` (0 for fewer than two)."""
    n = len(vectors)
    if n < 2:
        return 0.0
    total = vectors.astype(np.float64).sum(axis=0)
    mean_cos = (float(total @ total) - n) / (n * (n - 1))
    return min(2.0, max(0.0, 1.0 - mean_cos))


def trajectory_of(episode: Trajectory | ScoredTrajectory) -> Trajectory:
    """The trajectory of an episode given bare or as a scored record."""
    return episode.trajectory if isinstance(episode, ScoredTrajectory) else episode


def _figures(chains: list[list[str]], vectors: Vectors | None) -> dict[str, float]:
    distinct = len({tuple(c) for c in chains})
    out: dict[str, float] = {
        "episodes": float(len(chains)),
        "distinct_decision_chains": float(distinct),
        "distinct_chain_share": distinct / len(chains) if chains else 0.0,
    }
    for n in range(1, MAX_N + 1):
        out[f"action_{n}gram_entropy_bits"] = ngram_entropy(chains, n)
    if vectors is not None:
        out["embedding_spread"] = embedding_spread(vectors)
    return out


def diversity(episodes: Episodes, *, embedder: Embedder | None = None,
              roles: Sequence[str] = DEFAULT_ROLES) -> dict[str, float]:
    """The diversity figures of ``episodes`` (trajectories or scored records) as a flat dict, see
    the module docstring; ``embedding_spread`` only when an ``embedder`` is given."""
    trajs = [trajectory_of(e) for e in episodes]
    vectors = embedder.embed(trajs, roles) if embedder is not None else None
    return _figures([action_names(t, roles) for t in trajs], vectors)


def diversity_by_scenario(episodes: Episodes, *, embedder: Embedder | None = None,
                          roles: Sequence[str] = DEFAULT_ROLES) -> dict[str, Any]:
    """``{"overall": figures, "per_scenario": {scenario_id: figures}}`` (figures as in
    :func:`diversity`), embedding every episode once."""
    trajs = [trajectory_of(e) for e in episodes]
    chains = [action_names(t, roles) for t in trajs]
    vectors = embedder.embed(trajs, roles) if embedder is not None else None
    rows: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(trajs):
        rows[t.scenario_id].append(i)
    return {
        "overall": _figures(chains, vectors),
        "per_scenario": {sid: _figures([chains[i] for i in its], vectors[its] if vectors is not None else None)
                         for sid, its in sorted(rows.items())},
    }
