"""Applying a filter chain to scored episodes, step by step, counting what each step dropped and why.

    >>> from trajgym.filters.config import FilterChain
    >>> chain = FilterChain.model_validate({"filters": [{"drop_excluded": True}, {"min_score": 0.5}]})
    >>> apply_chain([], chain).kept
    []
"""

from __future__ import annotations

import logging
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from trajgym.filters.config import DedupStep, FilterChain, load_filter_chain
from trajgym.filters.dedup import best_first, exact_duplicates, near_duplicates
from trajgym.filters.embed import Embedder
from trajgym.filters.errors import FilterError
from trajgym.registry import suggest
from trajgym.trajectory.filtered import DroppedRecord, chain_stamp, write_filter_output
from trajgym.trajectory.lines import open_lines
from trajgym.trajectory.scored import ScoredTrajectory, parse_scored

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Drop:
    """What a step says about one of the records it was given (an index into them)."""

    index: int
    reason: str
    duplicate_of: int | None = None


@dataclass
class StepContext:
    """What a step may need besides the records: the embedder, made on first use."""

    embedder: Embedder | None = None

    def get_embedder(self) -> Embedder:
        if self.embedder is None:
            self.embedder = Embedder()
        return self.embedder


StepFn = Callable[[Sequence[ScoredTrajectory], Any, StepContext], list[Drop]]

STEPS: dict[str, StepFn] = {}
"""Filter name (a key of :class:`~trajgym.filters.config.FilterStep`) -> the function that applies it."""


def _step(name: str) -> Callable[[StepFn], StepFn]:
    def add(fn: StepFn) -> StepFn:
        STEPS[name] = fn
        return fn

    return add


@_step("drop_excluded")
def _drop_excluded(records: Sequence[ScoredTrajectory], on: bool, ctx: StepContext) -> list[Drop]:
    return [Drop(i, f"excluded ({r.excluded})") for i, r in enumerate(records) if on and r.excluded is not None]


@_step("no_blame")
def _no_blame(records: Sequence[ScoredTrajectory], blames: list[str], ctx: StepContext) -> list[Drop]:
    return [Drop(i, f"blamed on {r.blame}") for i, r in enumerate(records) if r.blame in blames]


@_step("min_score")
def _min_score(records: Sequence[ScoredTrajectory], least: float, ctx: StepContext) -> list[Drop]:
    out = []
    for i, r in enumerate(records):
        if r.total is None:
            out.append(Drop(i, f"not scored ({r.excluded or 'no total'})"))
        elif r.total < least:
            out.append(Drop(i, f"total < {least:g}"))
    return out


@_step("min_scores")
def _min_scores(records: Sequence[ScoredTrajectory], least: dict[str, float], ctx: StepContext) -> list[Drop]:
    present = {name for r in records for name in r.scores}
    for name in least:
        if records and name not in present:
            close = suggest(name, sorted(present))
            hint = f" Did you mean '{close}'?" if close else ""
            raise FilterError(f"min_scores names the scorer '{name}', but no episode has a score from it "
                              f"(scorers in the file: {', '.join(sorted(present)) or 'none'}).{hint}")
    out = []
    for i, r in enumerate(records):
        for name, bound in least.items():
            result = r.scores.get(name)
            if result is not None and result.score < bound:
                out.append(Drop(i, f"{name} < {bound:g}"))
                break
    return out


@_step("success")
def _success(records: Sequence[ScoredTrajectory], wanted: bool, ctx: StepContext) -> list[Drop]:
    def why(r: ScoredTrajectory) -> str:
        return "not scored" if r.success is None else ("succeeded" if r.success else "failed")

    return [Drop(i, why(r)) for i, r in enumerate(records) if r.success is not wanted]


