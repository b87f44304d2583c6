"""Evaluate a policy on what training never saw: held-out seeds of its training scenarios, and
held-out scenarios.

A trained model folder records the (scenario, seed) variations it was trained on
(``trajgym_training.json``, :mod:`trajgym.trainers.run`); an evaluation plays the scenarios asked
for with a job seed of its own, drops any variation training saw (and says so), serves the model
with vLLM (or uses a running server), scores the episodes and reports, per scenario, success and
pass^k (the chance that k trials of one variation all succeed), the scenarios split into those
training saw (held-out seeds) and those it did not (held-out scenarios).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from trajgym.errors import TrajgymError
from trajgym.rollout.agentspec import AgentChoice, AgentSpec
from trajgym.rollout.jobs import run_job
from trajgym.rollout.runner import WorkUnit, plan
from trajgym.scenario.catalog import scenario_files
from trajgym.scorers.base import ScoringContext
from trajgym.scorers.config import load_scoring_config
from trajgym.scorers.pipeline import Scoring, score_files
from trajgym.trainers.run import read_training
from trajgym.world.loader import load

log = logging.getLogger(__name__)

Split = Literal["held-out seeds", "held-out scenario"]


@dataclass
class ScenarioEval:
    """One scenario's results."""

    scenario_id: str
    split: Split
    episodes: int
    successes: int
    mean_total: float
    pass_k: dict[int, float] = field(default_factory=dict)

    @property
    def success(self) -> float:
        return self.successes / self.episodes if self.episodes else 0.0


@dataclass
class EvalResult:
    """An evaluation: per-scenario rows, the files it wrote, and what it left out."""

    model: str
    weights_id: str | None
    rows: list[ScenarioEval]
    trajectories: Path
    scored: Path
    dropped: int
    """Units left out because training saw their variation."""
    seconds: dict[str, float] = field(default_factory=dict)

    def split_success(self, split: Split) -> tuple[int, int]:
        """(successes, episodes) over the scenarios of ``split``."""
        rows = [r for r in self.rows if r.split == split]
        return sum(r.successes for r in rows), sum(r.episodes for r in rows)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["trajectories"], data["scored"] = str(self.trajectories), str(self.scored)
        data["splits"] = {s: dict(zip(("successes", "episodes"), self.split_success(s), strict=True))
                          for s in ("held-out seeds", "held-out scenario")}
        return data


def trained_on(model_dir: str | Path | None) -> tuple[set[tuple[str, int]], set[str]]:
    """The (scenario, seed) variations and the scenarios a model folder was trained on (none for a
    model trajgym did not train)."""
    if model_dir is None:
        return set(), set()
    info = read_training(model_dir)
    units = {(str(s), int(n)) for s, n in info.get("trained_on", [])}
    return units, {s for s, _ in units}


def held_out_units(scenarios: Sequence[str], *, episodes: int, trials: int, seed: int,
                   seen: set[tuple[str, int]], max_turns: int | None = None) -> tuple[list[WorkUnit], int]:
    """The units of ``episodes`` variations (x ``trials``) of each scenario, without the variations in
    ``seen``; and how many units were left out for that."""
    templates = [load(f) for f in scenario_files(list(scenarios))]
    units = plan(templates, episodes, seed, trials, max_turns)
    kept = [u for u in units if (u.key.scenario_id, u.key.seed) not in seen]
    return kept, len(units) - len(kept)


@dataclass
class EvalOptions:
    """How the policy plays: greedy by default, all episodes in flight, token ids sent to vLLM."""

    episodes: int = 10
    trials: int = 1
    seed: int = 1000
    max_turns: int | None = None
    temperature: float = 0.0
    max_tokens: int = 256
    api: Literal["chat", "tokens"] = "tokens"
    tool_choice: Literal["auto", "required"] = "auto"
    concurrency: int = 64
    request_timeout: float = 900.0
    max_model_len: int = 8192


