"""Episodes per second of model-agent rollouts against an OpenAI-compatible server, vs a bare loop.

    python bench/rollout_throughput.py [--latency 0.2] [--levels 10,100,1000] [--waves 3]

Starts a fake OpenAI-compatible server (a minimal HTTP/1.1 responder on asyncio, a subprocess on
127.0.0.1, about 0.04 ms of CPU per request: the cores it shares with the client stay the
client's) whose every answer takes ``--latency`` seconds and is a valid assistant message with token ids and logprobs like
vLLM's (``GET /v1/models`` is answered at once, as vLLM does: a job asks it once per process for the served
model and its weights). Its support policy ends an episode of ``refund_damaged_item`` after 4 calls: ask for the
details (the scripted customer answers), get_order, find_customer, transfer_to_human.

For each concurrency level it plays ``level * waves`` episodes with
:func:`trajgym.rollout.jobs.arun_job`, the path ``trajgym rollout`` runs (real envs, an
:class:`OpenAIAgent` as support, every trajectory recorded and appended to a JSONL file with its
fsync), and, in the same run and on the same event loop, a bare asyncio + aiohttp loop sending
the same request bodies (encoded once; 4 sequential calls per "episode", each answer decoded) as
the ceiling, once with the job in one process and once in two (``--workers``: the job's process
and a worker share the concurrency and take units as they have room; the bare loop is one process). The bare loop runs before and
after the job's runs, and the better of its two runs is the ceiling; it runs under the same
garbage-collector settings as the job
(:func:`trajgym.rollout.runtime.collector_tuned`). It reports episodes/s, the requests in flight
achieved (Little's law: requests x mean latency / wall time), the client's CPU time per episode
(the job's process and its workers, which report theirs) and the memory per live episode
(tracemalloc peak over one wave of ``level`` episodes, divided by the most that were live at once:
under tracemalloc the episodes start slower, and the first may end before the last start). The fork server that workers are
forked from is started first, as ``trajgym rollout --workers`` does; its imports are not timed, as
the job's own are not.

The server shares the machine's cores with the client: on a small machine the numbers move with
whatever else runs (the load average before the run is printed).

Targets: >= 90% of the bare loop's episodes/s at 1,000 in flight; < 200 KB per live episode.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

CALLS_PER_EPISODE = 4
ASSISTANT = re.compile(rb'"role"\s*:\s*"assistant"')


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


class _Responder(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection of the fake server: each ``POST`` (``Content-Length``
    body) is answered after the latency with the reply for the number of assistant messages it
    holds. Requests on a connection are answered in order (a client sends one at a time)."""

    def __init__(self, replies: list[bytes], latency: float) -> None:
        self.replies = replies
        self.latency = latency
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15:head.find(b"\r\n", at) if head.find(b"\r\n", at) > 0 else None]) if at >= 0 else 0
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4:end + 4 + length]
            self.buffer = self.buffer[end + 4 + length:]
            if head.startswith(b"get "):  # GET /v1/models, which vLLM answers at once (no generation)
                self._send(self.replies[-1])
                continue
            reply = self.replies[min(len(ASSISTANT.findall(body)), 3)]
            asyncio.get_running_loop().call_later(self.latency, self._send, reply)

    def _send(self, reply: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def serve(latency: float) -> None:
    """The fake server: a minimal HTTP/1.1 responder on asyncio's protocols, with every answer's
    bytes (status line, headers, JSON) built once, so it takes as little of the shared cores as it
    can (about 4x less than an aiohttp server); a real model server runs on its own hardware."""
    replies = []
    models = json.dumps({"object": "list", "data": [{"id": "bench", "object": "model", "root": "bench",
                                                       "max_model_len": 8192}]}).encode()
    for body in [*(_reply(n) for n in range(4)), models]:
        replies.append(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                       + str(len(body)).encode() + b"\r\n\r\n" + body)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Responder(replies, latency), "127.0.0.1", 0, backlog=4096)
        print(server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()

    try:
        import uvloop
        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


# ---------------------------------------------------------------------------------------------
# the client


def _support(base_url: str) -> Any:
    from trajgym.rollout.agentspec import AgentSpec

    return AgentSpec.support("openai", base_url=base_url, model="bench", retries=3, timeout_s=60,
                             sampling={"temperature": 1.0, "max_tokens": 256})


async def agent_level(template: Any, base_url: str, level: int, episodes: int, seed0: int, *,
                      out_dir: Path, workers: int = 1) -> dict[str, Any]:
    """``episodes`` units played by ``arun_job`` with ``level`` in flight (in ``workers``
    processes), appended to a file."""
    from trajgym.rollout.jobs import arun_job
    from trajgym.rollout.runner import WorkUnit
    from trajgym.trajectory.store import iter_episodes

    units = [WorkUnit(template, seed0 + i) for i in range(episodes)]
    out = out_dir / f"agent-{level}-{seed0}.jsonl"
    t0, c0 = time.perf_counter(), time.process_time()
    result = await arun_job(units, out, _support(base_url), concurrency=level, workers=workers)
    wall = time.perf_counter() - t0
    cpu = (time.process_time() - c0 + result.worker_cpu_s) / episodes  # the workers report theirs
    latencies: list[float] = []  # read back after the clock stopped, as a user's scorer would
    ends: dict[str, int] = {}
    spans: list[tuple[float, int]] = []
    for traj in iter_episodes(out, validate=False):
        for step in traj["steps"]:
            gen = step["generation"]
            if step["role"] == "support" and gen:
                latencies.append(gen["wall_latency_ms"] / 1000)
        ends[traj["termination"]] = ends.get(traj["termination"], 0) + 1
        spans += [(traj["wall_started_at"], 1), (traj["wall_started_at"] + traj["wall_duration_s"], -1)]
    live = most_live = 0
    for _, change in sorted(spans):
        live += change
        most_live = max(most_live, live)
    size = out.stat().st_size
    out.unlink()
    return {"wall": wall, "eps": episodes / wall, "inflight": sum(latencies) / wall, "cpu": cpu,
            "requests": len(latencies), "bytes": size / episodes, "ends": ends, "most_live": most_live}


async def request_bodies(template: Any, base_url: str) -> list[bytes]:
    """The 4 request bodies of one episode, as its support agent encoded them (for the bare loop)."""
    from trajgym.agents import OpenAIAgent, ScriptedCustomer
    from trajgym.envs.core import Episode
    from trajgym.rollout.episode import aplay

    bodies: list[bytes] = []

    class Recording(OpenAIAgent):
        def encoded_body(self, info: dict[str, Any], sampling: dict[str, Any] | None = None) -> bytes:
            bodies.append(super().encoded_body(info, sampling))
            return bodies[-1]

    support = Recording(base_url=base_url, model="bench", sampling={"temperature": 1.0, "max_tokens": 256})
    episode = await aplay(Episode.start(template, 0), {"support": support, "customer": ScriptedCustomer()})
    assert episode.termination == "transferred_to_human", episode.termination
    return bodies


async def bare_level(base_url: str, level: int, episodes: int, bodies: list[bytes]) -> dict[str, Any]:
    """The ceiling: ``bodies`` sent in turn by each of ``episodes`` coroutines, ``level`` at a
    time, through one aiohttp session sized for them; each answer is decoded as the agent decodes it."""
    import aiohttp

    from trajgym.jsonio import loads as decode_json

    connector = aiohttp.TCPConnector(limit=4096, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=60)
    session = aiohttp.ClientSession(connector=connector)
    url = f"{base_url}/chat/completions"
    sem = asyncio.Semaphore(level)
    latencies: list[float] = []
    headers = {"Content-Type": "application/json"}

    async def one() -> None:
        async with sem:
            for body in bodies:
                t = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as resp:
                    data = decode_json(await resp.read())
                    assert data["choices"]
                latencies.append(time.perf_counter() - t)

    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one() for _ in range(episodes)))
    wall = time.perf_counter() - t0
    cpu = (time.process_time() - c0) / episodes
    await session.close()
    return {"wall": wall, "eps": episodes / wall, "inflight": sum(latencies) / wall, "cpu": cpu}


