"""Filter chains: YAML errors located, steps applied in order with counts and reasons, the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from filters_helpers import MakeScored, Rollout

from trajgym.cli.main import main as cli
from trajgym.filters import (
    FilterChain,
    FilterConfigError,
    FilterError,
    apply_chain,
    filter_file,
    load_filter_chain,
)
from trajgym.filters.decisions import DEFAULT_ROLES
from trajgym.scorers import ScoreResult
from trajgym.trajectory.filtered import dropped_path, iter_dropped
from trajgym.trajectory.scored import FilterStamp, ScoredTrajectory, iter_scored


@pytest.fixture(scope="module")
def records(rollout: Rollout, make_scored: MakeScored) -> list[ScoredTrajectory]:
    """Ten scored episodes of two variations with known verdicts."""
    a, b = rollout("refund_damaged_item", 0), rollout("cancel_processing_order", 0)
    rnd = rollout("refund_damaged_item", 0, "random", trial=1)

    def pol(x: float) -> dict[str, ScoreResult | None]:
        return {"policy": ScoreResult(score=x), "recovery": None}

    return [
        make_scored(a, 1.0, rank=1, scores=pol(1.0), source="in:1"),                              # 0 kept
        make_scored(a.model_copy(update={"trial": 2}), 0.9, success=True, rank=2, scores=pol(1.0)),              # 1 exact copy of 0
        make_scored(rnd, 0.1, success=False, blame="agent", rank=4, scores=pol(0.5)),             # 2 total < 0.7
        make_scored(a.model_copy(update={"trial": 3}), 0.8, success=False, blame="simulator", rank=3,
                    scores=pol(1.0)),                                                              # 3 simulator
        make_scored(a.model_copy(update={"trial": 4}), None, excluded="infra_error"),              # 4 excluded
        make_scored(b, 1.0, rank=1, scores=pol(1.0)),                                              # 5 kept
        make_scored(b.model_copy(update={"trial": 1}), 0.95, success=True, rank=2, scores=pol(0.0)),           # 6 policy < 1
        make_scored(b.model_copy(update={"trial": 2}), 0.8, success=False, blame="tool", rank=3,
                    scores=pol(1.0)),                                                              # 7 failed
    ]


def _chain(*steps: dict[str, object]) -> FilterChain:
    return FilterChain.model_validate({"filters": list(steps)})


def test_steps_apply_in_order_with_counts_and_reasons(records: list[ScoredTrajectory]) -> None:
    chain = _chain({"drop_excluded": True}, {"no_blame": ["simulator", "infrastructure"]}, {"min_score": 0.7},
                   {"min_scores": {"policy": 1.0}}, {"success": True}, {"dedup": None}, {"top_k_per_group": 1})
    result = apply_chain(records, chain)
    assert result.kept_indices == [0, 5] and result.total == 8
    assert [(s.step, s.before, s.after, s.reasons) for s in result.steps] == [
        ("drop_excluded true", 8, 7, {"excluded (infra_error)": 1}),
        ("no_blame simulator, infrastructure", 7, 6, {"blamed on simulator": 1}),
        ("min_score 0.7", 6, 5, {"total < 0.7": 1}),
        ("min_scores policy 1", 5, 4, {"policy < 1": 1}),
        ("success true", 4, 3, {"failed": 1}),
        ("dedup exact (group)", 3, 2, {"exact duplicate": 1}),
        ("top_k_per_group 1", 2, 2, {}),
    ]
    assert [(d.index, d.step, d.duplicate_of) for d in result.dropped] == [
        (4, 0, None), (3, 1, None), (2, 2, None), (6, 3, None), (7, 4, None), (1, 5, 0)]


def test_order_matters_and_top_k_keeps_the_best(records: list[ScoredTrajectory]) -> None:
    result = apply_chain(records, _chain({"top_k_per_group": 2}))
    assert result.kept_indices == [0, 1, 5, 6]  # excluded and lower-ranked episodes go
    result = apply_chain(records, _chain({"min_score": 0.85}, {"top_k_per_group": 2}))
    assert result.kept_indices == [0, 1, 5, 6]
    assert result.steps[0].reasons == {"not scored (infra_error)": 1, "total < 0.85": 3}
    result = apply_chain(records, _chain({"success": False}))
    assert result.kept_indices == [2, 3, 7] and result.steps[0].reasons == {"succeeded": 4, "not scored": 1}


def test_an_unknown_scorer_in_min_scores_is_an_error(records: list[ScoredTrajectory]) -> None:
    with pytest.raises(FilterError, match=r"'polcy'.*Did you mean 'policy'"):
        apply_chain(records, _chain({"min_scores": {"polcy": 1.0}}))


@pytest.mark.parametrize(("text", "where", "what"), [
    ("filters:\n  - min_scor: 0.7\n", "2:5", "unknown key 'min_scor' in filters[0]; did you mean 'min_score'?"),
    ("filters:\n  - min_score: 0.7\n    success: true\n", "2:5", "names min_score and success: split them"),
    ("filters:\n  - {}\n", "2:5", "this one names none"),
    ("filters:\n  - min_score: 1.5\n", "2:16", "filters[0].min_score should be less than or equal to 1"),
    ("filters:\n  - success:\n", "2:5", "'success' needs a value"),
    ("filters:\n  - no_blame: [simulatr]\n", "2:16", "did you mean 'simulator'?"),
    ("filters:\n  - dedup: {near: 0.9, scop: group}\n", "2:24", "unknown key 'scop' in filters[0].dedup"),
    ("filters:\n  - dedup: {scope: everywhere}\n", "2:20", "should be one of 'group', 'scenario', 'dataset'"),
    ("filters:\n  - top_k_per_group: 0\n", "2:22", "greater than or equal to 1"),
    ("filter:\n  - min_score: 0.7\n", "1:1", "unknown key 'filter' in the top level; did you mean 'filters'?"),
    ("filters: []\n", "1:10", "at least 1 item"),
    ("", "1:1", "the filter chain file is empty"),
    ("filters: [min_score: 0.7\n", "1:25", "invalid YAML"),
])
def test_chain_file_errors_are_located(tmp_path: Path, text: str, where: str, what: str) -> None:
    path = tmp_path / "filters.yaml"
    path.write_text(text)
    with pytest.raises(FilterConfigError) as info:
        load_filter_chain(path)
    first = info.value.problems[0]
    assert f"{first.file}:{first.line}:{first.col}" == f"{path}:{where}"
    assert what in first.message


def _write(records: list[ScoredTrajectory], path: Path) -> Path:
    path.write_text("".join(r.model_dump_json() + "\n" for r in records))
    return path


def test_filter_file_writes_the_kept_records_and_never_its_input(records: list[ScoredTrajectory],
                                                                 tmp_path: Path) -> None:
    src = _write(records, tmp_path / "scored.jsonl")
    before = src.read_bytes()
    result = filter_file(src, _chain({"drop_excluded": True}, {"dedup": None}), tmp_path / "out" / "kept.jsonl")
    assert src.read_bytes() == before
    kept = list(iter_scored(tmp_path / "out" / "kept.jsonl"))
    assert kept == result.kept and len(kept) == 3  # the excluded one and four copies go
    with pytest.raises(FilterError, match="never overwrites its input"):
        filter_file(src, _chain({"min_score": 0.5}), tmp_path / "." / "scored.jsonl")
    assert src.read_bytes() == before


def test_the_cli_prints_the_steps_and_refuses_bad_input(records: list[ScoredTrajectory], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    src = _write(records, tmp_path / "scored.jsonl")
    config = tmp_path / "filters.yaml"
    config.write_text("filters:\n  - no_blame: [simulator]\n  - min_score: 0.7\n  - dedup:\n")
    out = tmp_path / "kept.jsonl"
    assert cli(["filter", str(src), "--config", str(config), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for expected in ("no_blame simulator", "blamed on simulator: 1", "min_score 0.7", "dedup exact (group)",
                     "exact duplicate: 3", "kept 2 of 8 episodes"):
        assert expected in text
    assert len(out.read_text().splitlines()) == 2
    assert cli(["filter", str(src), "--config", str(config), "--out", str(src)]) == 1
    assert "never overwrites its input" in capsys.readouterr().err
    config.write_text("filters:\n  - min_scor: 0.7\n")
    assert cli(["filter", str(src), "--config", str(config), "--out", str(out)]) == 1
    assert f"{config}:2:5: unknown key 'min_scor'" in capsys.readouterr().err.replace("\n", "")
    bad = tmp_path / "traj.jsonl"
    bad.write_text('{"schema_version": 1}\n')
    config.write_text("filters:\n  - min_score: 0.7\n")
    assert cli(["filter", str(bad), "--config", str(config), "--out", str(out)]) == 1
    assert "not a scored trajectory" in capsys.readouterr().err


def _unique_ids(records: list[ScoredTrajectory]) -> list[ScoredTrajectory]:
    """The records with an episode id each (the copies above share their original's)."""
    return [r.model_copy(update={"trajectory": r.trajectory.model_copy(update={"episode_id": f"ep{i}"})})
            for i, r in enumerate(records)]


AUDITED = ("filters:\n  - drop_excluded: true\n  - no_blame: [simulator]\n  - min_score: 0.7\n  - dedup:\n"
           "  - top_k_per_group: 1\n")


def test_the_audit_trail_stamps_kept_records_and_lists_the_dropped_ones(
        records: list[ScoredTrajectory], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _write(_unique_ids(records), tmp_path / "scored.jsonl")
    config = tmp_path / "filters.yaml"
    config.write_text(AUDITED)
    out = tmp_path / "kept.jsonl"
    result = filter_file(src, config, out)
    steps = [{"drop_excluded": True}, {"no_blame": ["simulator"]}, {"min_score": 0.7},
             {"dedup": {"exact": True, "near": None, "scope": "group", "roles": list(DEFAULT_ROLES)}},
             {"top_k_per_group": 1}]  # every setting in effect, the defaults included
    kept = list(iter_scored(out))
    assert [r.trajectory.episode_id for r in kept] == ["ep0", "ep5"] and kept == result.kept
    stamp = kept[0].filter
    assert stamp is not None and stamp.chain == steps and stamp.file == str(config)
    assert len(stamp.hash) == 16 and all(r.filter == stamp for r in kept)

    side = result.sidecar
    assert side is not None and side == dropped_path(out) == tmp_path / "kept.dropped.jsonl"
    dropped = list(iter_dropped(side))
    inputs = {r.trajectory.episode_id: (n, r) for n, r in enumerate(iter_scored(src), 1)}
    kept_ids, dropped_ids = {r.trajectory.episode_id for r in kept}, {d.episode_id for d in dropped}
    assert kept_ids | dropped_ids == set(inputs) and not kept_ids & dropped_ids and len(dropped) == len(dropped_ids)
    names = [s.step for s in result.steps]
    assert names[:4] == ["drop_excluded true", "no_blame simulator", "min_score 0.7", "dedup exact (group)"]
    assert [(d.episode_id, d.step, d.step_name, d.reason, d.duplicate_of) for d in dropped] == [
        ("ep4", 1, names[0], "excluded (infra_error)", None),
        ("ep3", 2, names[1], "blamed on simulator", None),
        ("ep2", 3, names[2], "total < 0.7", None),
        ("ep1", 4, names[3], "exact duplicate", "ep0"),
        ("ep6", 4, names[3], "exact duplicate", "ep5"),
        ("ep7", 4, names[3], "exact duplicate", "ep5"),
    ]
    for d in dropped:
        n, record = inputs[d.episode_id]
        t = record.trajectory
        assert d.source == f"{src}:{n}" and d.filter_hash == stamp.hash
        assert (d.scenario_id, d.seed, d.trial, d.policy, d.group) == (t.scenario_id, t.seed, t.trial, t.policy,
                                                                       record.group)

    assert cli(["filter", str(src), "--config", str(config), "--out", str(out)]) == 0
    assert f"to {side}" in capsys.readouterr().out.replace("\n", "")  # the CLI says where the sidecar went


def test_the_chain_hash_follows_the_settings_in_effect(records: list[ScoredTrajectory], tmp_path: Path) -> None:
    src = _write(_unique_ids(records), tmp_path / "scored.jsonl")

    def stamp_of(chain: str | FilterChain) -> FilterStamp:
        config = tmp_path / "filters.yaml"
        if isinstance(chain, str):
            config.write_text(chain)
        stamp = filter_file(src, config if isinstance(chain, str) else chain, tmp_path / "kept.jsonl").kept[0].filter
        assert stamp is not None
        return stamp

    base = stamp_of(AUDITED).hash
    assert stamp_of(AUDITED.replace("- dedup:\n", "- dedup: {exact: true, scope: group}\n")).hash == base  # defaults
    from_no_file = stamp_of(load_filter_chain(tmp_path / "filters.yaml"))
    assert from_no_file.hash == base and from_no_file.file is None
    changed = [AUDITED.replace("min_score: 0.7", "min_score: 0.8"),
               AUDITED.replace("- dedup:\n", "- dedup: {scope: scenario}\n"),
               AUDITED.replace("  - top_k_per_group: 1\n", ""),
               AUDITED.replace("  - drop_excluded: true\n", "") + "  - drop_excluded: true\n"]  # the order
    hashes = {stamp_of(text).hash for text in changed}
    assert len(hashes) == len(changed) and base not in hashes
