"""``trajgym loop CONFIG.yaml``: the self-improvement loop, generation after generation.

Generation g (1..N) takes the policy generation g-1 made (generation 0: the starting model) and

1. **plays**: the served policy plays the training scenarios (the curriculum says how many
   variations of each, drawn toward where the policy failed most, with a floor per scenario);
2. **scores** the episodes, **filters** them (success and a minimum total; human labels, when
   given, override the scorers' verdict);
3. **builds the data**: ``accumulate`` (default) trains on everything kept so far plus an anchor
   share of the oracle's episodes (the stand-in for human demonstrations), ``replace`` on this
   generation's kept episodes alone (to show the difference);
4. **trains** (SFT or DPO, the issue of ``trajgym train``) from the previous policy;
5. **serves** the new weights (a live swap: the server is never restarted between generations);
6. **evaluates** the new policy on held-out seeds and held-out scenarios;
7. **watches for collapse**: the diversity, persona coverage, rare-scenario success and phrase
   repetition of the generation's own episodes, against generation 1 (the starting model's);
   figures past their threshold warn, in the progress output and in the run's report.

    RUN/
      loop.json                       the config the loop was started with
      anchor/oracle.jsonl, scored.jsonl    the oracle's episodes (the anchor share)
      gen-00/eval/                    the starting model evaluated
      gen-01/curriculum.json          the units this generation plays, and why
             episodes.jsonl, scored.jsonl, kept.jsonl, data/, train/, eval/
             generation.json          the generation's record (written last: the generation is done)
      loop.csv                        one row per generation (held-out success, diversity, reward, time)

Every stage's output is written beside its place and moved in, or appended by a job that resumes;
a killed loop started again with ``--resume`` skips what is done and goes on where it stopped, so
no episode, record or checkpoint is written twice.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from trajgym.configfile import load_config
from trajgym.errors import ConfigFileError, TrajgymError
from trajgym.filters.collapse import CollapseThresholds, collapse_figures, collapse_warnings
from trajgym.rollout.agentspec import AgentChoice, AgentSpec
from trajgym.rollout.jobs import run_job
from trajgym.rollout.runner import WorkUnit, plan
from trajgym.scenario.catalog import scenario_files
from trajgym.scorers.base import ScoringContext
from trajgym.scorers.config import load_scoring_config
from trajgym.scorers.pipeline import Scoring, score_files
from trajgym.trainers.config import BUNDLED, absolute_path, scenario_ref
from trajgym.trajectory.scored import ScoredTrajectory, iter_scored
from trajgym.world.loader import load

log = logging.getLogger(__name__)

LOOP_FILE = "loop.json"
GENERATION_FILE = "generation.json"
CURVES_FILE = "loop.csv"


class LoopConfigError(ConfigFileError):
    """A loop config is broken. Carries every problem found, each located in the file."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainSettings(_Strict):
    """How each generation trains (the keys of ``trajgym train``'s configs that a loop sets)."""

    method: Literal["sft", "dpo", "grpo"] = Field("sft", description="how every generation trains")
    methods: list[Literal["sft", "dpo", "grpo"]] | None = Field(
        None, description="per generation instead (generation g takes methods[(g-1) % len]), e.g. [sft, grpo]")
    variations_per_step: int = Field(4, ge=1, description="grpo only")
    group_size: int = Field(4, ge=2, description="grpo only")
    grpo_temperature: float = Field(1.0, gt=0, description="grpo only: sampling temperature of its episodes")
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="optimizer steps per generation (overrides epochs)")
    learning_rate: float = Field(2e-5, gt=0)
    batch_size: int = Field(1, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_length: int = Field(4096, ge=16)
    precision: Literal["auto", "mixed", "bf16", "fp32"] = "auto"
    beta: float = Field(0.1, gt=0, description="dpo only")


class EvalSettings(_Strict):
    episodes: int = Field(5, ge=1, description="held-out variations per scenario")
    seed: int = Field(1000, description="the evaluation's job seed (never a training seed)")
    max_turns: int | None = Field(None, ge=1)
    max_tokens: int = Field(256, ge=1)


class LoopConfig(_Strict):
    """``trajgym loop``'s config (YAML). Relative paths are relative to the file's folder."""

    start: str = Field(BUNDLED, description="the policy of generation 0: 'bundled' or a model folder")
    output: str = Field(description="the run folder")
    generations: int = Field(3, ge=1)
    scenarios: list[str] = Field(min_length=1, description="the scenarios the loop plays and trains on")
    held_out_scenarios: list[str] = Field(default_factory=list, description="evaluated, never trained on")
    data: Literal["accumulate", "replace"] = Field(
        "accumulate", description="accumulate: train on everything kept so far plus the oracle anchor; replace: "
                                  "on this generation's kept episodes alone")
    anchor_share: float = Field(0.25, ge=0, lt=1, description="share of oracle episodes in the data (accumulate)")
    anchor_episodes: int = Field(8, ge=0, description="oracle variations per scenario to draw the anchor from")
    episodes_per_generation: int = Field(12, ge=1, description="variations the policy plays per generation")
    trials: int = Field(1, ge=1, description="episodes per variation (2 or more for dpo pairs)")
    temperature: float = Field(0.7, ge=0, description="sampling temperature while generating data")
    max_tokens: int = Field(256, ge=1)
    max_turns: int | None = Field(None, ge=1)
    curriculum_floor: float = Field(0.15, ge=0, le=1, description=(
        "every scenario's least share of the next generation's episodes; the rest goes where the policy failed"))
    min_total: float = Field(0.0, ge=0, le=1, description="kept episodes reach this total (and succeed)")
    labels: str | None = Field(None, description=(
        "human labels that override the scorers in the filter step: `trajgym review`'s SQLite file (e.g. "
        "RUN/labels.sqlite), or a JSONL of {episode_id, action: accept|reject}"))
    seed: int = 0
    train: TrainSettings = Field(default_factory=TrainSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    collapse: CollapseThresholds = Field(default_factory=CollapseThresholds)
    embed: bool = Field(False, description=(
        "add the embedding spread of the decision chains to the collapse figures (the sentence-embedding model of "
        "`make embed-setup`)"))
    player: str = Field("policy", description=(
        "who plays: 'policy' (the served model) or a registered agent such as 'oracle' (a dry run of the plumbing)"))
    server: str = Field("vllm", description="'vllm', or 'module:callable' making a PolicyServer (tests)")
    max_model_len: int = Field(8192, ge=256)
    concurrency: int = Field(32, ge=1)

    def resolve(self, base: Path) -> LoopConfig:
        def absolute(p: str) -> str:
            return absolute_path(base, p)

        def scenario(s: str) -> str:
            return scenario_ref(base, s)

        changes: dict[str, Any] = {"output": absolute(self.output), "scenarios": [scenario(s) for s in self.scenarios],
                                   "held_out_scenarios": [scenario(s) for s in self.held_out_scenarios]}
        if self.start != BUNDLED:
            changes["start"] = absolute(self.start)
        if self.labels is not None:
            changes["labels"] = absolute(self.labels)
        return self.model_copy(update=changes)


def load_loop_config(path: str | Path) -> LoopConfig:
    p = Path(path)
    config, _ = load_config(p, LoopConfig, what="loop config", error=LoopConfigError,
                            example="start: bundled, output: runs/loop, scenarios: [refund_damaged_item]")
    return config.resolve(p.parent.resolve())


# -- the server ----------------------------------------------------------------------------------------


class PolicyServer(Protocol):
    """What the loop needs of a model server: where to reach it, and a way to serve new weights."""

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible API root."""

    def load_weights(self, model_dir: str | Path) -> Any:
        """Serve ``model_dir``'s weights from now on; the answer has ``how`` and ``weights_id``."""

    def stop(self) -> None: ...


def make_server(config: LoopConfig, model: Path, log_path: Path) -> PolicyServer:
    if config.server == "vllm":
        from trajgym.serving.server import VLLMServer

        return VLLMServer(model, dev_mode=True, max_model_len=config.max_model_len, log_path=log_path).start()
    module, _, name = config.server.partition(":")
    if not name:
        raise TrajgymError(f"server {config.server!r}: give 'vllm' or 'module:callable'")
    factory = getattr(importlib.import_module(module), name)
    server: PolicyServer = factory(model)
    return server


# -- pieces -----------------------------------------------------------------------------------------------


def allocate(total: int, weights: dict[str, float]) -> dict[str, int]:
    """``total`` split over the keys in proportion to ``weights`` (largest remainders), each at least 1.

    >>> allocate(10, {"a": 1.0, "b": 3.0})
    {'a': 3, 'b': 7}
    """
    keys = sorted(weights)
    if total < len(keys):
        raise TrajgymError(f"{total} episodes cannot give each of {len(keys)} scenarios one")
    rest = total - len(keys)
    mass = sum(weights.values()) or 1.0
    raw = {k: rest * weights[k] / mass for k in keys}
    out = {k: 1 + math.floor(raw[k]) for k in keys}
    left = total - sum(out.values())
    for k in sorted(keys, key=lambda k: (-(raw[k] - math.floor(raw[k])), k))[:left]:
        out[k] += 1
    return out


def curriculum(scenarios: Sequence[str], previous: Sequence[ScoredTrajectory], *, total: int,
               floor: float, fault_kinds: Mapping[str, Iterable[str]] | None = None) -> dict[str, Any]:
    """How many variations of each scenario the next generation plays: a ``floor`` share spread
    evenly, the rest in proportion to each scenario's failure pressure in ``previous`` (the generation
    before's scored episodes; none: evenly).

    A scenario's pressure is its own failure rate, averaged with the failure rates of the fault kinds it
    injects (``fault_kinds``: scenario -> the kinds its file declares), measured over every episode in
    which that kind fired, whatever its scenario: a scenario whose few episodes passed is still drawn
    more when the faults it injects trip the policy elsewhere. A scenario with no scored episode has
    pressure 1 (nothing says the policy can do it). The failure rates per scenario and per fault kind,
    and the pressures, are returned with the split."""
    fails: dict[str, list[bool]] = defaultdict(list)
    by_fault: dict[str, list[bool]] = defaultdict(list)
    for rec in previous:
        if rec.total is None:
            continue
        failed = not rec.success
        fails[rec.trajectory.scenario_id].append(failed)
        for kind in sorted({f.kind for f in rec.trajectory.faults}):
            by_fault[kind].append(failed)
    rate = {s: (sum(fails[s]) / len(fails[s]) if fails.get(s) else 1.0) for s in scenarios}
    fault_rate = {k: sum(v) / len(v) for k, v in sorted(by_fault.items())}
    pressure = dict(rate)
    for s in scenarios:
        seen = [fault_rate[k] for k in sorted(set((fault_kinds or {}).get(s, ()))) if k in fault_rate]
        if seen and fails.get(s):
            pressure[s] = (rate[s] + sum(seen) / len(seen)) / 2
    even = 1.0 / len(scenarios)
    mass = sum(pressure.values())
    weights = {s: floor * even + (1 - floor) * (pressure[s] / mass if mass else even) for s in scenarios}
    return {"episodes": allocate(total, weights), "failure_rate": {s: round(r, 4) for s, r in rate.items()},
            "fault_failure_rate": {k: round(r, 4) for k, r in fault_rate.items()},
            "pressure": {s: round(p, 4) for s, p in pressure.items()}, "floor": floor}


def read_labels(path: str | Path | None) -> dict[str, str]:
    """episode id -> 'accept' or 'reject': the verdicts of ``trajgym review``'s SQLite file, or of a
    JSONL file of ``{episode_id, action}`` lines (the last label of an episode wins)."""
    if path is None:
        return {}
    p = Path(path)
    try:
        head = p.read_bytes()[:16]
    except OSError as exc:
        raise TrajgymError(f"cannot read the labels {p}: {exc.strerror or exc}") from None
    if head.startswith(b"SQLite format 3"):
        from trajgym.trajectory.labels import open_labels

        store = open_labels(p)
        try:
            return dict(store.verdicts())
        finally:
            store.close()
    out: dict[str, str] = {}
    for n, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            episode, action = str(row["episode_id"]), str(row["action"])
        except (ValueError, KeyError, TypeError):
            raise TrajgymError(f"{p}:{n}: a label is a JSON object with episode_id and action") from None
        if action not in ("accept", "reject"):
            raise TrajgymError(f"{p}:{n}: action is accept or reject, got {action!r}")
        out[episode] = action
    return out


def keep(rec: ScoredTrajectory, *, min_total: float, labels: dict[str, str]) -> bool:
    """Whether a scored episode joins the data: a human label decides where there is one, else the
    scorers (not excluded, a success, a total of at least ``min_total``)."""
    label = labels.get(rec.trajectory.episode_id)
    if label is not None:
        return label == "accept"
    return rec.total is not None and bool(rec.success) and rec.total >= min_total


def _write_lines(path: Path, lines: Sequence[bytes]) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_bytes(b"".join(line.rstrip(b"\n") + b"\n" for line in lines))
    tmp.replace(path)


def _scored_lines(path: Path) -> list[tuple[bytes, ScoredTrajectory]]:
    lines = [raw for raw in path.read_bytes().splitlines() if raw.strip()]
    return [(raw, ScoredTrajectory.model_validate_json(raw)) for raw in lines]


# -- the loop ---------------------------------------------------------------------------------------------


class Loop:
    """A loop run folder being driven (see the module docstring)."""

    def __init__(self, config: LoopConfig, *, resume: bool = False,
                 say: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.root = Path(config.output)
        self.say = say or (lambda msg: log.info("%s", msg))
        self.server: PolicyServer | None = None
        self.warnings: list[str] = []
        self._open(resume)

    def _open(self, resume: bool) -> None:
        wanted = self.config.model_dump(mode="json")
        held_file = self.root / LOOP_FILE
        if held_file.is_file():
            if not resume:
                raise TrajgymError(f"{self.root} holds a loop already: pass --resume to go on with it, or give "
                                   "another output folder")
            from trajgym.trainers.run import config_differences

            differ = config_differences(held_file, wanted, ignore=("generations",))
            if differ:
                raise TrajgymError(f"{self.root} holds a loop started with another config (differs in: "
                                   f"{', '.join(differ)}); resume it with the same config")
        elif self.root.exists() and any(self.root.iterdir()):
            raise TrajgymError(f"{self.root} is not empty and holds no loop: give a new or empty output folder")
        self.root.mkdir(parents=True, exist_ok=True)
        held_file.write_text(json.dumps(wanted, indent=2) + "\n")

    def gen(self, g: int) -> Path:
        return self.root / f"gen-{g:02d}"

    def done(self, g: int) -> dict[str, Any] | None:
        path = self.gen(g) / GENERATION_FILE
        return json.loads(path.read_text()) if path.is_file() else None

    def model_of(self, g: int) -> Path:
        if g == 0:
            if self.config.start == BUNDLED:
                from trajgym.serving.convert import convert_bundled_model

                return convert_bundled_model()
            return Path(self.config.start)
        return self.gen(g) / "train" / "model"

    # -- driving ----------------------------------------------------------------------------------------

    def run(self) -> list[dict[str, Any]]:
        """Every generation not done yet; return the generations' records."""
        records: list[dict[str, Any]] = []
        last_done = max((g for g in range(self.config.generations + 1) if self.done(g)), default=-1)
        try:
            for g in range(self.config.generations + 1):
                record = self.done(g)
                if record is None:
                    if self.server is None and (self.config.player == "policy" or self.config.server != "vllm"):
                        self.server = make_server(self.config, self.model_of(max(last_done, 0)),
                                                  self.root / "vllm.log")
                    record = self.generation0() if g == 0 else self.generation(g)
                    last_done = g
                else:
                    self.say(f"generation {g}: done before ({record.get('weights_id')})")
                records.append(record)
                self._curves(records)
        finally:
            if self.server is not None:
                self.server.stop()
                self.server = None
        return records

    def _player(self, *, temperature: float, g: int) -> AgentChoice:
        if self.config.player != "policy":
            return AgentChoice(self.config.player)
        assert self.server is not None
        return AgentChoice("openai", {
            "base_url": self.server.base_url, "api": "tokens", "tool_choice": "auto", "loop_generation": g,
            "sampling": {"temperature": temperature, "max_tokens": self.config.max_tokens}, "timeout_s": 900.0})

    def _scoring(self) -> Scoring:
        return Scoring(*load_scoring_config(None), ScoringContext())

    def _score(self, src: Path, dst: Path) -> list[ScoredTrajectory]:
        if not dst.is_file():
            tmp = dst.with_name(dst.name + ".partial")
            tmp.unlink(missing_ok=True)
            score_files([src], tmp, self._scoring())
            tmp.replace(dst)
        return list(iter_scored(dst))

    def _evaluate(self, g: int) -> dict[str, Any]:
        from trajgym.trainers.evaluate import EvalOptions, evaluate

        folder = self.gen(g) / "eval"
        if (folder / "eval.json").is_file():
            return dict(json.loads((folder / "eval.json").read_text()))
        opts = EvalOptions(episodes=self.config.eval.episodes, seed=self.config.eval.seed,
                           max_turns=self.config.eval.max_turns, max_tokens=self.config.eval.max_tokens,
                           concurrency=self.config.concurrency, max_model_len=self.config.max_model_len)
        agent = None if self.config.player == "policy" else AgentChoice(self.config.player)
        model = self.model_of(g)
        self.say(f"generation {g}: evaluating {model.name if g else 'the starting model'} on held-out variations")
        result = evaluate(model, [*self.config.scenarios, *self.config.held_out_scenarios], folder, options=opts,
                          base_url=self.server.base_url if self.server is not None else None, agent=agent,
                          trained_scenarios=self.config.scenarios, extra_seen=self._trained_units(g),
                          resume=True, loop_generation=g)
        return result.to_json()

    def _trained_units(self, g: int) -> set[tuple[str, int]]:
        """Every (scenario, seed) variation played by generations up to ``g`` and by the anchor."""
        units: set[tuple[str, int]] = set()
        for k in range(1, g + 1):
            cur = self.gen(k) / "curriculum.json"
            if cur.is_file():
                units |= {(s, int(n)) for s, n in json.loads(cur.read_text())["units"]}
        anchor = self.root / "anchor" / "units.json"
        if anchor.is_file():
            units |= {(s, int(n)) for s, n in json.loads(anchor.read_text())}
        return units

    def generation0(self) -> dict[str, Any]:
        t0 = time.monotonic()
        self._anchor()
        ev = self._evaluate(0)
        from trajgym.serving.weights import weights_id

        record = {"generation": 0, "model": str(self.model_of(0)), "weights_id": weights_id(self.model_of(0)),
                  "eval": _splits(ev), "seconds": {"eval": round(time.monotonic() - t0, 1)}}
        self._write_record(0, record)
        self.say(f"generation 0 (the starting model): {_split_text(_splits(ev))}")
        return record

    def _anchor(self) -> Path | None:
        """The oracle's scored episodes, played once: the anchor share's source."""
        folder = self.root / "anchor"
        scored = folder / "scored.jsonl"
        if self.config.data != "accumulate" or not self.config.anchor_share or not self.config.anchor_episodes:
            return None
        if scored.is_file() and (folder / "units.json").is_file():
            return scored
        folder.mkdir(exist_ok=True)
        templates = [load(f) for f in scenario_files(list(self.config.scenarios))]
        units = plan(templates, self.config.anchor_episodes, self.config.seed + 500, 1, self.config.max_turns)
        (folder / "units.json").write_text(json.dumps(sorted({(u.key.scenario_id, u.key.seed) for u in units})))
        run_job(units, folder / "oracle.jsonl", AgentSpec({"support": AgentChoice("oracle")}), resume=True)
        self._score(folder / "oracle.jsonl", scored)
        return scored

    def _units(self, g: int) -> list[WorkUnit]:
        """The generation's work units, decided once (``curriculum.json``) and read back on resume."""
        folder = self.gen(g)
        path = folder / "curriculum.json"
        templates = {t.id: t for t in (load(f) for f in scenario_files(list(self.config.scenarios)))}
        if path.is_file():
            plan_ = json.loads(path.read_text())
        else:
            previous = folder.parent / f"gen-{g - 1:02d}" / "scored.jsonl"
            prev = list(iter_scored(previous)) if previous.is_file() else []
            plan_ = curriculum(sorted(templates), prev, total=self.config.episodes_per_generation,
                               floor=self.config.curriculum_floor,
                               fault_kinds={sid: [f.kind for f in t.spec.faults] for sid, t in templates.items()})
            units = []
            for sid, n in plan_["episodes"].items():
                units += plan([templates[sid]], n, self.config.seed * 1000 + g, self.config.trials,
                              self.config.max_turns)
            plan_["units"] = sorted({(u.key.scenario_id, u.key.seed) for u in units})
            tmp = path.with_name(path.name + ".partial")
            tmp.write_text(json.dumps(plan_, indent=2) + "\n")
            tmp.replace(path)
        out: list[WorkUnit] = []
        for sid, n in plan_["episodes"].items():
            out += plan([templates[sid]], n, self.config.seed * 1000 + g, self.config.trials, self.config.max_turns)
        return out

    def generation(self, g: int) -> dict[str, Any]:
        config = self.config
        folder = self.gen(g)
        folder.mkdir(exist_ok=True)
        seconds: dict[str, float] = {}
        t0 = time.monotonic()
        units = self._units(g)
        self.say(f"generation {g}: playing {len(units)} episodes")
        run_job(units, folder / "episodes.jsonl", AgentSpec({"support": self._player(temperature=config.temperature,
                                                                                     g=g - 1)}),
                concurrency=config.concurrency, resume=True)
        seconds["play"] = round(time.monotonic() - t0, 1)
        t0 = time.monotonic()
        scored = self._score(folder / "episodes.jsonl", folder / "scored.jsonl")
        seconds["score"] = round(time.monotonic() - t0, 1)
        labels = read_labels(config.labels)
        kept_path = folder / "kept.jsonl"
        if not kept_path.is_file():
            _write_lines(kept_path, [raw for raw, rec in _scored_lines(folder / "scored.jsonl")
                                     if keep(rec, min_total=config.min_total, labels=labels)])
        kept = sum(1 for line in kept_path.read_bytes().splitlines() if line.strip())
        method = self.method(g)
        t0 = time.monotonic()
        if method == "grpo":  # it plays its own episodes: no dataset
            data, data_info = None, {"records": 0, "own": 0, "anchor": 0, "generations": [], "method": "grpo"}
        else:
            data, data_info = self._data(g, method)
        seconds["data"] = round(time.monotonic() - t0, 1)
        t0 = time.monotonic()
        summary = self._train(g, data, method)
        seconds["train"] = round(time.monotonic() - t0, 1)
        t0 = time.monotonic()
        model = self.model_of(g)
        how = None
        if self.server is not None:
            how = self.server.load_weights(model).how
        elif self.config.player == "policy" or self.config.server != "vllm":
            self.server = make_server(self.config, model, self.root / "vllm.log")
            how = "start"
        seconds["serve"] = round(time.monotonic() - t0, 1)
        t0 = time.monotonic()
        ev = self._evaluate(g)
        seconds["eval"] = round(time.monotonic() - t0, 1)
        embedder = None
        if config.embed:
            from trajgym.filters.embed import Embedder

            embedder = Embedder()
        figures = collapse_figures(scored, embedder=embedder)
        reference = self.done(1)
        ref_figures = reference["collapse"] if reference else figures
        warnings = collapse_warnings(ref_figures, figures, since="generation 1", thresholds=config.collapse)
        from trajgym.serving.weights import weights_id

        rewards = [r.total for r in scored if r.total is not None]
        record = {
            "generation": g, "model": str(model), "weights_id": weights_id(model), "served_by": how,
            "played": len(scored), "kept": kept, "data": data_info, "train": summary,
            "reward": round(sum(rewards) / len(rewards), 4) if rewards else None,
            "eval": _splits(ev), "collapse": figures, "warnings": warnings, "seconds": seconds,
            "curriculum": json.loads((folder / "curriculum.json").read_text())["episodes"],
        }
        self._write_record(g, record)
        self.say(f"generation {g}: played {len(scored)}, kept {kept}, trained on {data_info['records']} records "
                 f"({data_info['anchor']} oracle); {_split_text(_splits(ev))}; "
                 f"distinct chains {figures.get('distinct_chain_share', 0.0):.0%}, action 2-gram entropy "
                 f"{figures.get('action_2gram_entropy_bits', 0.0):.2f} bits; "
                 f"{sum(seconds.values()):.0f} s")
        for w in warnings:
            self.say(f"generation {g}: COLLAPSE WARNING: {w}")
        return record

    def method(self, g: int) -> Literal["sft", "dpo", "grpo"]:
        """How generation ``g`` (1-based) trains."""
        settings = self.config.train
        return settings.methods[(g - 1) % len(settings.methods)] if settings.methods else settings.method

    def _data(self, g: int, method: Literal["sft", "dpo", "grpo"]) -> tuple[Path, dict[str, Any]]:
        """The generation's training data: the export folder, and what went into it."""
        from trajgym.trainers.export import export

        config = self.config
        folder = self.gen(g)
        data = folder / "data"
        info_path = folder / "data.json"
        if info_path.is_file() and data.is_dir():
            return data, dict(json.loads(info_path.read_text()))
        gens = range(1, g + 1) if config.data == "accumulate" else [g]
        lines: list[bytes] = []
        for k in gens:
            lines += [raw for raw in (self.gen(k) / "kept.jsonl").read_bytes().splitlines() if raw.strip()]
        own = len(lines)
        anchor = 0
        anchor_file = self._anchor()  # made once (a generation 0 evaluated elsewhere did not make it)
        if anchor_file is not None:
            oracle = [raw for raw, rec in _scored_lines(anchor_file)
                      if keep(rec, min_total=config.min_total, labels={})]
            want = max(1, round(config.anchor_share / (1 - config.anchor_share) * max(own, 1)))
            anchor = min(len(oracle), want)
            lines += oracle[:anchor]
        if not lines:
            raise TrajgymError(f"generation {g}: no episode was kept, so there is nothing to train on (the policy "
                               "failed every episode; lower min_total, use data: accumulate with an anchor_share, "
                               "or start from a better model)")
        source = folder / "train-input.jsonl"
        _write_lines(source, lines)
        if data.exists():
            shutil.rmtree(data)
        result = export([source], data, fmt="dpo" if method == "dpo" else "sft")
        info = {"records": result.records, "own": own, "anchor": anchor, "generations": list(gens),
                "skipped": result.skipped}
        info_path.write_text(json.dumps(info, indent=2) + "\n")
        return data, info

    def _train(self, g: int, data: Path | None, method: Literal["sft", "dpo", "grpo"]) -> dict[str, Any]:
        from trajgym.trainers.config import DPORunConfig, GRPORunConfig, SFTRunConfig

        settings = self.config.train
        run = self.gen(g) / "train"
        if (run / "summary.json").is_file() and (run / "model").is_dir():
            return dict(json.loads((run / "summary.json").read_text()))
        common: dict[str, Any] = {
            "model": str(self.model_of(g - 1)), "data": str(data) if data else None, "output": str(run),
            "epochs": settings.epochs, "max_steps": settings.max_steps, "learning_rate": settings.learning_rate,
            "batch_size": settings.batch_size, "grad_accum": settings.grad_accum, "max_length": settings.max_length,
            "precision": settings.precision, "seed": self.config.seed + g, "save_steps": 10}
        self.say(f"generation {g}: training ({method}) from {self.model_of(g - 1)}")
        if method == "grpo":
            from trajgym.trainers.grpo import train_grpo

            if self.server is not None:  # GRPO serves its policy itself, swapping weights every step
                self.server.stop()
                self.server = None
            common.pop("epochs")
            return train_grpo(GRPORunConfig(
                **{**common, "max_steps": settings.max_steps or 4}, scenarios=list(self.config.scenarios),
                variations_per_step=settings.variations_per_step, group_size=settings.group_size,
                temperature=settings.grpo_temperature, max_tokens=self.config.max_tokens,
                max_turns=self.config.max_turns, concurrency=self.config.concurrency,
                max_model_len=self.config.max_model_len), progress=False)
        if method == "sft":
            from trajgym.trainers.sft import train_sft

            return train_sft(SFTRunConfig(**common), progress=False)
        from trajgym.trainers.dpo import train_dpo

        return train_dpo(DPORunConfig(**common, beta=settings.beta), progress=False)

    def _write_record(self, g: int, record: dict[str, Any]) -> None:
        path = self.gen(g) / GENERATION_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".partial")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        tmp.replace(path)

    def _curves(self, records: Sequence[dict[str, Any]]) -> None:
        from trajgym.trainers import curves

        curves.write_rows(self.root / CURVES_FILE, [loop_row(r) for r in records])


def loop_row(record: dict[str, Any]) -> dict[str, Any]:
    """A generation's row of ``loop.csv``: held-out success, reward, diversity, loss, time."""
    ev = record.get("eval") or {}
    figures = record.get("collapse") or {}
    row: dict[str, Any] = {"step": record["generation"]}
    for split, key in (("held-out seeds", "heldout_seeds_success"), ("held-out scenario", "heldout_scenarios_success")):
        s = ev.get(split) or {}
        if s.get("episodes"):
            row[key] = round(s["successes"] / s["episodes"], 4)
    if record.get("reward") is not None:
        row["reward"] = record["reward"]
    for name in ("distinct_chain_share", "action_2gram_entropy_bits", "embedding_spread", "phrase_repetition",
                 "rare_scenario_success", "persona_mood_values"):
        if name in figures:
            row[name] = round(float(figures[name]), 4)
    train = record.get("train") or {}
    if train.get("final_loss") is not None:
        row["train_loss"] = train["final_loss"]
    row["warnings"] = len(record.get("warnings") or [])
    row["seconds"] = round(sum((record.get("seconds") or {}).values()), 1)
    return row


def _splits(ev: dict[str, Any]) -> dict[str, Any]:
    return dict(ev.get("splits") or {})


def _split_text(splits: dict[str, Any]) -> str:
    parts = []
    for split in ("held-out seeds", "held-out scenario"):
        s = splits.get(split) or {}
        if s.get("episodes"):
            parts.append(f"{split} {s['successes']}/{s['episodes']}")
    return ", ".join(parts) or "no held-out episodes"