async def bare_run(base_url: str, level: int, episodes: int, bodies: list[bytes]) -> dict[str, Any]:
    """:func:`bare_level` under the job's collector settings, on its own connections."""
    from trajgym.rollout.runtime import collector_tuned

    async with collector_tuned():
        return await bare_level(base_url, level, episodes, bodies)


async def memory_per_episode(template: Any, base_url: str, level: int, out_dir: Path) -> float:
    await agent_level(template, base_url, min(level, 10), min(level, 10), 10**6, out_dir=out_dir)  # warm caches
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    wave = await agent_level(template, base_url, level, level, 2 * 10**6, out_dir=out_dir)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return (peak - base) / wave["most_live"]  # traced, the episodes start slower: not all may overlap


async def main_async(args: argparse.Namespace, base_url: str) -> None:
    from trajgym.agents.openai_agent import close_connections
    from trajgym.rollout.workers import start_server
    from trajgym.scenario import builtin_scenarios
    from trajgym.world.loader import load

    start_server()  # as `trajgym rollout --workers` does when it starts (not timed: neither are the job's imports)
    template = load(builtin_scenarios()["refund_damaged_item"])
    bodies = await request_bodies(template, base_url)
    assert len(bodies) == CALLS_PER_EPISODE, len(bodies)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = Path(tmp)
        await agent_level(template, base_url, 10, 10, 0, out_dir=out_dir)  # warm-up
        for level in args.levels:
            n = level * args.waves
            first = await bare_run(base_url, level, n, bodies)
            mem = await memory_per_episode(template, base_url, level, out_dir)
            agents = [(w, await agent_level(template, base_url, level, n, 10_000 * level + w, out_dir=out_dir,
                                            workers=w)) for w in args.workers]
            second = await bare_run(base_url, level, n, bodies)
            bare = max(first, second, key=lambda r: r["eps"])  # the ceiling: the better of its runs
            for workers, agent in agents:
                rows.append((level, workers, agent, bare, mem if workers == 1 else None))
                assert agent["ends"] == {"transferred_to_human": n}, agent["ends"]
    await close_connections()
    ideal = 1 / (CALLS_PER_EPISODE * args.latency)
    loop = type(asyncio.get_running_loop())
    print(f"\nrefund_damaged_item, {CALLS_PER_EPISODE} support calls of {args.latency * 1000:.0f} ms per "
          f"episode (ideal {ideal:.2f} episodes/s per slot), {args.waves} waves per level; "
          f"{os.cpu_count()} cores, load average before the run {args.load:.2f}; "
          f"event loop {loop.__module__}.{loop.__name__}\n")
    head = (f"{'in flight':>9} | {'workers':>7} | {'episodes':>8} | {'agent ep/s':>10} | {'bare ep/s':>9} | "
            f"{'agent/bare':>10} | {'req in flight (agent/bare)':>26} | {'client CPU ms/ep (agent/bare)':>29} | "
            f"{'KB/live episode':>15} | {'traj KB':>7}")
    print(head)
    print("-" * len(head))
    for level, workers, agent, bare, mem in rows:
        kb = "-" if mem is None else f"{mem / 1024:.1f}"
        print(f"{level:>9} | {workers:>7} | {level * args.waves:>8} | {agent['eps']:>10.1f} | {bare['eps']:>9.1f} | "
              f"{agent['eps'] / bare['eps']:>9.0%} | {agent['inflight']:>12.0f} / {bare['inflight']:<11.0f} | "
              f"{agent['cpu'] * 1000:>14.2f} / {bare['cpu'] * 1000:<12.2f} | "
              f"{kb:>15} | {agent['bytes'] / 1024:>7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",")], default=[10, 100, 1000])
    parser.add_argument("--waves", type=int, default=3)
    parser.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2],
                        help="worker processes of the job, a row each (the bare loop is one process)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.latency)
        return
    args.load = os.getloadavg()[0]
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
