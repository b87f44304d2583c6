"""Trajectories per second for the quality filters: exact dedup, embedding dedup, diversity figures.

    python bench/dedup.py [--n 1000] [--device cpu]

Plays the built-in customer-support and workflow scenarios with the oracle and the random agent
(each variation once per agent, so the embedder's cache serves next to nothing), wraps them as
scored records, and times:

- exact dedup (normalized decision chains, hashed);
- embedding: every decision chain through all-MiniLM-L6-v2 on ``--device`` (the model's load is
  timed apart, once per process);
- clustering: the greedy near-duplicate search over the vectors, per group, per scenario and over
  the dataset, with how many near copies each scope finds;
- embedding + clustering, the number a ``dedup: {near: ...}`` step costs;
- the diversity figures (without and with embeddings, the latter from the cache).

``bench/score.py`` imports :func:`measure` and :func:`make_records` from here.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from itertools import count
from typing import TypeVar

from trajgym.filters import Embedder, diversity, exact_duplicates, near_duplicates
from trajgym.filters.dedup import DEFAULT_NEAR, Scope
from trajgym.rollout.episode import run_episode
from trajgym.rollout.runner import agents_for
from trajgym.scenario import builtin_scenarios
from trajgym.trajectory.schema import Trajectory
from trajgym.trajectory.scored import ScoredTrajectory, group_key
from trajgym.world.loader import load

DOMAINS = ("customer_support", "workflow")
T = TypeVar("T")


def make_records(n: int) -> list[ScoredTrajectory]:
    """``n`` scored records of real oracle and random rollouts, every one another variation; the
    total is the episode's reward (what the bench measures does not depend on it)."""
    templates = [load(p) for d in DOMAINS for p in builtin_scenarios(d).values()]
    out: list[ScoredTrajectory] = []
    for seed in count():
        for template in templates:
            for agent in ("oracle", "random"):
                if len(out) == n:
                    return out
                traj = Trajectory.model_validate(run_episode(template, seed, agents_for(template, agent)))
                total = 1.0 if traj.outcome.success else 0.0
                out.append(ScoredTrajectory(trajectory=traj, scores={}, total=total, success=traj.outcome.success,
                                            blame=None if traj.outcome.success else "agent", group=group_key(traj),
                                            rank=1))
    raise AssertionError("unreachable")


def _timed(fn: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def measure(n: int = 1000, *, device: str = "cpu", records: list[ScoredTrajectory] | None = None) -> dict[str, float]:
    """Seconds and trajectories/s of each part (see the module docstring), as a flat dict."""
    records = records if records is not None else make_records(n)
    n = len(records)
    trajs = [r.trajectory for r in records]
    out: dict[str, float] = {"trajectories": float(n)}
    _, out["exact_s"] = _timed(lambda: exact_duplicates(records, scope="dataset"))
    embedder = Embedder(device=device)
    _, out["model_load_s"] = _timed(lambda: embedder.model)
    cpu = time.process_time()
    vectors, out["embed_s"] = _timed(lambda: embedder.embed(trajs))
    out["embed_cpu_s"] = time.process_time() - cpu
    scopes: tuple[Scope, ...] = ("group", "scenario", "dataset")
    for scope in scopes:
        started = time.perf_counter()
        dups = near_duplicates(records, vectors=vectors, scope=scope)
        out[f"cluster_{scope}_s"] = time.perf_counter() - started
        out[f"near_copies_{scope}"] = float(len(dups))
    _, out["diversity_s"] = _timed(lambda: diversity(trajs))
    figures, out["diversity_cached_embeddings_s"] = _timed(lambda: diversity(trajs, embedder=embedder))
    out["embedding_spread"] = figures["embedding_spread"]
    for part in ("exact", "embed", "cluster_dataset", "diversity"):
        out[f"{part}_per_s"] = n / max(out[f"{part}_s"], 1e-9)
    out["embedding_dedup_per_s"] = n / (out["embed_s"] + out["cluster_dataset_s"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="trajectories (default 1000)")
    parser.add_argument("--device", default="cpu", help="torch device of the embedding model")
    args = parser.parse_args()
    started = time.perf_counter()
    records = make_records(args.n)
    print(f"{len(records)} trajectories played in {time.perf_counter() - started:.1f} s "
          f"({sum(len(r.trajectory.steps) for r in records) / len(records):.1f} steps each)")
    m = measure(records=records, device=args.device)
    print(f"exact dedup (dataset)                {m['exact_s']:8.3f} s  {m['exact_per_s']:10.0f} trajectories/s")
    print(f"embedding model load (once)          {m['model_load_s']:8.3f} s")
    print(f"embedding ({args.device})                      {m['embed_s']:8.3f} s  {m['embed_per_s']:10.1f} trajectories/s  "
          f"({m['embed_cpu_s'] / len(records) * 1000:.0f} ms of CPU each)")
    for scope in ("group", "scenario", "dataset"):
        print(f"near-dup clustering ({scope + ')':<9}          {m[f'cluster_{scope}_s']:8.3f} s  "
              f"{len(records) / max(m[f'cluster_{scope}_s'], 1e-9):10.0f} trajectories/s  "
              f"({m[f'near_copies_{scope}']:.0f} near copies at cos >= {DEFAULT_NEAR})")
    print(f"embedding dedup (embed + cluster)    {m['embed_s'] + m['cluster_dataset_s']:8.3f} s  "
          f"{m['embedding_dedup_per_s']:10.1f} trajectories/s")
    print(f"diversity figures                    {m['diversity_s']:8.3f} s  {m['diversity_per_s']:10.0f} trajectories/s")
    print(f"diversity + spread (cached vectors)  {m['diversity_cached_embeddings_s']:8.3f} s  "
          f"(embedding spread {m['embedding_spread']:.3f})")


if __name__ == "__main__":
    main()
