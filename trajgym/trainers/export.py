"""``trajgym export``: scored files -> a Hugging Face dataset of SFT records or DPO pairs.

The output folder holds::

    DIR/dataset/       datasets.Dataset.save_to_disk (datasets.load_from_disk reads it)
    DIR/data.parquet   the same rows as one Parquet file
    DIR/export.json    the manifest: format, inputs, counts, filter chain and hash, role, time, version

A filter chain (``--filters``, the file ``trajgym filter`` takes) runs over all the inputs' episodes
together before any record is built. For SFT it picks the episodes to learn from. For DPO it picks
the episodes that may pair, on both sides: a pair is made only of episodes the chain kept, so a DPO
chain should drop what must not be a side at all (``drop_excluded``, ``no_blame``, ``dedup``) and
leave out ``min_score``, ``success`` and ``top_k_per_group``, which would remove the rejected sides.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from trajgym._version import __version__
from trajgym.errors import TrajgymError
from trajgym.filters.chain import FilterResult, apply_chain, chain_steps
from trajgym.filters.config import load_filter_chain
from trajgym.filters.embed import Embedder
from trajgym.trainers.records import Built, DPORecord, SFTRecord, dpo_records, sft_records
from trajgym.trajectory.filtered import chain_stamp
from trajgym.trajectory.scored import ScoredTrajectory, iter_scored

log = logging.getLogger(__name__)

Format = Literal["sft", "dpo"]
FORMATS: tuple[Format, ...] = get_args(Format)
EXPORT_VERSION = 1
DATASET_DIR = "dataset"
PARQUET = "data.parquet"
MANIFEST = "export.json"
OUTPUTS = (DATASET_DIR, PARQUET, MANIFEST)
REPEAT = "episode read twice (an episode_id seen before; the first kept)"
INSTALL_HINT = "run `make train-setup` (the train extra: datasets, TRL)"


class ExportError(TrajgymError):
    """An export that cannot be made: a missing extra, bad input, nothing to export, a taken folder."""


@dataclass
class ExportResult:
    """What an export wrote and why it left episodes out."""

    out: Path
    format: Format
    records: int
    read: int
    skipped: dict[str, int]
    filtered: FilterResult | None
    manifest: dict[str, Any]


def _require_datasets() -> Any:
    if importlib.util.find_spec("datasets") is None:
        raise ExportError(f"exporting needs the datasets package: {INSTALL_HINT}")
    import datasets

    return datasets


def read_scored(paths: Sequence[str | Path]) -> tuple[list[ScoredTrajectory], list[dict[str, Any]], int]:
    """Every record of the scored files, in order, but an episode already read (its ``episode_id``
    seen in an earlier line or file: the same file given twice, a file and its filtered copy); per
    file its path and record count; and how many repeats were left out."""
    records: list[ScoredTrajectory] = []
    seen: set[str] = set()
    inputs, repeats = [], 0
    for path in paths:
        p = Path(path)
        if not p.is_file():
            raise ExportError(f"no scored file {p}: make one with `trajgym score TRAJECTORIES.jsonl --out {p}`")
        n = 0
        for rec in iter_scored(p):
            n += 1
            if rec.trajectory.episode_id in seen:
                repeats += 1
                continue
            seen.add(rec.trajectory.episode_id)
            records.append(rec)
        inputs.append({"path": str(p.resolve()), "records": n})
    return records, inputs, repeats


def _message_features(datasets: Any) -> dict[str, Any]:
    v = datasets.Value("string")
    call = {"id": v, "type": v, "function": {"name": v, "arguments": v}}
    return {"role": v, "content": v, "name": v, "tool_call_id": v, "tool_calls": datasets.List(call)}


def features(fmt: Format) -> Any:
    """The dataset's column types, in the order of the record's fields (explicit, so a column of
    Nones keeps its type)."""
    datasets = _require_datasets()
    s, i, f, b = (datasets.Value(t) for t in ("string", "int64", "float64", "bool"))
    chat = datasets.List(_message_features(datasets))
    if fmt == "sft":
        return datasets.Features({
            "messages": chat, "tools": s, "source": s, "episode_id": s, "scenario_id": s, "seed": i, "trial": i,
            "policy": s, "job_id": s, "weights_id": s, "total": f, "success": b, "rank": i, "group": s,
            "scores": s, "filter_hash": s, "human": s})
    side = {"episode_id": s, "source": s, "total": f, "policy": s, "weights_id": s}
    return datasets.Features({
        "prompt": chat, "chosen": chat, "rejected": chat, "tools": s, "scenario_id": s, "seed": i, "group": s,
        "margin": f, **{f"chosen_{k}": v for k, v in side.items()},
        **{f"rejected_{k}": v for k, v in side.items()}, "filter_hash": s, "human": s})


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file: name a folder (it will hold {', '.join(OUTPUTS)})")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(f"--out {out} is not empty: name a new folder, or pass --force to replace its "
                          f"{', '.join(OUTPUTS)}")


def export(inputs: Sequence[str | Path], out: str | Path, *, fmt: Format, role: str = "support",
           filters: str | Path | None = None, min_margin: float = 0.1, force: bool = False,
           embedder: Embedder | None = None, labels: str | Path | None = None) -> ExportResult:
    """Export the scored files ``inputs`` as ``fmt`` records into the folder ``out`` (see the module
    docstring for its layout and for what ``filters`` does). ``force`` replaces an earlier export's
    files in ``out``; other files there are left alone. Everything is written beside ``out`` first and
    moved into place, so a failed export leaves no half-written dataset. ``labels`` (the SQLite file
    ``trajgym review`` writes) overrides the scorers and the filter chain with what reviewers decided
    (see :func:`apply_labels`)."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if not inputs:
        raise ExportError("no scored files given: name at least one (from `trajgym score` or `trajgym filter`)")
    if min_margin < 0:
        raise ExportError(f"--min-margin must be >= 0, got {min_margin:g}")
    datasets = _require_datasets()
    dst = Path(out)
    _check_out(dst, force)
    records, sources, repeats = read_scored(inputs)
    everything = records
    filtered, stamp = None, None
    if filters is not None:
        chain = load_filter_chain(filters)
        stamp = chain_stamp(chain_steps(chain), filters)
        filtered = apply_chain(records, chain, embedder=embedder)
        records = [r.model_copy(update={"filter": stamp}) for r in filtered.kept]
    human: dict[str, Any] | None = None
    if labels is not None:
        records, built, human = apply_labels(everything, records, labels, fmt=fmt, role=role, min_margin=min_margin)
    else:
        built = sft_records(records, role) if fmt == "sft" else dpo_records(records, role, min_margin)
    if repeats:
        built.skipped[REPEAT] += repeats
    skipped = dict(sorted(built.skipped.items()))
    read = sum(s["records"] for s in sources)
    if not built.records:
        after = f" ({len(records)} left after the filter chain)" if filtered is not None else ""
        why = "; ".join(f"{k}: {n}" for k, n in skipped.items()) or "nothing to build from"
        raise ExportError(f"no {fmt} records from {read} scored episodes{after}: {why}")
    manifest = {
        "export_version": EXPORT_VERSION, "format": fmt, "role": role, "inputs": sources,
        "min_margin": min_margin if fmt == "dpo" else None,
        "filter": stamp.model_dump(mode="json") if stamp is not None else None,
        "filter_hashes": sorted({r.filter.hash for r in records if r.filter is not None}),
        "counts": {"read": read, "after_filter": len(records), "records": len(built.records), "skipped": skipped},
        "labels": human,
        "columns": list(features(fmt)),
        "layout": {"dataset": DATASET_DIR, "parquet": PARQUET},
        "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "trajgym_version": __version__,
    }
    rows = [r.model_dump(mode="json") for r in built.records]
    was_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # the CLI owns the terminal
    try:
        _write(dst, datasets.Dataset.from_list(rows, features=features(fmt)), manifest)
    finally:
        if was_on:
            datasets.enable_progress_bars()
    log.info("exported %d %s records from %d episodes to %s", len(rows), fmt, read, dst)
    return ExportResult(dst, fmt, len(rows), read, skipped, filtered, manifest)


