"""Trajectories scored per second: the rule-based scorers, and the embedding dedup.

    python bench/score.py [--episodes 10] [--scorers CONFIG.yaml] [--workers N] [--skip-dedup]

Plays every built-in customer-support and workflow scenario ``--episodes`` times with the oracle
and with the random agent (real trajectories, with faults and failures), then times
``trajgym score`` on them (``score_files``: reading, validating, every scorer, totals, ranks,
writing) with the default rule-based scorers, or the ``--scorers`` config, per scorer and all
together in one process, then all together in ``--workers`` processes (``trajgym score``'s default:
one per usable CPU). Besides trajectories per second (best of 3 runs), it prints the CPU time per
trajectory (least of 3, workers included), which other jobs on a shared machine inflate far less.
Then times the embedding near-duplicate filter over the same trajectories
(``bench/dedup.py`` has the details), unless ``--skip-dedup``.

Target: over 1,000 trajectories per second for the rule-based scorers on this machine (2 cores).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from trajgym.cli.score import usable_cpus
from trajgym.rollout.agentspec import AgentSpec
from trajgym.rollout.jobs import run_job
from trajgym.rollout.runner import plan
from trajgym.scenario import builtin_scenarios
from trajgym.scorers.config import ScoringConfig, build_scorers, load_scoring_config
from trajgym.scorers.pipeline import Scoring, score_files
from trajgym.trajectory.scored import iter_scored
from trajgym.world.loader import load


def make_trajectories(folder: Path, episodes: int) -> list[Path]:
    templates = [load(p) for domain in ("customer_support", "workflow") for p in builtin_scenarios(domain).values()]
    files = []
    for agent in ("oracle", "random"):
        out = folder / f"{agent}.jsonl"
        run_job(plan(templates, episodes, seed=1), out, AgentSpec.support(agent), fsync=False)
        files.append(out)
    return files


def rate(files: list[Path], out: Path, config: ScoringConfig, workers: int = 1,
         repeats: int = 3) -> tuple[int, float, float]:
    """(trajectories, best trajectories/s, least CPU ms per trajectory) over ``repeats`` runs; the
    CPU time is this process's and its workers', so it does not depend on what else the machine runs."""
    best = 0.0
    cpu = float("inf")
    n = 0
    for _ in range(repeats):
        scoring = Scoring(config, build_scorers(config))
        t0, c0 = time.perf_counter(), os.times()
        summary = score_files(files, out, scoring, workers=workers)
        elapsed, c1 = time.perf_counter() - t0, os.times()
        n = summary.scored + summary.excluded
        best = max(best, n / elapsed)
        used = c1.user + c1.system + c1.children_user + c1.children_system - (
            c0.user + c0.system + c0.children_user + c0.children_system)
        cpu = min(cpu, used / n * 1000)
    return n, best, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=10, help="variations per scenario and agent")
    ap.add_argument("--scorers", help="scorer config (default: the rule-based default)")
    ap.add_argument("--workers", type=int, default=usable_cpus(),
                    help="processes for the whole set, as trajgym score --workers (default: the usable CPUs)")
    ap.add_argument("--skip-dedup", action="store_true")
    args = ap.parse_args()
    config, _ = load_scoring_config(args.scorers)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {usable_cpus()} usable CPUs", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        files = make_trajectories(folder, args.episodes)
        print(f"rollouts: {time.perf_counter() - t0:.1f} s", flush=True)
        out = folder / "scored.jsonl"
        n, one_rate, one_cpu = rate(files, out, config)
        size = sum(f.stat().st_size for f in files) / n / 1024
        print(f"{n} trajectories ({size:.1f} KiB each on average)")
        print(f"{'scorers':<30} {'traj/s':>8} {'CPU ms/traj':>12}")
        for name, entry in config.scorers.items():
            one = ScoringConfig.model_validate({"scorers": {name: entry.model_dump()}, "success_from": name})
            _, r, c = rate(files, out, one)
            print(f"{name:<30} {r:>8.0f} {c:>12.2f}", flush=True)
        label = f"all ({len(config.scorers)} scorers)"
        print(f"{label + ', 1 process':<30} {one_rate:>8.0f} {one_cpu:>12.2f}", flush=True)
        all_rate = one_rate
        if args.workers > 1:
            _, all_rate, many_cpu = rate(files, out, config, workers=args.workers)
            print(f"{label + f', {args.workers} workers':<30} {all_rate:>8.0f} {many_cpu:>12.2f}")
        verdict = "meets" if all_rate > 1000 else "MISSES"
        print(f"target > 1000 traj/s: {verdict}; one core's worth of CPU scores {1000 / one_cpu:.0f} traj/s")
        if not args.skip_dedup:
            from dedup import measure  # bench/dedup.py, beside this file

            records = list(iter_scored(out))
            print(f"\nembedding dedup (bench/dedup.py) over these {len(records)} scored trajectories:", flush=True)
            for name, value in measure(len(records), records=records).items():
                print(f"  {name:<40} {value:>10.1f}")


if __name__ == "__main__":
    main()