@_step("dedup")
def _dedup(records: Sequence[ScoredTrajectory], opts: DedupStep, ctx: StepContext) -> list[Drop]:
    out: list[Drop] = []
    rest = list(range(len(records)))
    if opts.exact:
        dups = exact_duplicates(records, scope=opts.scope, roles=opts.roles)
        out += [Drop(d.index, "exact duplicate", d.of) for d in dups]
        gone = {d.index for d in dups}
        rest = [i for i in rest if i not in gone]
    if opts.near is not None and rest:
        sub = [records[i] for i in rest]
        near = near_duplicates(sub, threshold=opts.near, scope=opts.scope, roles=opts.roles,
                               embedder=ctx.get_embedder())
        out += [Drop(rest[d.index], f"near duplicate (cos >= {opts.near:g})", rest[d.of]) for d in near]
    return out


@_step("top_k_per_group")
def _top_k(records: Sequence[ScoredTrajectory], k: int, ctx: StepContext) -> list[Drop]:
    seen: Counter[str] = Counter()
    out = []
    for i in best_first(records):
        group = records[i].group
        seen[group] += 1
        if seen[group] > k:
            out.append(Drop(i, f"not in the top {k} of its group"))
    return out


@dataclass
class StepReport:
    """What one step did: how many records it got and kept, and why it dropped the others."""

    step: str
    before: int
    after: int
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def dropped(self) -> int:
        return self.before - self.after


@dataclass(frozen=True)
class Dropped:
    """A dropped input record: its index in the input, the step (0-based) and the reason;
    ``duplicate_of`` is the input index of the kept copy, for duplicates."""

    index: int
    step: int
    reason: str
    duplicate_of: int | None = None


@dataclass
class FilterResult:
    """The records a chain kept (in input order), what each step did, and every dropped record."""

    kept: list[ScoredTrajectory]
    kept_indices: list[int]
    steps: list[StepReport]
    dropped: list[Dropped]
    total: int
    sidecar: Path | None = None
    """Where :func:`filter_file` wrote the dropped episodes (None for :func:`apply_chain` alone)."""


def apply_chain(records: Sequence[ScoredTrajectory], chain: FilterChain, *,
                embedder: Embedder | None = None, labels: Mapping[str, str] | None = None) -> FilterResult:
    """Apply the steps of ``chain`` in order; each sees only what the steps before it kept.
    ``embedder`` is used by near-duplicate steps (default: one is made when first needed).
    ``labels`` (episode id -> ``accept`` or ``reject``, from ``trajgym review``) override the steps
    as a last step: an accepted episode is kept whatever a step said, a rejected one dropped."""
    ctx = StepContext(embedder)
    alive = list(range(len(records)))
    steps: list[StepReport] = []
    dropped: list[Dropped] = []
    for n, step in enumerate(chain.filters):
        current = [records[i] for i in alive]
        drops = STEPS[step.name](current, step.value, ctx)
        reasons: dict[str, int] = defaultdict(int)
        gone: set[int] = set()
        for d in drops:
            if d.index in gone:
                continue
            gone.add(d.index)
            reasons[d.reason] += 1
            of = alive[d.duplicate_of] if d.duplicate_of is not None else None
            dropped.append(Dropped(alive[d.index], n, d.reason, of))
        report = StepReport(step.describe(), len(alive), len(alive) - len(gone), dict(reasons))
        steps.append(report)
        log.info("filter step %d (%s): kept %d of %d%s", n + 1, report.step, report.after, report.before,
                 "".join(f"; {why}: {c}" for why, c in reasons.items()))
        alive = [i for j, i in enumerate(alive) if j not in gone]
    if labels:
        alive, dropped = _human_step(records, alive, dropped, labels, steps)
    return FilterResult([records[i] for i in alive], alive, steps, dropped, len(records))


HUMAN_STEP = "human labels override the steps"