def evaluate(model_dir: str | Path | None, scenarios: Sequence[str], out_dir: str | Path, *,
             options: EvalOptions | None = None, base_url: str | None = None,
             hold_out_from: Iterable[str | Path] = (), extra_seen: Iterable[tuple[str, int]] = (),
             trained_scenarios: Iterable[str] = (), vllm_log: str | Path | None = None,
             on_progress: Callable[[str], None] | None = None, agent: AgentChoice | None = None,
             resume: bool = False, loop_generation: int | None = None) -> EvalResult:
    """Play ``scenarios`` with the model (served from ``model_dir`` by vLLM, or at ``base_url``),
    score the episodes into ``out_dir`` and summarise.

    Variations that ``model_dir`` or any folder of ``hold_out_from`` was trained on, or that are in
    ``extra_seen``, are never played. A scenario counts as "held-out seeds" when one of those folders
    (or ``trained_scenarios``) trained on it, else as "held-out scenario". ``agent`` plays instead of
    the served model (a baseline such as the oracle); ``resume`` goes on with an evaluation that was
    cut off in ``out_dir`` (the episodes it holds are kept, the rest played, all scored again).
    """
    opts = options or EvalOptions()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    trajectories, scored = out / "episodes.jsonl", out / "scored.jsonl"
    for path in (trajectories, scored):
        if not resume and path.exists() and path.stat().st_size:
            raise TrajgymError(f"{path} exists: give a new --out folder for this evaluation")
    seen, seen_scenarios = set(extra_seen), set(trained_scenarios)
    for folder in [*([model_dir] if model_dir is not None else []), *hold_out_from]:
        variations, names = trained_on(folder)
        seen |= variations
        seen_scenarios |= names
    units, dropped = held_out_units(scenarios, episodes=opts.episodes, trials=opts.trials, seed=opts.seed,
                                    seen=seen, max_turns=opts.max_turns)
    if not units:
        raise TrajgymError("every variation asked for was trained on: give another --seed or more --episodes")
    if dropped:
        log.warning("left out %d units whose variation the model was trained on", dropped)
    say = on_progress or (lambda _msg: None)
    seconds: dict[str, float] = {}
    server = None
    start = time.monotonic()
    if base_url is None and agent is None:
        if model_dir is None:
            raise TrajgymError("give a model folder to serve, or the base URL of a running server")
        from trajgym.serving.server import VLLMServer

        say(f"starting vLLM on {model_dir}")
        server = VLLMServer(model_dir, max_model_len=opts.max_model_len, log_path=vllm_log).start()
        base_url = server.base_url
        seconds["serve"] = round(time.monotonic() - start, 1)
    try:
        sampling: dict[str, Any] = {"temperature": opts.temperature, "max_tokens": opts.max_tokens}
        player = agent or AgentChoice("openai", {
            "base_url": base_url, "api": opts.api, "tool_choice": opts.tool_choice, "sampling": sampling,
            "timeout_s": opts.request_timeout, "loop_generation": loop_generation})
        say(f"playing {len(units)} episodes")
        t0 = time.monotonic()
        run_job(units, trajectories, AgentSpec({"support": player}), concurrency=opts.concurrency, resume=resume)
        seconds["play"] = round(time.monotonic() - t0, 1)
    finally:
        if server is not None:
            server.stop()
    t0 = time.monotonic()
    config, scorers = load_scoring_config(None)
    scored.unlink(missing_ok=True)
    summary = score_files([trajectories], scored, Scoring(config, scorers, ScoringContext()))
    seconds["score"] = round(time.monotonic() - t0, 1)
    rows = [ScenarioEval(scenario_id=name, split="held-out seeds" if name in seen_scenarios else "held-out scenario",
                         episodes=int(row["episodes"]), successes=int(row["successes"]),
                         mean_total=round(float(row["total"]), 4), pass_k=dict(summary.pass_k.get(name, {})))
            for name, row in summary.per_scenario.items()]
    from trajgym.serving.weights import weights_id

    result = EvalResult(model=str(model_dir or base_url), rows=rows, trajectories=trajectories, scored=scored,
                        dropped=dropped, seconds=seconds,
                        weights_id=weights_id(model_dir) if model_dir is not None else None)
    (out / "eval.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return result
