"""Rollout token throughput vs vLLM's own serving benchmark, same server, same concurrency.

    python bench/vllm_rollout.py [--concurrency 1,16] [--duration 30] [--scenarios a,b,c]

Starts vLLM's OpenAI-compatible server on the bundled SmolLM2-135M (``VLLMServer``, CPU build in
``.venv-vllm``) and, for each concurrency level C:

1. rollout: a trajgym job (:func:`~trajgym.rollout.jobs.run_job`) with the ``openai`` agent as
   support (``tool_choice="required"``, strict tools, temperature 0.7, max_tokens 64) on a few
   customer-support scenarios (``limits.max_turns`` capped by ``--max-turns``, default 8: the small
   model rarely ends an episode itself), C episodes in flight. A pilot wave of C episodes (also the
   warm-up) sizes the measured run to whole waves of at least ``--duration`` seconds. Generated tokens/s = the sum over support
   steps of ``generation["usage"]["completion_tokens"]`` / wall time; requests/s likewise.
2. vLLM: ``vllm.benchmarks.serve`` (``add_cli_args`` + ``main``, run in the vLLM venv as a
   subprocess) with ``--dataset-name random``, ``--max-concurrency C``, ``--ignore-eos``, prompt
   length = the rollout's mean ``prompt_tokens`` and ``--random-output-len`` 64 (``--bench-output-len
   match`` uses the rollout's mean completion length instead), about ``--duration`` seconds of
   requests. With ``--bench-prefix match`` (default) the share of the prompt that the rollout got
   from vLLM's prefix cache becomes a shared ``--random-prefix-len``, the rest random tokens, so
   both sides do about the same prefill; ``none`` sends fully random prompts (all prefill).
   Its ``output_throughput`` is read from the saved JSON result.

It prints concurrency, rollout gen tok/s, vLLM bench output tok/s, their ratio (target >= 0.9) and
the mean prompt tokens, plus the server's prefix-cache hit rate in each phase (from ``/metrics``).

Not like for like, by design of the two workloads: the rollout's multi-turn prompts share long
prefixes (system prompt, tools, history), so vLLM's prefix cache skips most of their prefill, while
random prompts share none (``--bench-prefix match`` narrows this gap, it does not close it: the
rollout's hits grow turn by turn within an episode, the bench's come from one global prefix);
``tool_choice="required"`` makes vLLM constrain decoding
with a JSON-schema grammar, which the benchmark's requests do not; the rollout's completions stop
when the tool call closes (often before 64 tokens), so more of its time per token is prefill and
per-request overhead; and each rollout episode waits for its environment and scripted customer
between requests, so fewer than C requests may be in flight at some moments.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SCENARIOS = "order_status_inquiry,refund_damaged_item,cancel_processing_order,change_shipping_address"
SAMPLING = {"temperature": 0.7, "max_tokens": 64}

_BENCH_CODE = """
import argparse, json, sys
from vllm.benchmarks.serve import add_cli_args, main
parser = argparse.ArgumentParser()
add_cli_args(parser)
main(parser.parse_args(json.loads(sys.argv[1])))
"""


# ---------------------------------------------------------------------------------------------
# server metrics


def prefix_cache_counters(root_url: str) -> tuple[float, float] | None:
    """(queries, hits) of vLLM's prefix cache, in tokens, from ``/metrics``; None if unreadable."""
    try:
        with urllib.request.urlopen(f"{root_url}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    totals = {"queries": 0.0, "hits": 0.0}
    for line in text.splitlines():
        for kind in totals:
            if line.startswith(f"vllm:prefix_cache_{kind}_total"):
                totals[kind] += float(line.rsplit(" ", 1)[1])
    return totals["queries"], totals["hits"]


def hit_rate(before: tuple[float, float] | None, after: tuple[float, float] | None) -> float | None:
    if before is None or after is None or after[0] <= before[0]:
        return None
    return (after[1] - before[1]) / (after[0] - before[0])


# ---------------------------------------------------------------------------------------------
# the rollout side


def cap_turns(template: Any, max_turns: int) -> Any:
    """``template`` with ``limits.max_turns`` lowered to ``max_turns`` (the small model rarely ends an
    episode by itself, so episodes run to the limit: 30 turns, ~45 s each at C=1)."""
    data = template.located.data
    limits = {**(data.get("limits") or {})}
    limits["max_turns"] = min(max_turns, int(limits.get("max_turns", max_turns)))
    located = dataclasses.replace(template.located, data={**data, "limits": limits})
    spec = template.spec.model_copy(update={"limits": template.spec.limits.model_copy(update=limits)})
    return dataclasses.replace(template, located=located, spec=spec)


def rollout(templates: list[Any], base_url: str, model: str, *, concurrency: int, episodes: int,
            seed: int, out_dir: Path) -> dict[str, Any]:
    from trajgym.rollout.agentspec import AgentSpec
    from trajgym.rollout.jobs import run_job
    from trajgym.rollout.runner import plan

    per_scenario = max(1, math.ceil(episodes / len(templates)))
    by_scenario = [plan([t], per_scenario, seed) for t in templates]
    units = [u for wave in zip(*by_scenario, strict=True) for u in wave][:episodes]  # scenarios interleaved
    spec = AgentSpec.support("openai", base_url=base_url, model=model, tool_choice="required",
                             strict=True, sampling=dict(SAMPLING))
    out = out_dir / f"rollout-c{concurrency}-s{seed}.jsonl"
    gen_tokens = prompt_tokens = requests = 0
    ends: dict[str, int] = {}

    def on_episode(traj: dict[str, Any]) -> None:
        nonlocal gen_tokens, prompt_tokens, requests
        ends[traj["termination"]] = ends.get(traj["termination"], 0) + 1
        for step in traj["steps"]:
            usage = (step.get("generation") or {}).get("usage") if step["role"] == "support" else None
            if usage:
                requests += 1
                gen_tokens += int(usage.get("completion_tokens") or 0)
                prompt_tokens += int(usage.get("prompt_tokens") or 0)

    t0 = time.perf_counter()
    run_job(units, out, spec, concurrency=concurrency, on_episode=on_episode, fsync=False)
    wall = time.perf_counter() - t0
    return {"episodes": len(units), "wall": wall, "requests": requests, "gen_tokens": gen_tokens,
            "tok_s": gen_tokens / wall, "req_s": requests / wall,
            "mean_prompt": prompt_tokens / max(1, requests), "mean_completion": gen_tokens / max(1, requests),
            "ends": ends}


# ---------------------------------------------------------------------------------------------
# the vLLM side


def vllm_bench(vllm_python: Path, root_url: str, model: str, *, tokenizer: Path, concurrency: int,
               input_len: int, prefix_len: int, output_len: int, num_prompts: int, seed: int, result_dir: Path,
               log: Path) -> dict[str, Any]:
    name = f"bench-c{concurrency}-s{seed}.json"
    args = [
        "--backend", "openai-chat", "--base-url", root_url, "--endpoint", "/v1/chat/completions",
        "--model", model, "--tokenizer", str(tokenizer),
        "--dataset-name", "random", "--random-input-len", str(input_len), "--random-prefix-len", str(prefix_len),
        "--random-output-len", str(output_len), "--num-prompts", str(num_prompts),
        "--max-concurrency", str(concurrency), "--ignore-eos", "--seed", str(seed),
        "--temperature", str(SAMPLING["temperature"]), "--disable-tqdm",
        "--save-result", "--result-dir", str(result_dir), "--result-filename", name,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with log.open("ab") as fh:
        fh.write(f"\n==== vllm bench: {' '.join(args)}\n".encode())
        fh.flush()
        proc = subprocess.run([str(vllm_python), "-c", _BENCH_CODE, json.dumps(args)], stdout=fh,
                              stderr=subprocess.STDOUT, env=env, timeout=900, check=False)
    path = result_dir / name
    if proc.returncode != 0 or not path.is_file():
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"vLLM benchmark failed (exit {proc.returncode}); log {log}:\n{tail}")
    result = json.loads(path.read_text())
    return {"tok_s": float(result["output_throughput"]), "req_s": float(result.get("request_throughput", 0.0)),
            "wall": float(result.get("duration", 0.0)), "completed": result.get("completed"),
            "num_prompts": num_prompts, "input_len": input_len, "prefix_len": prefix_len,
            "output_len": output_len}


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", default="1,16", help="comma-separated levels (default 1,16)")
    parser.add_argument("--duration", type=float, default=30.0,
                        help="target seconds of each measured phase (default 30)")
    parser.add_argument("--scenarios", default=DEFAULT_SCENARIOS,
                        help="comma-separated built-in customer_support scenario ids")
    parser.add_argument("--bench-output-len", default="64",
                        help="vLLM bench --random-output-len: a number, or 'match' (the rollout's mean completion)")
    parser.add_argument("--max-turns", type=int, default=8,
                        help="cap on the scenarios' limits.max_turns, to keep episodes short (0: as written)")
    parser.add_argument("--bench-prefix", choices=["match", "none"], default="match",
                        help="match: give the bench prompts a shared prefix (--random-prefix-len) of the rollout's "
                             "prefix-cache hit share of its mean prompt; none: fully random prompts")
    parser.add_argument("--max-model-len", type=int, default=8192)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="folder for logs and results (default: a temp dir)")
    ns = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the server is stopped on kill too

    from trajgym.scenario import builtin_scenarios
    from trajgym.serving.convert import convert_bundled_model
    from trajgym.serving.server import VLLMServer, find_vllm_python
    from trajgym.world.loader import load

    levels = [int(x) for x in ns.concurrency.split(",") if x.strip()]
    known = builtin_scenarios("customer_support")
    names = [s.strip() for s in ns.scenarios.split(",") if s.strip()]
    missing = [s for s in names if s not in known]
    if missing:
        parser.error(f"unknown scenario(s) {missing}; choose from {', '.join(known)}")
    templates = [cap_turns(load(known[s]), ns.max_turns) if ns.max_turns else load(known[s]) for s in names]
    out_dir = ns.out or Path(tempfile.mkdtemp(prefix="trajgym-vllm-rollout-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    bench_log = out_dir / "vllm-bench.log"
    model_dir = convert_bundled_model()
    vllm_python = find_vllm_python()
    print(f"output in {out_dir}", flush=True)

    rows = []
    t_start = time.perf_counter()
    with VLLMServer(model_dir, max_model_len=ns.max_model_len, log_path=out_dir / "vllm-server.log") as server:
        print(f"server up at {server.base_url} in {time.perf_counter() - t_start:.0f} s", flush=True)
        model = server.served_model_name
        for i, c in enumerate(levels):
            # pilot (also the warm-up): C episodes, about one episode's time at this concurrency
            pilot = rollout(templates, server.base_url, model, concurrency=c, episodes=c,
                            seed=ns.seed + 1000 * i + 1, out_dir=out_dir)
            waves = max(1, math.ceil(ns.duration / max(pilot["wall"], 1e-3)))
            before = prefix_cache_counters(server.root_url)
            ro = rollout(templates, server.base_url, model, concurrency=c, episodes=c * waves,
                         seed=ns.seed + 1000 * i + 2, out_dir=out_dir)
            ro["cache_hit"] = hit_rate(before, prefix_cache_counters(server.root_url))
            print(f"C={c} rollout: {ro['episodes']} episodes, {ro['requests']} requests in {ro['wall']:.1f} s, "
                  f"{ro['tok_s']:.1f} gen tok/s, {ro['req_s']:.2f} req/s, prompt {ro['mean_prompt']:.0f} / "
                  f"completion {ro['mean_completion']:.1f} tokens per request, ends {ro['ends']}", flush=True)

            out_len = max(1, round(ro["mean_completion"])) if ns.bench_output_len == "match" else int(ns.bench_output_len)
            shared = (ro["cache_hit"] or 0.0) if ns.bench_prefix == "match" else 0.0
            prefix_len = round(ro["mean_prompt"] * shared)
            in_len = max(1, round(ro["mean_prompt"]) - prefix_len)
            num_prompts = max(2 * c, round(ns.duration * ro["tok_s"] / out_len))
            before = prefix_cache_counters(server.root_url)
            vb = vllm_bench(vllm_python, server.root_url, model, tokenizer=model_dir, concurrency=c, input_len=in_len,
                            prefix_len=prefix_len,
                            output_len=out_len, num_prompts=num_prompts, seed=ns.seed + i,
                            result_dir=out_dir, log=bench_log)
            vb["cache_hit"] = hit_rate(before, prefix_cache_counters(server.root_url))
            print(f"C={c} vLLM bench: {vb['completed']} requests x {prefix_len}+{in_len} in / {out_len} out in {vb['wall']:.1f} s, "
                  f"{vb['tok_s']:.1f} output tok/s, {vb['req_s']:.2f} req/s", flush=True)
            rows.append((c, ro, vb))

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.0f}%"

    print(f"\ntotal {time.perf_counter() - t_start:.0f} s; server log {out_dir / 'vllm-server.log'}\n")
    header = (f"{'C':>3} | {'rollout gen tok/s':>17} | {'rollout req/s':>13} | {'vLLM bench out tok/s':>20} | "
              f"{'ratio':>5} | {'mean prompt tok':>15} | {'mean compl tok':>14} | {'prefix hit ro/bench':>19}")
    print(header)
    print("-" * len(header))
    for c, ro, vb in rows:
        ratio = ro["tok_s"] / vb["tok_s"] if vb["tok_s"] else float("nan")
        print(f"{c:>3} | {ro['tok_s']:>17.1f} | {ro['req_s']:>13.2f} | {vb['tok_s']:>20.1f} | {ratio:>5.2f} | "
              f"{ro['mean_prompt']:>15.0f} | {ro['mean_completion']:>14.1f} | "
              f"{pct(ro['cache_hit']) + ' / ' + pct(vb['cache_hit']):>19}")
    print("\ntarget: ratio >= 0.9 (see the module docstring for why the workloads differ)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