def _human_step(records: Sequence[ScoredTrajectory], alive: list[int], dropped: list[Dropped],
                labels: Mapping[str, str], steps: list[StepReport]) -> tuple[list[int], list[Dropped]]:
    verdict = {i: labels.get(r.trajectory.episode_id) for i, r in enumerate(records)}
    restored = [d.index for d in dropped if verdict[d.index] == "accept"]
    before = len(alive)
    kept = sorted({i for i in alive if verdict[i] != "reject"} | set(restored))
    n = len(steps)
    out = [d for d in dropped if verdict[d.index] != "accept"]
    out += [Dropped(i, n, "rejected by a reviewer", None) for i in alive if verdict[i] == "reject"]
    reasons = {k: v for k, v in (("rejected by a reviewer", sum(verdict[i] == "reject" for i in alive)),
                                 ("accepted by a reviewer, kept", len(restored))) if v}
    steps.append(StepReport(HUMAN_STEP, before, len(kept), reasons))
    return kept, out


def chain_steps(chain: FilterChain) -> list[dict[str, Any]]:
    """The chain's steps as one-key mappings with every setting in effect (defaults included): what
    the kept records' stamp and its hash record."""
    steps: list[dict[str, Any]] = []
    for step in chain.filters:
        value = step.value
        steps.append({step.name: value.model_dump(mode="json") if isinstance(value, BaseModel) else value})
    return steps


def filter_file(path: str | Path, chain: FilterChain | str | Path, out: str | Path, *,
                embedder: Embedder | None = None, labels: str | Path | None = None) -> FilterResult:
    """Filter the scored file ``path`` with ``chain`` (a chain or its YAML file) into ``out``.

    Each kept record carries the chain's stamp (its steps and their hash); the episodes dropped go to
    the sidecar ``out``'s ``.dropped.jsonl`` with the step and the reason that dropped each
    (:mod:`trajgym.trajectory.filtered`). The input is never written: ``out`` must be another file;
    both outputs are written whole or not at all (temporary files moved into place). ``labels``
    (``trajgym review``'s SQLite file) override the chain: accepted episodes kept, rejected dropped;
    the stamp's chain then ends with a ``human_labels`` step naming the file.
    """
    src, dst = Path(path), Path(out)
    if dst.resolve() == src.resolve() or (dst.exists() and src.exists() and os.path.samefile(src, dst)):
        raise FilterError(f"--out {dst} is the input file: filtering never overwrites its input; name another file")
    if not src.is_file():
        raise FilterError(f"no scored file {src}: make one with `trajgym score TRAJECTORIES.jsonl --out {src}`")
    chain_file = None if isinstance(chain, FilterChain) else Path(chain)
    if not isinstance(chain, FilterChain):
        chain = load_filter_chain(chain)
    numbered = [(n, parse_scored(src, n, raw, torn)) for n, raw, torn in open_lines(src, "scored trajectory")]
    records = [rec for _, rec in numbered]
    verdicts = None
    steps = chain_steps(chain)
    if labels is not None:
        from trajgym.trajectory.labels import open_labels

        store = open_labels(labels)
        try:
            verdicts = store.verdicts()
        finally:
            store.close()
        steps.append({"human_labels": str(Path(labels).resolve())})
    result = apply_chain(records, chain, embedder=embedder, labels=verdicts)
    stamp = chain_stamp(steps, chain_file)
    kept = [rec.model_copy(update={"filter": stamp}) for rec in result.kept]
    dropped = []
    for d in result.dropped:
        n, rec = numbered[d.index]
        t = rec.trajectory
        dropped.append(DroppedRecord(
            episode_id=t.episode_id, scenario_id=t.scenario_id, seed=t.seed, trial=t.trial, policy=t.policy,
            group=rec.group, source=f"{src}:{n}", step=d.step + 1, step_name=result.steps[d.step].step,
            reason=d.reason, filter_hash=stamp.hash,
            duplicate_of=records[d.duplicate_of].trajectory.episode_id if d.duplicate_of is not None else None))
    side = write_filter_output(dst, kept, dropped)
    result.kept = kept
    result.sidecar = side
    log.info("%s: kept %d of %d episodes, wrote %s (dropped ones: %s)", src, len(kept), len(records), dst, side)
    return result
