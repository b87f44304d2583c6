"""``trajgym rollout``: play episodes with a progress bar, then print a summary table."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from trajgym.errors import TrajgymError
from trajgym.rollout.agentspec import AgentChoice, AgentSpec, check_agent
from trajgym.rollout.jobfile import Job, load_job
from trajgym.rollout.jobs import run_job
from trajgym.rollout.output import check_output
from trajgym.rollout.runner import PERSONA_TRAITS, ScenarioSummary, total
from trajgym.rollout.sink import JobResult
from trajgym.scenario.catalog import builtin_dir, scenario_files
from trajgym.trajectory.schema import INFRA_ERROR
from trajgym.world.loader import load

JOB_FIELDS = ("scenarios", "agent", "episodes", "trials", "seed", "max_turns")
"""Flags that a job file declares itself (--out, --concurrency, --workers and --backend override it)."""


SERVER_AGENTS = ("openai", "llm_customer")
"""Model agents that talk to a server; ``hf`` runs its model in process (no --base-url, --strict)."""
MODEL_AGENTS = (*SERVER_AGENTS, "hf")


def _model_options(args: argparse.Namespace, agent: str, *, customer: bool = False) -> dict[str, Any]:
    """Keyword options of a model agent from the command line (nothing for scripted agents)."""
    if agent not in MODEL_AGENTS:
        return {}
    options: dict[str, Any] = {}
    base_url = (args.customer_base_url if customer else None) or args.base_url
    model = (args.customer_model if customer else None) or args.model
    if base_url and agent in SERVER_AGENTS:
        options["base_url"] = base_url
    if model:
        options["model"] = model
    if args.tool_choice and not customer:
        options["tool_choice"] = args.tool_choice
    if args.strict and agent in SERVER_AGENTS:
        options["strict"] = True
    if args.api and agent in SERVER_AGENTS:
        options["api"] = args.api
    if args.request_timeout is not None and agent in SERVER_AGENTS:
        if args.request_timeout <= 0:
            raise TrajgymError("--request-timeout must be more than 0 seconds")
        options["timeout_s"] = args.request_timeout
    sampling = {k: v for k, v in (("temperature", args.temperature), ("max_tokens", args.max_tokens))
                if v is not None}
    if sampling:
        options["sampling"] = sampling
    return options


def job_from_args(args: argparse.Namespace) -> Job:
    """The job of a command line: from --job, or from the scenarios and flags."""
    if args.job:
        given = [f"--{f.replace('_', '-')}" if f != "scenarios" else "SCENARIO_OR_DIR" for f in JOB_FIELDS
                 if getattr(args, f) not in (None, [])]
        if given:
            raise TrajgymError(f"{', '.join(given)} cannot be given with --job (the job file declares them)")
        job = load_job(args.job)
    else:
        if not args.out:
            raise TrajgymError("--out FILE.jsonl is required (or give a --job file)")
        agent = args.agent or "oracle"
        try:
            check_agent("support", agent)
        except TrajgymError as exc:
            raise TrajgymError(f"--agent: {exc}") from None
        episodes = 1 if args.episodes is None else args.episodes
        trials = 1 if args.trials is None else args.trials
        if episodes < 1 or trials < 1:
            raise TrajgymError("--episodes and --trials must be at least 1")
        files = scenario_files(args.scenarios or [str(builtin_dir())])
        roles = {"support": AgentChoice(agent, _model_options(args, agent))}
        if args.customer:
            check_agent("customer", args.customer)
            roles["customer"] = AgentChoice(args.customer, _model_options(args, args.customer, customer=True))
        if args.max_turns is not None and args.max_turns < 1:
            raise TrajgymError("--max-turns must be at least 1")
        job = Job(templates=[load(f) for f in files], agents=AgentSpec(roles), episodes=episodes,
                  trials=trials, seed=args.seed or 0, max_turns=args.max_turns)
    if args.out:
        job.output = Path(args.out)
    if args.concurrency is not None:
        if args.concurrency < 1:
            raise TrajgymError("--concurrency must be at least 1")
        job.concurrency = args.concurrency
    if args.workers is not None:
        if args.workers < 1:
            raise TrajgymError("--workers must be at least 1")
        job.workers = args.workers
    if args.backend:
        job.backend = args.backend
    if args.ray_address:
        job.ray_address = args.ray_address
    if job.backend == "ray" and job.workers > 1:
        raise TrajgymError("workers are for the local backend; with --backend ray, Ray's own workers share the job")
    return job


def rollout_command(args: argparse.Namespace, console: Console) -> int:
    return rollout(args, console, args.command_line)


def rollout(args: argparse.Namespace, console: Console, command: str) -> int:
    from trajgym.rollout.workers import start_server

    if (args.workers or 0) > 1 and args.backend != "ray":
        start_server()  # its imports overlap with loading the scenarios
    job = job_from_args(args)
    if job.workers > 1 and job.backend == "local":
        start_server()
    units = job.units()
    check_output(job.output, resume=args.resume)
    started = time.perf_counter()

    progress = Progress(
        TextColumn("[bold]rollout[/]"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.1f} ep/s  {task.fields[tps]:.0f} tok/s"),
        TextColumn("success {task.fields[success]}  faults {task.fields[faults]}  "
                   "infra errors {task.fields[infra]}  malformed {task.fields[malformed]}"),
        TimeElapsedColumn(), console=console, disable=args.no_progress,
    )
    with progress:
        task = progress.add_task("rollout", total=len(units), rate=0.0, tps=0.0, success=0, faults=0,
                                 malformed=0, infra=0)

        def on_start(result: JobResult, todo: int) -> None:
            progress.update(task, total=todo)
            if result.torn is not None:
                progress.console.print(f"moved a torn last line of {job.output} to {result.torn}", highlight=False)
            if result.skipped:
                progress.console.print(f"resuming: {result.skipped} of {len(units)} units already done in "
                                       f"{job.output}", highlight=False)

        def on_progress(result: JobResult) -> None:
            t = result.totals
            elapsed = max(time.perf_counter() - started, 1e-9)
            progress.update(task, completed=t.episodes, rate=t.episodes / elapsed, tps=t.tokens / elapsed,
                            success=t.successes, faults=t.faults, malformed=t.malformed,
                            infra=t.terminations.get(INFRA_ERROR, 0))

        common: dict[str, Any] = {"concurrency": job.concurrency, "resume": args.resume, "command": command,
                                  "on_progress": on_progress, "on_start": on_start}
        if job.backend == "ray":
            from trajgym.rollout.ray_backend import run_job_ray

            result = run_job_ray(units, job.output, job.agents, address=job.ray_address,
                                 batch_size=job.ray_batch_size, **common)
        else:
            result = run_job(units, job.output, job.agents, workers=job.workers, **common)
    elapsed = max(time.perf_counter() - started, 1e-9)
    console.print(summary_table(result.summary, job.agents.label(), elapsed))
    if result.persona_mix:
        console.print(persona_table(result.persona_mix))
    t = result.totals
    skipped = f"; {result.skipped} units were already done" if result.skipped else ""
    n_infra = t.terminations.get(INFRA_ERROR, 0)
    infra = f"; {n_infra} infra errors (run again with --resume)" if n_infra else ""
    tokens = f", {t.tokens / elapsed:.1f} tokens/s" if t.tokens else ""
    console.print(f"{t.episodes} episodes, {t.steps} steps in {elapsed:.2f} s "
                  f"({t.episodes / elapsed:.2f} episodes/s{tokens}); appended to {job.output}{skipped}{infra}",
                  highlight=False)
    return 0


def summary_table(summary: dict[str, ScenarioSummary], agents: str, elapsed: float | None = None) -> Table:
    """Per scenario: episodes, success rate, turns, tool calls, faults met, malformed actions, tokens
    generated (when model agents played) and endings; the title gives the rates over ``elapsed`` s."""
    everything = total(summary)
    tokens = everything.tokens > 0
    title = f"Rollout summary ({agents})"
    if elapsed:
        title += f": {everything.episodes / elapsed:.2f} episodes/s"
        title += f", {everything.tokens / elapsed:.1f} tokens/s" if tokens else ""
    table = Table(title=title)
    table.add_column("scenario", no_wrap=True, min_width=max((len(s) for s in summary), default=8))
    for col in ("eps", "success", "turns", "calls", "faults", "bad", *(["tokens"] if tokens else [])):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("endings", overflow="fold")
    table.caption = ("turns: mean per episode; faults: injected faults met; bad: malformed actions; "
                     f"{'tokens: generated by the models; ' if tokens else ''}"
                     "endings: done = customer ended, human = customer asked for one, "
                     "transfer = agent transferred, limit = max turns")
    for scenario_id, s in sorted(summary.items()):
        table.add_row(*_row(scenario_id, s, tokens))
    table.add_section()
    table.add_row(*_row("all", everything, tokens), style="bold")
    return table


def persona_table(mix: dict[str, dict[str, int]]) -> Table:
    """The customer personas a job ran: per trait, each value with its episode count."""
    table = Table(title="Customer personas")
    table.add_column("trait", no_wrap=True)
    table.add_column("episodes per value", overflow="fold")
    for trait in [*PERSONA_TRAITS, *sorted(set(mix) - set(PERSONA_TRAITS))]:
        if mix.get(trait):
            counts = sorted(mix[trait].items(), key=lambda kv: (-kv[1], kv[0]))
            table.add_row(trait, "  ".join(f"{value} {n}" for value, n in counts))
    return table


def _row(name: str, s: ScenarioSummary, tokens: bool) -> list[str]:
    rate = s.successes / s.episodes if s.episodes else 0.0
    endings = " ".join(f"{SHORT_ENDING.get(k, k)}:{v}" for k, v in sorted(s.terminations.items()))
    return [name, str(s.episodes), f"{rate:.0%}", f"{s.steps / max(s.episodes, 1):.1f}",
            str(s.tool_calls), str(s.faults), str(s.malformed), *([str(s.tokens)] if tokens else []), endings]


SHORT_ENDING = {"customer_ended": "done", "customer_requested_human": "human",
                "transferred_to_human": "transfer", "max_turns": "limit"}
