"""Batch jobs: concurrency, crash-safe append-only output, resume, infra-error reruns, job files."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import BUILTIN, EXAMPLE

from trajgym.agents import AGENTS, OracleAgent, default_agent
from trajgym.agents.base import AgentContext, policy_of
from trajgym.cli.main import main
from trajgym.errors import ConfigFileError, InfraError, TrajgymError
from trajgym.rollout.agentspec import AgentChoice, AgentSpec
from trajgym.rollout.inflight import in_flight
from trajgym.rollout.jobfile import load_job
from trajgym.rollout.jobs import run_job
from trajgym.rollout.runner import agents_for, plan, run, total
from trajgym.trajectory import latest_per_unit, read, repair_torn_tail, strip_wall, unit_key
from trajgym.world.loader import load


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _canon(trajs: list[dict[str, Any]]) -> list[str]:
    """Episodes as comparable text, without wall-clock fields and the job's id (a job run in parts is
    other jobs: its units differ), in a fixed order."""
    return sorted(json.dumps({**strip_wall(t), "job_id": None}, sort_keys=True) for t in trajs)


def _units(episodes: int = 3, trials: int = 2) -> list:
    templates = [load(EXAMPLE), load(BUILTIN["large_refund_needs_approval"])]
    return plan(templates, episodes, seed=5, trials=trials)


def test_concurrent_job_gives_the_same_episodes_as_sequential(tmp_path: Path) -> None:
    units = _units()
    run(units, tmp_path / "seq.jsonl", support="random", command="c")
    result = run_job(units, tmp_path / "conc.jsonl", AgentSpec.support("random"), concurrency=4, command="c")
    assert result.ran == len(units) == 12 and result.skipped == 0
    seq, conc = _lines(tmp_path / "seq.jsonl"), _lines(tmp_path / "conc.jsonl")
    assert _canon(seq) == _canon(conc)
    assert {unit_key(t)[:3] for t in conc} == {u.key[:3] for u in units}
    # the policy, the key's fourth part, is the agents' identity: random support, scripted simulators
    policies = {t["scenario_id"]: t["policy"] for t in conc}
    for template in {u.template.id: u.template for u in units}.values():
        assert policies[template.id] == policy_of(agents_for(template, "random"))
    assert len({t["job_id"] for t in conc}) == 1 and len({t["episode_id"] for t in conc}) == 12


class SlowOracle(OracleAgent):
    """The oracle behind a 'model server' that answers after a short await, so episodes interleave."""

    name = "slow_oracle"

    async def aact(self, messages: list[dict[str, Any]], info: dict[str, Any]) -> str:
        await asyncio_sleep(0.001)
        self.generation = {"usage": {"completion_tokens": 7}}
        return self.act(messages, info)


async def asyncio_sleep(s: float) -> None:
    import asyncio

    await asyncio.sleep(s)


def test_interleaved_episodes_match_sequential_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(AGENTS, "slow_oracle", SlowOracle)
    units = _units(episodes=2, trials=1)
    one = run_job(units, tmp_path / "one.jsonl", AgentSpec.support("slow_oracle"), concurrency=1)
    many = run_job(units, tmp_path / "many.jsonl", AgentSpec.support("slow_oracle"), concurrency=4)
    assert one.ran == many.ran == 4
    assert _canon(_lines(tmp_path / "one.jsonl")) == _canon(_lines(tmp_path / "many.jsonl"))
    steps = [s for t in _lines(tmp_path / "many.jsonl") for s in t["steps"] if s["role"] == "support"]
    assert all(s["generation"]["usage"]["completion_tokens"] == 7 for s in steps)


FAIL_ONCE: set[int] = set()


class FlakyOnce(OracleAgent):
    """The oracle, whose server is down on its first call of an episode with a seed in FAIL_ONCE."""

    name = "flaky_once"

    def reset(self, ctx: AgentContext) -> None:
        super().reset(ctx)
        self.seed = ctx.seed

    async def aact(self, messages: list[dict[str, Any]], info: dict[str, Any]) -> str:
        if self.seed in FAIL_ONCE:
            FAIL_ONCE.discard(self.seed)
            raise InfraError("model server unreachable after 3 retries")
        return self.act(messages, info)


def test_resume_reruns_infra_errors_and_skips_finished_units(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(AGENTS, "flaky_once", FlakyOnce)
    units = _units(episodes=2, trials=1)
    bad = units[1]
    FAIL_ONCE.add(bad.seed)
    out = tmp_path / "job.jsonl"
    spec = AgentSpec({"support": AgentChoice("flaky_once")})
    first = run_job(units, out, spec, concurrency=3)
    assert first.ran == 4
    assert first.summary[bad.template.id].terminations.get("infra_error") == 1
    assert bad.key[:3] not in {k[:3] for k in latest_per_unit(out)}

    second = run_job(units, out, spec, concurrency=3, resume=True)
    assert (second.ran, second.skipped) == (1, 3)
    lines = _lines(out)
    assert len(lines) == 5 and lines[-1]["termination"] != "infra_error" and unit_key(lines[-1])[:3] == bad.key[:3]
    assert sum(t["termination"] == "infra_error" for t in lines) == 1  # the old line stays
    latest = {k[:3]: t for k, t in latest_per_unit(out).items()}
    assert set(latest) == {u.key[:3] for u in units} and latest[bad.key[:3]]["outcome"]["success"]

    third = run_job(units, out, spec, resume=True)
    assert (third.ran, third.skipped) == (0, 4) and len(_lines(out)) == 5


def test_an_existing_output_needs_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run.jsonl"
    args = ["rollout", "refund_damaged_item", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "already holds episodes" in err and "--resume" in err and "another output file" in err
    with pytest.raises(TrajgymError, match="--resume"):
        run_job(_units(1, 1), out, AgentSpec.support("oracle"))
    assert main([*args, "--resume"]) == 0
    assert len(read(out)) == 1


def test_resume_moves_a_torn_last_line_aside(tmp_path: Path) -> None:
    units = _units(episodes=2, trials=1)
    out = tmp_path / "job.jsonl"
    run_job(units[:2], out, AgentSpec.support("oracle"))
    whole = out.read_bytes()
    third = json.dumps(_lines(out)[0])
    out.write_bytes(whole + b'{"schema_version": 1, "episode_id": "x", "ste')  # killed mid-write
    result = run_job(units, out, AgentSpec.support("oracle"), resume=True)
    assert (result.ran, result.skipped) == (2, 2) and result.torn is not None
    assert result.torn.read_bytes() == b'{"schema_version": 1, "episode_id": "x", "ste'
    assert out.read_bytes().startswith(whole) and len(read(out)) == 4
    # a whole episode that only lacks its newline is kept
    out.write_bytes(out.read_bytes() + third.encode())
    assert repair_torn_tail(out) is None and len(_lines(out)) == 5


def test_sigkilled_job_resumes_to_every_unit_exactly_once(tmp_path: Path) -> None:
    out = tmp_path / "job.jsonl"
    argv = [sys.executable, "-m", "trajgym", "rollout", "refund_damaged_item", "--episodes", "150",
            "--trials", "2", "--seed", "3", "--concurrency", "4", "--out", str(out), "--no-progress"]
    total = 300
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") >= 5:
                break
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    killed_at = out.read_bytes().count(b"\n")
    assert 5 <= killed_at < total
    again = subprocess.run([*argv, "--resume"], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert again.returncode == 0, again.stderr
    assert "already done" in again.stdout
    lines = _lines(out)  # every line parses
    keys = [unit_key(t) for t in lines if t["termination"] != "infra_error"]
    assert len(keys) == len(set(keys)) == total
    assert len(latest_per_unit(out)) == total
    assert main(["show", str(out), "--list"]) == 0


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_job_file_runs_a_job(tmp_path: Path) -> None:
    job = _write(tmp_path / "job.yaml", f"""\
