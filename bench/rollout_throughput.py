"""Episodes per second of model-agent rollouts against an OpenAI-compatible server, vs a bare loop.

    python bench/rollout_throughput.py [--latency 0.2] [--levels 10,100,1000] [--waves 3]

Starts a fake OpenAI-compatible server (aiohttp, a subprocess on 127.0.0.1) whose every answer
takes ``--latency`` seconds and is a valid assistant message with token ids and logprobs like
vLLM's. Its support policy ends an episode of ``refund_damaged_item`` after 4 calls: ask for the
details (the scripted customer answers), get_order, find_customer, transfer_to_human.

For each concurrency level it plays ``level * waves`` episodes with ``aplay`` (real envs, an
:class:`OpenAIAgent` as support, trajectories built with ``to_trajectory`` + ``json.dumps``) under
an ``asyncio.Semaphore(level)``, and, in the same run, a bare asyncio + aiohttp loop sending the
same request bodies, encoded once (4 sequential calls per "episode"), as the ceiling. It reports episodes/s,
the requests in flight achieved (Little's law: requests x mean latency / wall time) and the
memory per live episode (tracemalloc peak over one wave of ``level`` live episodes). The largest
level is run again with the garbage collector tuned (see :func:`set_gc`): with a thousand live
episodes CPython's default thresholds make full collections a large part of the client's time.

Targets: >= 90% of the bare loop's episodes/s at 1,000 in flight; < 200 KB per live episode.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import time
import tracemalloc
from typing import Any

CALLS_PER_EPISODE = 4


# ---------------------------------------------------------------------------------------------
# the server (run as a subprocess: ``--serve``)


def _reply(n: int) -> bytes:
    """The n-th support answer of an episode (n = assistant messages already in the request)."""
    calls = [None, ("get_order", {"order_id": "O1"}), ("find_customer", {"email": "x@example.com"}),
             ("transfer_to_human", {"summary": "benchmark episode"})]
    message: dict[str, Any] = {"role": "assistant", "content": None}
    if n == 0:
        message["content"] = "Sorry about that! Could you give me your email, ZIP code and order number?"
    else:
        name, args = calls[min(n, 3)]  # type: ignore[misc]
        message["tool_calls"] = [{"id": f"chatcmpl-tool-{n}", "type": "function",
                                  "function": {"name": name, "arguments": json.dumps(args)}}]
    token_ids = list(range(100, 124))
    return json.dumps({
        "id": f"chatcmpl-{n}", "object": "chat.completion", "model": "bench",
        "prompt_token_ids": list(range(1000, 1600)),
        "choices": [{"index": 0, "message": message, "token_ids": token_ids,
                     "finish_reason": "tool_calls" if n else "stop",
                     "logprobs": {"content": [{"token": "t", "logprob": -0.5, "bytes": None,
                                               "top_logprobs": []} for _ in token_ids]}}],
        "usage": {"prompt_tokens": 600, "completion_tokens": 24, "total_tokens": 624},
    }).encode()


def serve(latency: float) -> None:
    from aiohttp import web

    replies = [_reply(n) for n in range(4)]

    async def chat(request: web.Request) -> web.Response:
        body = await request.read()
        n = body.count(b'"role": "assistant"')
        await asyncio.sleep(latency)
        return web.Response(body=replies[min(n, 3)], content_type="application/json")

    async def main() -> None:
        app = web.Application(client_max_size=16 * 2**20)
        app.router.add_post("/v1/chat/completions", chat)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(port, flush=True)
        await asyncio.Event().wait()

    try:
        import uvloop
        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


# ---------------------------------------------------------------------------------------------
# the client


async def agent_level(template: Any, base_url: str, level: int, episodes: int, seed0: int, *,
                      bodies: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    from trajgym.agents import OpenAIAgent, ScriptedCustomer
    from trajgym.envs.core import Episode
    from trajgym.rollout.episode import aplay, to_trajectory

    sem = asyncio.Semaphore(level)
    latencies: list[float] = []
    sizes = 0
    ends: dict[str, int] = {}

    async def one(seed: int) -> None:
        nonlocal sizes
        async with sem:
            support = OpenAIAgent(base_url=base_url, model="bench", retries=3, timeout_s=60,
                                  sampling={"temperature": 1.0, "max_tokens": 256})
            agents = {"support": support, "customer": ScriptedCustomer()}
            episode = await aplay(Episode.start(template, seed), agents)
            traj = to_trajectory(episode, agents)
            sizes += len(json.dumps(traj))
            for step in traj["steps"]:
                gen = step["generation"]
                if step["role"] == "support" and gen:
                    latencies.append(gen["wall_latency_ms"] / 1000)
            ends[traj["termination"]] = ends.get(traj["termination"], 0) + 1
            if bodies is not None and not bodies:
                bodies.extend(_requests_of(traj, support))

    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(seed0 + i) for i in range(episodes)))
    wall = time.perf_counter() - t0
    cpu = (time.process_time() - c0) / episodes
    return {"wall": wall, "eps": episodes / wall, "inflight": sum(latencies) / wall, "cpu": cpu,
            "requests": len(latencies), "bytes": sizes / episodes, "ends": ends}


def _requests_of(traj: dict[str, Any], agent: Any) -> list[dict[str, Any]]:
    """The 4 request bodies of one episode, rebuilt from its history (for the bare loop)."""
    history = agent.history
    cuts = [i for i, m in enumerate(history) if m["role"] == "assistant"]
    return [{"model": "bench", "messages": history[:i], "temperature": 1.0, "max_tokens": 256,
             "logprobs": True, "return_token_ids": True} for i in cuts]


async def bare_level(base_url: str, level: int, episodes: int, bodies: list[dict[str, Any]],
                     tools: list[dict[str, Any]]) -> dict[str, Any]:
    from trajgym.agents.openai_agent import client_session

    session = client_session()
    url = f"{base_url}/chat/completions"
    sem = asyncio.Semaphore(level)
    latencies: list[float] = []
    encoded = [json.dumps({**body, "tools": tools, "tool_choice": "auto"}).encode() for body in bodies]
    headers = {"Content-Type": "application/json"}

    async def one() -> None:
        async with sem:
            for body in encoded:
                t = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as resp:
                    data = json.loads(await resp.text())
                    assert data["choices"]
                latencies.append(time.perf_counter() - t)

    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one() for _ in range(episodes)))
    wall = time.perf_counter() - t0
    cpu = (time.process_time() - c0) / episodes
    return {"wall": wall, "eps": episodes / wall, "inflight": sum(latencies) / wall, "cpu": cpu}


async def memory_per_episode(template: Any, base_url: str, level: int) -> float:
    await agent_level(template, base_url, min(level, 10), min(level, 10), 10**6)  # warm caches
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    await agent_level(template, base_url, level, level, 2 * 10**6)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return (peak - base) / level


def set_gc(mode: str) -> None:
    """``tuned``: the long-lived objects (modules, scenario templates) frozen out of the
    collector and a gen-0 threshold of 20,000, so a thousand live episodes do not trigger a full
    collection every few milliseconds; ``default``: CPython's settings."""
    if mode == "tuned":
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 50, 100)
    else:
        gc.unfreeze()
        gc.set_threshold(700, 10, 10)