def apply_labels(everything: list[ScoredTrajectory], kept: list[ScoredTrajectory], labels: str | Path, *,
                 fmt: Format, role: str = "support", min_margin: float = 0.1
                 ) -> tuple[list[ScoredTrajectory], Built[SFTRecord] | Built[DPORecord], dict[str, Any]]:
    """Records built with human labels: a rejected episode is dropped, an accepted one joins the
    data whatever the scorers and the filter chain said; for SFT an edited episode becomes its
    corrected conversation (up to its first edited turn); for DPO every edited turn is a pair (the
    edit chosen, the original rejected), and within a variation every accepted episode is paired
    with every rejected one. Returns the episodes kept, the records and the manifest's summary."""
    from trajgym.trainers.records import edit_pair, edited_sft_record, verdict_pairs
    from trajgym.trajectory.labels import open_labels

    store = open_labels(labels)
    try:
        verdicts, edits = store.verdicts(), store.edits()
    finally:
        store.close()
    by_id = {r.trajectory.episode_id: r for r in everything}
    unknown = sorted((set(verdicts) | set(edits)) - set(by_id))
    if unknown:
        log.warning("%d labelled episodes are not in these inputs (e.g. %s): left out", len(unknown), unknown[0])
    ids = {r.trajectory.episode_id for r in kept}
    kept = [r for r in kept if verdicts.get(r.trajectory.episode_id) != "reject"]
    kept += [r for r in everything if verdicts.get(r.trajectory.episode_id) == "accept" and r.trajectory.episode_id
             not in ids]
    built: Built[SFTRecord] | Built[DPORecord]
    made = 0
    if fmt == "sft":
        sft = sft_records(kept, role)
        edited = {eid for eid in edits if eid in by_id and verdicts.get(eid) != "reject"}
        sft.records = [r.model_copy(update={"human": "accept"}) if verdicts.get(r.episode_id) == "accept" else r
                       for r in sft.records if r.episode_id not in edited]
        for eid in sorted(edited):
            turn = min(edits[eid])
            lab = edits[eid][turn]
            sft.records.append(edited_sft_record(by_id[eid], turn, lab.payload, role=role,
                                                 note=f"edit turn {turn} v{lab.version} by {lab.reviewer}"))
            made += 1
        made += sum(1 for r in sft.records if r.human == "accept")
        built = sft
    else:
        dpo = dpo_records(kept, role, min_margin)
        for eid in sorted(e for e in edits if e in by_id):
            for turn, lab in sorted(edits[eid].items()):
                pair = edit_pair(by_id[eid], turn, lab.payload, role=role,
                                 note=f"edit turn {turn} v{lab.version} by {lab.reviewer}")
                if isinstance(pair, str):
                    dpo.skipped[f"human pair: {pair}"] += 1
                else:
                    dpo.records.append(pair)
                    made += 1
        human_pairs = verdict_pairs(everything, verdicts, role)
        dpo.records += human_pairs.records
        dpo.skipped.update(human_pairs.skipped)
        made += len(human_pairs.records)
        built = dpo
    summary = {"path": str(Path(labels).resolve()), "accepted": sum(v == "accept" for v in verdicts.values()),
               "rejected": sum(v == "reject" for v in verdicts.values()),
               "edited_turns": sum(len(t) for t in edits.values()), "unknown_episodes": len(unknown),
               "records_from_labels": made}
    return kept, built, summary


def _write(dst: Path, dataset: Any, manifest: dict[str, Any]) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    try:
        dataset.save_to_disk(str(tmp / DATASET_DIR))
        dataset.to_parquet(str(tmp / PARQUET))
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if not dst.exists():
            tmp.rename(dst)
            return
        for name in OUTPUTS:
            old = dst / name
            if old.is_dir():
                shutil.rmtree(old)
            elif old.exists():
                old.unlink()
            (tmp / name).rename(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
