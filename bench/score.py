"""Trajectories scored per second: the rule-based scorers, and the embedding dedup.

    python bench/score.py [--episodes 10] [--scorers CONFIG.yaml] [--skip-dedup]

Plays every built-in customer-support and workflow scenario ``--episodes`` times with the oracle
and with the random agent (real trajectories, with faults and failures), then times
``trajgym score`` on them (``score_files``: reading, validating, every scorer, totals, ranks,
writing) with the default rule-based scorers, or the ``--scorers`` config, per scorer and all
together. Then times the embedding near-duplicate filter over the same trajectories
(``bench/dedup.py`` has the details), unless ``--skip-dedup``.

Target: over 1,000 trajectories per second for the rule-based scorers on this machine (2 cores).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from trajgym.rollout.jobs import AgentSpec, run_job
from trajgym.rollout.runner import plan
from trajgym.scenario import builtin_scenarios, load
from trajgym.scorers.config import ScoringConfig, build_scorers, load_scoring_config
from trajgym.scorers.pipeline import Scoring, iter_scored, score_files


def make_trajectories(folder: Path, episodes: int) -> list[Path]:
    templates = [load(p) for domain in ("customer_support", "workflow") for p in builtin_scenarios(domain).values()]
    files = []
    for agent in ("oracle", "random"):
        out = folder / f"{agent}.jsonl"
        run_job(plan(templates, episodes, seed=1), out, AgentSpec.support(agent), fsync=False)
        files.append(out)
    return files


def rate(files: list[Path], out: Path, config: ScoringConfig, repeats: int = 3) -> tuple[int, float]:
    """(trajectories, best trajectories/s over ``repeats`` runs)."""
    best = 0.0
    n = 0
    for _ in range(repeats):
        scoring = Scoring(config, build_scorers(config))
        t0 = time.perf_counter()
        summary = score_files(files, out, scoring)
        elapsed = time.perf_counter() - t0
        n = summary.scored + summary.excluded
        best = max(best, n / elapsed)
    return n, best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=10, help="variations per scenario and agent")
    ap.add_argument("--scorers", help="scorer config (default: the rule-based default)")
    ap.add_argument("--skip-dedup", action="store_true")
    args = ap.parse_args()
    config, _ = load_scoring_config(args.scorers)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        files = make_trajectories(folder, args.episodes)
        print(f"rollouts: {time.perf_counter() - t0:.1f} s", flush=True)
        out = folder / "scored.jsonl"
        n, all_rate = rate(files, out, config)
        size = sum(f.stat().st_size for f in files) / n / 1024
        print(f"{n} trajectories ({size:.1f} KiB each on average)")
        print(f"{'scorers':<24} {'traj/s':>10}")
        for name, entry in config.scorers.items():
            one = ScoringConfig.model_validate({"scorers": {name: entry.model_dump()}, "success_from": name})
            print(f"{name:<24} {rate(files, out, one)[1]:>10.0f}", flush=True)
        verdict = "meets" if all_rate > 1000 else "MISSES"
        print(f"{'all (' + str(len(config.scorers)) + ' scorers)':<24} {all_rate:>10.0f}   "
              f"target > 1000 traj/s: {verdict}")
        if not args.skip_dedup:
            from dedup import measure  # bench/dedup.py, beside this file

            records = list(iter_scored(out))
            print(f"\nembedding dedup (bench/dedup.py) over these {len(records)} scored trajectories:", flush=True)
            for name, value in measure(len(records), records=records).items():
                print(f"  {name:<40} {value:>10.1f}")


if __name__ == "__main__":
    main()
