"""Microseconds per env step and steps per second for scripted rollouts, trajectories recorded.

    python bench/env_step.py [--episodes N]

Plays the built-in scenarios of each domain with the oracle (and the random agent) as support and
the scripted customer/supervisor, builds each trajectory record and appends it to a JSONL file,
and reports the time per step of the whole loop (agents included). Target: under 200 us per step
for the in-memory worlds; the tool-use world is bound by its sandboxed processes.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import gymnasium as gym

import trajgym  # noqa: F401  (registers the envs)
from trajgym.agents import OracleAgent
from trajgym.agents.base import AgentContext
from trajgym.rollout.runner import plan, run
from trajgym.scenario import builtin_scenarios
from trajgym.world.loader import load


def bench_runner(agent: str, episodes: int, fsync: bool, domain: str = "customer_support") -> tuple[int, int, float]:
    templates = [load(p) for p in builtin_scenarios(domain).values()]
    units = plan(templates, episodes, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.jsonl"
        t0 = time.perf_counter()
        summary = run(units, out, support=agent, fsync=fsync)
        elapsed = time.perf_counter() - t0
        size = out.stat().st_size
    steps = sum(s.steps for s in summary.values())
    print(f"  ({size / len(units) / 1024:.1f} KiB of JSONL per episode)")
    return len(units), steps, elapsed


def bench_gym(episodes: int) -> tuple[int, int, float]:
    env = gym.make("trajgym/CustomerSupport-v0")
    steps = 0
    t0 = time.perf_counter()
    for seed in range(episodes):
        obs, info = env.reset(seed=seed)
        ep = env.unwrapped.episode
        oracle = OracleAgent()
        oracle.reset(AgentContext("support", ep.instance, info["tools"], ep.instance.seed))
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(oracle.act(json.loads(obs["messages"]), info))
            done = terminated or truncated
        steps += len(ep.steps)
    return episodes, steps, time.perf_counter() - t0


def report(name: str, episodes: int, steps: int, elapsed: float) -> None:
    print(f"{name:<44} {episodes:>6} episodes {steps:>7} steps  {elapsed * 1e6 / steps:8.1f} us/step  "
          f"{steps / elapsed:9.0f} steps/s  {episodes / elapsed:7.1f} episodes/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=40, help="variations per scenario")
    args = parser.parse_args()
    bench_runner("oracle", 2, False)  # warm-up: imports, scenario cache
    for agent in ("oracle", "random"):
        report(f"customer_support, {agent}, JSONL", *bench_runner(agent, args.episodes, False))
    report("customer_support, oracle, JSONL + fsync", *bench_runner("oracle", args.episodes // 4 or 1, True))
    report("workflow, oracle, JSONL", *bench_runner("oracle", args.episodes, False, "workflow"))
    # every tool call of this world runs a process in a bubblewrap sandbox
    report("tool_use, oracle, JSONL (sandboxed calls)", *bench_runner("oracle", 2, False, "tool_use"))
    report("gymnasium view, oracle learner (JSON obs)", *bench_gym(args.episodes * 5))


if __name__ == "__main__":
    main()
