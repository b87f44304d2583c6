"""``trajgym export``: scored files -> a datasets folder + Parquet + manifest, for SFT and DPO."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("datasets")
pytest.importorskip("trl")

import datasets
from rich.console import Console

from trajgym.cli.export import add_export_parser, export_command
from trajgym.errors import TrajgymError
from trajgym.trainers.export import ExportError, export
from trajgym.trainers.records import DPORecord, SFTRecord, learner_messages
from trajgym.trajectory.scored import ScoredTrajectory, iter_scored


@pytest.fixture(scope="module")
def scored_records(scored_file: Path) -> list[ScoredTrajectory]:
    return list(iter_scored(scored_file))


def _filters(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "filters.yaml"
    path.write_text(text)
    return path


def _load(out: Path) -> tuple[Any, Any, dict[str, Any]]:
    return (datasets.load_from_disk(str(out / "dataset")), datasets.Dataset.from_parquet(str(out / "data.parquet")),
            json.loads((out / "export.json").read_text()))


def test_sft_export_loads_back(scored_file: Path, scored_records: list[ScoredTrajectory], tmp_path: Path,
                               tokenizer: Any) -> None:
    result = export([scored_file], tmp_path / "sft", fmt="sft")
    disk, parquet, manifest = _load(tmp_path / "sft")
    assert result.records == len(disk) == len(parquet) == len(scored_records) == 6
    assert disk.column_names == parquet.column_names == list(SFTRecord.model_fields) == manifest["columns"]
    assert disk.to_list() == parquet.to_list()
    assert manifest["format"] == "sft" and manifest["role"] == "support" and manifest["filter"] is None
    assert manifest["counts"] == {"read": 6, "after_filter": 6, "records": 6, "skipped": {}}
    assert manifest["inputs"] == [{"path": str(scored_file.resolve()), "records": 6}]
    for row, rec in zip(disk, scored_records, strict=True):
        traj = rec.trajectory
        assert row["messages"] == learner_messages(traj)
        assert (row["episode_id"], row["source"], row["total"], row["policy"]) == (
            traj.episode_id, rec.source, rec.total, traj.policy)
        tools = json.loads(row["tools"])
        assert tools == traj.tools["support"]
        # the rows render as the agent's own history did (Arrow's round trip changes nothing)
        assert (tokenizer.apply_chat_template(row["messages"], tools=tools, tokenize=False)
                == tokenizer.apply_chat_template(learner_messages(traj), tools=traj.tools["support"], tokenize=False))


def test_dpo_export_pairs_oracle_over_random(scored_file: Path, scored_records: list[ScoredTrajectory],
                                             tmp_path: Path) -> None:
    result = export([scored_file], tmp_path / "dpo", fmt="dpo", min_margin=0.5)
    disk, parquet, manifest = _load(tmp_path / "dpo")
    assert result.records == len(disk) == len(parquet) == 3 and manifest["min_margin"] == 0.5
    assert disk.column_names == list(DPORecord.model_fields)
    by_id = {r.trajectory.episode_id: r for r in scored_records}
    for row in disk:
        chosen, rejected = by_id[row["chosen_episode_id"]], by_id[row["rejected_episode_id"]]
        assert chosen.group == rejected.group == row["group"] and chosen.total == 1.0
        assert rejected.total is not None
        assert any(a.kind == "oracle" for a in chosen.trajectory.agents)
        assert any(a.kind == "random" for a in rejected.trajectory.agents)
        assert row["margin"] == pytest.approx(chosen.total - rejected.total) and row["margin"] >= 0.5
        cut = len(row["prompt"])
        assert learner_messages(chosen.trajectory)[:cut + 1] == row["prompt"] + row["chosen"]
        assert learner_messages(rejected.trajectory)[:cut + 1] == row["prompt"] + row["rejected"]
        assert row["chosen"][0]["role"] == row["rejected"][0]["role"] == "assistant"
        assert row["chosen"] != row["rejected"]


def test_filters_pick_the_episodes(scored_file: Path, tmp_path: Path) -> None:
    chain = _filters(tmp_path, "filters:\n  - min_score: 0.9\n")
    result = export([scored_file], tmp_path / "kept", fmt="sft", filters=chain)
    disk, _, manifest = _load(tmp_path / "kept")
    assert len(disk) == 3 and set(disk["total"]) == {1.0}
    assert result.filtered is not None and result.filtered.steps[0].dropped == 3
    assert manifest["filter"]["file"] == str(chain) and set(disk["filter_hash"]) == {manifest["filter"]["hash"]}
    assert manifest["counts"]["after_filter"] == 3
    # for DPO the chain picks who may pair, on both sides: the rejected sides are gone, so no pairs
    with pytest.raises(ExportError, match=r"no dpo records from 6 scored episodes \(3 left after the filter"):
        export([scored_file], tmp_path / "none", fmt="dpo", filters=chain)
    ok = export([scored_file], tmp_path / "pairs", fmt="dpo", filters=_filters(tmp_path, "filters: [drop_excluded: true]\n"))
    assert ok.records == 3


def test_bad_input_is_a_clear_error(scored_file: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"no scored file .*missing\.jsonl: make one with `trajgym score"):
        export([tmp_path / "missing.jsonl"], tmp_path / "a", fmt="sft")
    corrupt = tmp_path / "corrupt.jsonl"
    corrupt.write_text(scored_file.read_text().splitlines()[0] + "\n{not json\n")
    with pytest.raises(TrajgymError, match=r"corrupt\.jsonl"):
        export([corrupt], tmp_path / "b", fmt="sft")
    with pytest.raises(ExportError, match="unknown export format 'kto'"):
        export([scored_file], tmp_path / "c", fmt="kto")  # type: ignore[arg-type]
    trajectories = tmp_path / "raw.jsonl"
    trajectories.write_text(json.dumps(json.loads(scored_file.read_text().splitlines()[0])["trajectory"]) + "\n")
    with pytest.raises(TrajgymError, match="score the file first"):
        export([trajectories], tmp_path / "d", fmt="sft")
    with pytest.raises(ExportError, match=r"no sft records .*no nobody turns: 6"):
        export([scored_file], tmp_path / "e", fmt="sft", role="nobody")
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_a_used_folder_needs_force(scored_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty: name a new folder, or pass --force"):
        export([scored_file], out, fmt="sft")
    export([scored_file], out, fmt="sft", force=True)
    export([scored_file], out, fmt="dpo", force=True)
    assert (out / "notes.txt").read_text() == "mine"
    assert _load(out)[2]["format"] == "dpo" and len(_load(out)[0]) == 3
    assert sorted(p.name for p in out.iterdir()) == ["data.parquet", "dataset", "export.json", "notes.txt"]


def test_cli_command(scored_file: Path, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="trajgym")
    add_export_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["export", str(scored_file), str(scored_file), "--format", "dpo",
                              "--out", str(tmp_path / "x"), "--min-margin", "0.2",
                              "--filters", str(_filters(tmp_path, "filters: [drop_excluded: true]\n"))])
    buf = io.StringIO()
    assert export_command(args, Console(file=buf, width=200)) == 0
    text = buf.getvalue()
    assert "3 dpo pairs from 12 scored episodes" in text and "Filter chain" in text
    assert "skipped 6: episode read twice (an episode_id seen before; the first kept)" in text
    with pytest.raises(SystemExit):
        parser.parse_args(["export", str(scored_file), "--format", "kto", "--out", "y"])
