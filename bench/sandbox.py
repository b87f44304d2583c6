"""Per-call latency of sandboxed runs: p50/p95 of a trivial command, bare vs bwrap vs Docker.

    python bench/sandbox.py [--calls N] [--budget-s S] [--backends bare,bwrap,docker]

For each backend, runs ``true`` and ``python3 -c pass`` N times (or until S seconds per cell are
spent) and prints a table. "bare" is ``subprocess.run`` of the same argv on the host (with the
same /usr/bin/python3). Targets: bwrap under 5 ms over bare; a warm Docker exec under 50 ms.
The Docker rows need a running engine (skipped otherwise) and the ``docker`` extra.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import trajgym  # noqa: F401  (a realistic parent process: fork costs grow with its size)
from trajgym.tools_sandbox import Sandbox, SandboxError, open_sandbox

COMMANDS: dict[str, list[str]] = {
    "true": ["true"],
    "python3 -c pass": ["python3", "-c", "pass"],
}
BARE: dict[str, list[str]] = {
    "true": ["/usr/bin/true"],
    "python3 -c pass": ["/usr/bin/python3", "-c", "pass"],
}


def measure(call: Callable[[], object], calls: int, budget_s: float) -> list[float]:
    call()                                            # warm up (first exec, page cache)
    times: list[float] = []
    end = time.monotonic() + budget_s
    while len(times) < calls and time.monotonic() < end:
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return sorted(times)


def pct(times: list[float], q: float) -> float:
    return times[min(len(times) - 1, int(q * len(times)))] * 1e3


def bare(argv: list[str]) -> Callable[[], object]:
    return lambda: subprocess.run(argv, capture_output=True, check=True)


def sandboxed(sb: Sandbox, argv: list[str]) -> Callable[[], object]:
    def call() -> None:
        r = sb.run(argv)
        if not r.ok:
            raise SystemExit(f"{sb.backend}: {argv} failed: {r}")
    return call


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--budget-s", type=float, default=12.0, help="seconds at most per table cell")
    ap.add_argument("--backends", default="bare,bwrap,docker")
    args = ap.parse_args()
    wanted = args.backends.split(",")

    rows: list[tuple[str, str, list[float]]] = []
    if "bare" in wanted:
        for name, argv in BARE.items():
            rows.append(("bare subprocess.run", name, measure(bare(argv), args.calls, args.budget_s)))
    for backend, label in (("bwrap", "bwrap"), ("docker", "docker warm exec")):
        if backend not in wanted:
            continue
        try:
            sb = open_sandbox(backend)
        except SandboxError as e:
            print(f"({label}: skipped: {e})", file=sys.stderr)
            continue
        with sb:
            print(f"{label}: {sb.isolation}", file=sys.stderr)
            for name, argv in COMMANDS.items():
                rows.append((label, name, measure(sandboxed(sb, argv), args.calls, args.budget_s)))

    base = {name: statistics.median(t) * 1e3 for label, name, t in rows if label.startswith("bare")}
    print(f"{'backend':<22} {'command':<16} {'calls':>5} {'p50 ms':>8} {'p95 ms':>8} {'p50 over bare':>14}")
    for label, name, times in rows:
        over = f"{pct(times, 0.5) - base[name]:+.2f} ms" if name in base else "-"
        print(f"{label:<22} {name:<16} {len(times):>5} {pct(times, 0.5):>8.2f} {pct(times, 0.95):>8.2f} "
              f"{over:>14}")


if __name__ == "__main__":
    main()
