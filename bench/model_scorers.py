"""The model-based scorers on the bundled SmolLM2-135M: reward-model trajectories/s, judge s/trajectory.

    python bench/model_scorers.py [--n 17] [--skip-judge] [--skip-reward-model]

Plays the built-in customer-support scenarios with the oracle and the random agent (``--n``
trajectories, half each), then:

- ``reward_model``: SmolLM2 loaded as a one-logit sequence classifier (a fresh, untrained head: the
  speed is real, the scores are not) scores them in batches on the CPU, in float32 and bfloat16, at
  two ``max_length`` values; trajectories/s and tokens/s, after one warm-up batch;
- ``llm_judge``: vLLM (CPU, ``.venv-vllm``) serves SmolLM2 and judges one half of them one at a
  time and the other half all at once (after one warm-up verdict, which compiles the verdict's
  grammar); seconds per trajectory, prompt and verdict tokens per trajectory.

Needs ``make hf-setup`` (and ``make vllm-setup`` for the judge).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from trajgym.agents.openai_agent import close_connections
from trajgym.rollout.episode import run_episode
from trajgym.rollout.runner import agents_for
from trajgym.scenario import builtin_scenarios
from trajgym.scorers.base import ScoringContext
from trajgym.scorers.llm_judge import LLMJudge
from trajgym.scorers.reward_model import RewardModel
from trajgym.serving import VLLMServer, convert_bundled_model
from trajgym.trajectory.schema import Trajectory
from trajgym.world.loader import load


def trajectories(n: int) -> list[Trajectory]:
    templates = [load(p) for p in builtin_scenarios("customer_support").values()]
    out = []
    for i in range(n):
        template = templates[(i // 2) % len(templates)]
        agent = "oracle" if i % 2 == 0 else "random"
        out.append(Trajectory.model_validate(run_episode(template, i, agents_for(template, agent))))
    return out


def bench_reward_model(trajs: list[Trajectory]) -> None:
    model = convert_bundled_model()
    print(f"reward_model: SmolLM2-135M as a sequence classifier, {len(trajs)} trajectories, CPU")
    print(f"{'dtype':>9} {'max_length':>10} {'batch':>5} {'tokens/traj':>11} {'traj/s':>7} {'tokens/s':>8}")
    for dtype in ("float32", "bfloat16"):
        for max_length in (1024, 2048):
            scorer = RewardModel(model=str(model), num_labels=1, max_length=max_length, batch_size=8,
                                 dtype=dtype)  # type: ignore[arg-type]
            scorer.score_batch(trajs[:2])  # load, warm up
            t0 = time.perf_counter()
            results = scorer.score_batch(trajs)
            elapsed = time.perf_counter() - t0
            tokens = sum(r.details["tokens"] for r in results if r is not None)
            print(f"{dtype:>9} {max_length:>10} {8:>5} {tokens / len(trajs):>11.0f} {len(trajs) / elapsed:>7.2f} "
                  f"{tokens / elapsed:>8.0f}", flush=True)


async def _judge(scorer: LLMJudge, trajs: list[Trajectory], at_once: bool) -> tuple[float, list[Any]]:
    ctx = ScoringContext()
    t0 = time.perf_counter()
    try:
        if at_once:
            results = list(await asyncio.gather(*(scorer.ascore(t, ctx) for t in trajs)))
        else:
            results = [await scorer.ascore(t, ctx) for t in trajs]
    finally:
        await close_connections()
    return time.perf_counter() - t0, results


def bench_judge(trajs: list[Trajectory]) -> None:
    model = convert_bundled_model()
    with VLLMServer(model, max_model_len=8192) as server:
        scorer = LLMJudge(base_url=server.base_url, max_tokens=256)
        asyncio.run(_judge(scorer, trajs[:1], at_once=False))  # warm up (grammar compilation)
        half = len(trajs) // 2  # each half judged once: no transcript is in vLLM's prefix cache yet
        print(f"llm_judge: SmolLM2-135M on vLLM CPU, {half} trajectories each way, structured output")
        print(f"{'in flight':>9} {'s/traj':>7} {'wall s':>7} {'prompt tok':>10} {'verdict tok':>11} {'repairs':>7}")
        for at_once, part in ((False, trajs[1:half + 1]), (True, trajs[half + 1:2 * half + 1])):
            seconds, results = asyncio.run(_judge(scorer, part, at_once))
            usage = [r.details["usage"] for r in results]
            print(f"{len(part) if at_once else 1:>9} {seconds / len(part):>7.2f} {seconds:>7.1f} "
                  f"{statistics.mean(u['prompt_tokens'] for u in usage):>10.0f} "
                  f"{statistics.mean(u['completion_tokens'] for u in usage):>11.0f} "
                  f"{sum(r.details['repairs'] for r in results):>7}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=17, help="trajectories (half oracle, half random)")
    ap.add_argument("--skip-judge", action="store_true")
    ap.add_argument("--skip-reward-model", action="store_true")
    args = ap.parse_args()
    trajs = trajectories(args.n)
    if not args.skip_reward_model:
        bench_reward_model(trajs)
    if not args.skip_judge:
        bench_judge(trajs)


if __name__ == "__main__":
    main()