scenarios: [refund_damaged_item, {BUILTIN['large_refund_needs_approval']}]
agents:
  support: random
  customer: {{name: scripted_customer}}
episodes: 2
trials: 1
seed: 4
concurrency: 3
output: runs/out.jsonl
""")
    loaded = load_job(job)
    assert loaded.output == tmp_path / "runs" / "out.jsonl" and loaded.concurrency == 3
    assert [t.id for t in loaded.templates] == ["refund_damaged_item", "large_refund_needs_approval"]
    assert main(["rollout", "--job", str(job), "--no-progress"]) == 0
    trajs = read(tmp_path / "runs" / "out.jsonl")
    assert len(trajs) == 4 and {a.name for t in trajs for a in t.agents if a.role == "support"} == {"random"}
    assert main(["rollout", "--job", str(job), "--episodes", "3"]) == 1  # declared in the file


@pytest.mark.parametrize(("text", "where", "message"), [
    ("scenarios: [refund_damaged_item]\noutput: o.jsonl\nepisode: 3\n", ":3:1:",
     "unknown key 'episode' in the top level; did you mean 'episodes'?"),
    ("scenarios: [refund_damaged_item]\noutput: o.jsonl\nepisodes: 0\n", ":3:11:", "episodes"),
    ("scenarios: [refund_damaged_item]\noutput: o.jsonl\nagents:\n  support: {name: orcale}\n", ":4:19:",
     "did you mean 'oracle'?"),
    ("scenarios: [refund_damaged_item]\noutput: o.jsonl\nagents:\n  support: {name: oracle, temp: 1}\n",
     ":4:27:",
     "unknown key 'temp'"),
    ("scenarios: [refund_damaged_item]\noutput: o.jsonl\nagents:\n  suport: oracle\n", ":4:3:",
     "no role 'suport'"),
    ("scenarios:\n  - refund_damaged_item\n  - no_such_thing\noutput: o.jsonl\n", ":3:5:", "no scenario 'no_such_thing'"),
    ("scenarios: [refund_damaged_item]\n", ":1:1:", "missing required key 'output'"),
    ("scenarios: [refund_damaged_item]\noutput: o.jsonl\nbackend: spark\n", ":3:10:", "one of 'local', 'ray'"),
    ("# nothing\n", ":1:1:", "the job file is empty"),
    ("scenarios: [a\n", ":", "invalid YAML"),
])
def test_job_file_errors_are_located(tmp_path: Path, text: str, where: str, message: str) -> None:
    job = _write(tmp_path / "job.yaml", text)
    with pytest.raises(ConfigFileError) as info:
        load_job(job)
    first = str(info.value).splitlines()[0]
    assert first.startswith(str(job) + where) and message in first, first


def test_cli_job_errors_have_no_traceback(tmp_path: Path) -> None:
    job = _write(tmp_path / "job.yaml", "scenarios: [refund_damaged_item]\noutput: o.jsonl\nepisode: 3\n")
    proc = subprocess.run([sys.executable, "-m", "trajgym", "rollout", "--job", str(job)], capture_output=True,
                          text=True, cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"{job}:3:1: unknown key 'episode'" in proc.stderr


def test_ray_backend_without_ray_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from trajgym.rollout.ray_backend import run_job_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(TrajgymError, match=r"trajgym\[ray\]"):
        run_job_ray(_units(1, 1), tmp_path / "o.jsonl", AgentSpec.support("oracle"))


@pytest.mark.slow  # starts a local Ray (about 9 s)
def test_ray_backend_writes_what_the_local_backend_writes(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    from trajgym.rollout.ray_backend import run_job_ray

    units = _units(episodes=2, trials=1)
    spec = AgentSpec.support("random")
    run_job(units, tmp_path / "local.jsonl", spec, concurrency=2, command="c")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        first = run_job_ray(units[:2], tmp_path / "ray.jsonl", spec, batch_size=1, concurrency=2, command="c")
        assert first.ran == 2
        rest = run_job_ray(units, tmp_path / "ray.jsonl", spec, batch_size=1, concurrency=2, command="c",
                           resume=True)
        assert (rest.ran, rest.skipped) == (2, 2)
        # the command line, on the Ray already started
        assert main(["rollout", "refund_damaged_item", "--agent", "random", "--episodes", "2", "--seed", "5",
                     "--backend", "ray", "--out", str(tmp_path / "cli.jsonl"), "--no-progress"]) == 0
    finally:
        ray.shutdown()
    assert _canon(_lines(tmp_path / "local.jsonl")) == _canon(_lines(tmp_path / "ray.jsonl"))
    from_cli = _lines(tmp_path / "cli.jsonl")
    local = [t for t in _lines(tmp_path / "local.jsonl") if t["scenario_id"] == "refund_damaged_item"]
    assert _canon([{**t, "provenance": None} for t in from_cli]) == _canon([{**t, "provenance": None} for t in local])


def test_resume_refuses_episodes_of_another_scenario_version(tmp_path: Path) -> None:
    units = _units(episodes=1, trials=1)
    out = tmp_path / "job.jsonl"
    run_job(units, out, AgentSpec.support("oracle"))
    lines = _lines(out)
    lines[0]["scenario_hash"] = "0" * 16
    out.write_text("".join(json.dumps(t) + "\n" for t in lines))
    with pytest.raises(TrajgymError, match="another version of scenario"):
        run_job(units, out, AgentSpec.support("oracle"), resume=True)


def test_two_jobs_never_write_one_file(tmp_path: Path) -> None:
    from trajgym.rollout.output import exclusive

    out = tmp_path / "job.jsonl"
    with exclusive(out), pytest.raises(TrajgymError, match="another running job"):
        run_job(_units(1, 1), out, AgentSpec.support("oracle"), resume=True)


def test_progress_counts_completion_tokens() -> None:
    from trajgym.rollout.runner import completion_tokens

    steps = [{"generation": {"usage": {"completion_tokens": 5}}}, {"generation": None},
             {"generation": {"usage": None}}, {"generation": {"usage": {"completion_tokens": 2}}}]
    assert completion_tokens({"steps": steps}) == 7


def test_worker_processes_write_the_same_episodes(tmp_path: Path) -> None:
    units = _units()
    one = run_job(units, tmp_path / "one.jsonl", AgentSpec.support("random"), concurrency=4, command="c")
    seen: list[dict[str, Any]] = []
    progress: list[int] = []
    two = run_job(units, tmp_path / "two.jsonl", AgentSpec.support("random"), concurrency=4, command="c",
                  workers=2, on_episode=seen.append, on_progress=lambda r: progress.append(r.totals.episodes))
    assert one.ran == two.ran == len(seen) == len(units)
    assert _canon(_lines(tmp_path / "one.jsonl")) == _canon(_lines(tmp_path / "two.jsonl")) == _canon(seen)
    # the counts the job's process made from the workers' digests are those of the trajectories
    assert one.summary == two.summary
    assert two.totals == total(two.summary) and two.totals.episodes == len(units)
    assert progress == list(range(1, len(units) + 1))
    assert one.worker_cpu_s == 0 < two.worker_cpu_s  # the worker reports its CPU time with its end


def test_processes_sharing_the_units_take_each_once() -> None:
    import multiprocessing

    from trajgym.rollout.workers import SharedUnits, shares

    ctx = multiprocessing.get_context("spawn")
    counter, lock = ctx.RawValue("q", 0), ctx.Lock()
    units = _units()
    a, b = SharedUnits(units, counter, lock), SharedUnits(units, counter, lock)
    taken = [next(a), next(b), next(b), *a, *b]
    assert taken == units and len(a) == len(units)
    assert shares(10, 3, 100) == [4, 3, 3] and shares(10, 3, 2) == [5, 5] and shares(1, 4, 9) == [1]


def test_a_worker_error_ends_the_job_with_it(tmp_path: Path) -> None:
    spec = AgentSpec({"support": AgentChoice("oracle", {"no_such_option": 1})})
    with pytest.raises(TrajgymError, match="agent 'oracle': bad options"):
        run_job(_units(), tmp_path / "out.jsonl", spec, concurrency=4, workers=2)


class _FailsInTheWorker(OracleAgent):
    """The oracle, slow in the job's process; in a worker it fails at its fifth episode, naming the
    seeds of the four it played (one slot: each ended before the next began)."""

    played: list[int] = []

    def reset(self, ctx: AgentContext) -> None:
        import multiprocessing

        if multiprocessing.parent_process() is not None:
            if len(self.played) == 4:
                raise RuntimeError(f"failed after seeds {json.dumps(self.played)}")
            self.played.append(ctx.seed)
        super().reset(ctx)

    async def aact(self, messages: list[dict[str, Any]], info: dict[str, Any]) -> str:
        import multiprocessing

        if multiprocessing.parent_process() is None:
            await asyncio.sleep(0.005)  # leave units for the worker, which starts in most of a second
        return await super().aact(messages, info)


class _FailingInTheWorker:
    def __call__(self, template: Any) -> dict[str, Any]:
        return {"support": _FailsInTheWorker(), **{r: default_agent(r) for r in template.spec.roles if r != "support"}}


def test_a_worker_error_keeps_the_episodes_it_ended(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    units = plan([load(BUILTIN["refund_damaged_item"])], 400, seed=1)
    with pytest.raises(RuntimeError, match="failed after seeds") as failed:
        run_job(units, out, _FailingInTheWorker(), concurrency=2, workers=2)
    seeds = json.loads(str(failed.value).split("seeds ", 1)[1])
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(seeds) == 4 and set(seeds) <= {t["seed"] for t in written}
    assert len({unit_key(t) for t in written}) == len(written)


class _ReportsItsProcess(OracleAgent):
    """The oracle, slow in the job's process; its recorded config names its process and the value
    of $TRAJGYM_TEST_MARK there."""

    def config(self) -> dict[str, Any]:
        return {**super().config(), "pid": os.getpid(), "mark": os.environ.get("TRAJGYM_TEST_MARK"),
                "workflow_imported": "trajgym.world.workflow" in sys.modules}

    async def aact(self, messages: list[dict[str, Any]], info: dict[str, Any]) -> str:
        import multiprocessing

        if multiprocessing.parent_process() is None:
            await asyncio.sleep(0.005)
        return await super().aact(messages, info)


class _ReportingFactory:
    def __call__(self, template: Any) -> dict[str, Any]:
        return {"support": _ReportsItsProcess(), **{r: default_agent(r) for r in template.spec.roles if r != "support"}}


def test_workers_run_in_the_job_s_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from trajgym.rollout.workers import context as workers_context
    from trajgym.rollout.workers import start_server

    start_server()  # the fork server's environment is the one it started in
    monkeypatch.setenv("TRAJGYM_TEST_MARK", "set after the server started")
    out = tmp_path / "out.jsonl"
    run_job(plan([load(BUILTIN["refund_damaged_item"])], 200, seed=2), out, _ReportingFactory(), concurrency=2, workers=2)
    configs = [a["config"] for t in _lines(out) for a in t["agents"] if a["role"] == "support"]
    assert len({c["pid"] for c in configs}) == 2  # both processes played
    assert {c["mark"] for c in configs} == {"set after the server started"}
    if workers_context().get_start_method() == "forkserver":  # the server imported every domain
        assert all(c["workflow_imported"] for c in configs if c["pid"] != os.getpid())


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:  # gone
        return []


def _worker_pids(parent: int) -> list[int]:
    """The job's worker processes: forked by the fork server, a child of ``parent`` (or, under
    ``spawn``, children of ``parent`` themselves)."""
    workers = []
    for child in _children(parent):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"forkserver" in cmdline:
            workers += _children(child)
        elif b"spawn_main" in cmdline:
            workers.append(child)
    return workers


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the workers through /proc")
def test_a_killed_worker_ends_the_job_and_resume_finishes_it(tmp_path: Path) -> None:
    out = tmp_path / "job.jsonl"
    argv = [sys.executable, "-m", "trajgym", "rollout", "refund_damaged_item", "--episodes", "400",
            "--seed", "3", "--concurrency", "8", "--workers", "2", "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            workers = _worker_pids(proc.pid)  # --workers 2: this process and one worker
            if len(workers) == 1 and out.exists() and out.read_bytes().count(b"\n") >= 5:
                os.kill(workers[0], signal.SIGKILL)
                break
            time.sleep(0.002)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1 and b"worker process" in err and b"resume" in err, err
    assert not _worker_pids(os.getpid())  # nothing left behind
    again = subprocess.run([*argv, "--resume"], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert again.returncode == 0, again.stderr
    keys = [unit_key(t) for t in _lines(out)]  # every line parses
    assert len(keys) == len(set(keys)) == 400


def test_a_job_sends_its_first_requests_while_the_rest_of_its_episodes_start() -> None:
    """Episodes start a few per turn of the event loop, so the first ones get on (their requests
    go out, their answers are read) before the last one has started."""
    events: list[tuple[str, int]] = []

    async def play(unit: int) -> int:
        events.append(("start", unit))
        await asyncio.sleep(0)  # a request: the loop must come back to it
        events.append(("answered", unit))
        return unit

    ended: list[int] = []
    asyncio.run(in_flight(list(range(100)), 100, play, ended.append))  # type: ignore[arg-type]
    assert sorted(ended) == list(range(100))
    assert events.index(("answered", 0)) < events.index(("start", 99))
    assert len({u for kind, u in events if kind == "start"}) == 100


def test_a_failure_while_episodes_start_stops_the_start_and_is_raised() -> None:
    started: list[int] = []

    async def play(unit: int) -> int:
        started.append(unit)
        await asyncio.sleep(0)
        if unit == 1:
            raise RuntimeError("episode 1 broke")
        await asyncio.sleep(10)
        return unit

    with pytest.raises(RuntimeError, match="episode 1 broke"):
        asyncio.run(in_flight(list(range(1000)), 1000, play, lambda _: None))  # type: ignore[arg-type]
    assert len(started) < 100  # the others were never started