async def main_async(args: argparse.Namespace, base_url: str) -> None:
    from trajgym.agents.openai_agent import close_client_session
    from trajgym.envs.core import Episode
    from trajgym.scenario import builtin_scenarios, load

    template = load(builtin_scenarios()["refund_damaged_item"])
    tools = Episode.start(template, 0).tool_schemas["support"]
    bodies: list[dict[str, Any]] = []
    await agent_level(template, base_url, 10, 10, 0, bodies=bodies)  # warm-up; records the bodies
    assert len(bodies) == CALLS_PER_EPISODE, len(bodies)
    rows = []
    runs = [(level, "default") for level in args.levels]
    if args.tuned_gc:
        runs.append((max(args.levels), "tuned"))
    for level, gc_mode in runs:
        set_gc(gc_mode)
        n = level * args.waves
        bare = await bare_level(base_url, level, n, bodies, tools)
        agent = await agent_level(template, base_url, level, n, 10_000 * level)
        mem = await memory_per_episode(template, base_url, level)
        rows.append((level, gc_mode, agent, bare, mem))
        assert agent["ends"] == {"transferred_to_human": n}, agent["ends"]
    set_gc("default")
    await close_client_session()
    ideal = 1 / (CALLS_PER_EPISODE * args.latency)
    print(f"\nrefund_damaged_item, {CALLS_PER_EPISODE} support calls of {args.latency * 1000:.0f} ms per "
          f"episode (ideal {ideal:.2f} episodes/s per slot), {args.waves} waves per level\n")
    head = (f"{'in flight':>9} | {'gc':>7} | {'episodes':>8} | {'agent ep/s':>10} | {'bare ep/s':>9} | {'agent/bare':>10} | "
            f"{'req in flight (agent/bare)':>26} | {'client CPU ms/ep (agent/bare)':>29} | {'KB/live episode':>15} | {'traj KB':>7}")
    print(head)
    print("-" * len(head))
    for level, gc_mode, agent, bare, mem in rows:
        print(f"{level:>9} | {gc_mode:>7} | {level * args.waves:>8} | {agent['eps']:>10.1f} | {bare['eps']:>9.1f} | "
              f"{agent['eps'] / bare['eps']:>9.0%} | {agent['inflight']:>12.0f} / {bare['inflight']:<11.0f} | "
              f"{agent['cpu'] * 1000:>14.2f} / {bare['cpu'] * 1000:<12.2f} | "
              f"{mem / 1024:>15.1f} | {agent['bytes'] / 1024:>7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",")], default=[10, 100, 1000])
    parser.add_argument("--waves", type=int, default=3)
    parser.add_argument("--no-tuned-gc", dest="tuned_gc", action="store_false",
                        help="skip the extra row at the largest level with the collector tuned")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.latency)
        return
    proc = subprocess.Popen([sys.executable, __file__, "--serve", "--latency", str(args.latency)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        asyncio.run(main_async(args, f"http://127.0.0.1:{port}/v1"))
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
