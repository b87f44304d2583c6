"""The scoring pipeline: config files, totals, ranks per group, pass^k, blame, the scored file."""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import pytest

from trajgym.cli.main import main as cli
from trajgym.errors import TrajgymError
from trajgym.rollout.agentspec import AgentSpec
from trajgym.rollout.jobs import run_job
from trajgym.rollout.runner import plan
from trajgym.scenario.catalog import resolve
from trajgym.scorers import SCORERS, Scorer, ScoreResult, ScoringContext, register
from trajgym.scorers.config import (
    ActiveScorer,
    ScorerConfigError,
    ScoringConfig,
    build_scorers,
    load_scoring_config,
)
from trajgym.scorers.pipeline import Scoring, score_files
from trajgym.scorers.workers import can_fork
from trajgym.trajectory.schema import Trajectory
from trajgym.trajectory.scored import iter_scored
from trajgym.world.loader import load

SCENARIOS = ["refund_damaged_item", "exchange_wrong_size"]


class _EndedWell(Scorer):
    """Test scorer: passed when the episode's recorded outcome succeeded; score = that, 0/1."""

    name: ClassVar[str] = "test_recorded_outcome"

    def __init__(self, bonus: float = 0.0) -> None:
        self.bonus = bonus

    def score(self, traj: Trajectory, ctx: ScoringContext) -> ScoreResult:
        ok = traj.outcome.success
        return ScoreResult(score=min(1.0, (1.0 if ok else 0.0) + self.bonus), passed=ok)


class _Short(Scorer):
    """Test scorer: 1 / number of steps; vetoes an episode with a forbidden call."""

    name: ClassVar[str] = "test_short"

    def score(self, traj: Trajectory, ctx: ScoringContext) -> ScoreResult | None:
        if not traj.steps:
            return None
        return ScoreResult(score=1.0 / len(traj.steps), veto=bool(traj.outcome.forbidden))


for cls in (_EndedWell, _Short):
    if cls.name not in SCORERS:
        register(cls)

CONFIG = {"scorers": {"test_recorded_outcome": {"weight": 3}, "test_short": 1, "simulator": 0},
          "success_from": "test_recorded_outcome"}


@pytest.fixture(scope="module")
def rollouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Oracle and random support on two scenarios, 2 variations x 3 trials, one seed: same groups."""
    root = tmp_path_factory.mktemp("rollouts")
    templates = [load(resolve(s)) for s in SCENARIOS]
    out = {}
    for agent in ("oracle", "random"):
        out[agent] = root / f"{agent}.jsonl"
        run_job(plan(templates, episodes=2, seed=7, trials=3), out[agent], AgentSpec.support(agent), fsync=False)
    return out


def _config_file(tmp_path: Path, data: dict[str, Any] | str) -> Path:
    p = tmp_path / "scorers.yaml"
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


def test_scores_ranks_and_pass_k(rollouts: dict[str, Path], tmp_path: Path) -> None:
    config, scorers = load_scoring_config(_config_file(tmp_path, CONFIG))
    out = tmp_path / "scored.jsonl"
    summary = score_files([rollouts["oracle"], rollouts["random"]], out, Scoring(config, scorers))
    recs = list(iter_scored(out))
    assert len(recs) == 2 * len(SCENARIOS) * 2 * 3 and summary.scored == len(recs)
    assert not (tmp_path / "scored.jsonl.partial").exists()
    for rec in recs:
        assert rec.source.endswith(tuple(f":{n}" for n in range(1, 13)))
        assert set(rec.scores) == {"test_recorded_outcome", "test_short", "simulator"}
        assert rec.success == rec.trajectory.outcome.success
        short = rec.scores["test_short"]
        assert short is not None
        expected = 0.0 if short.veto else (3 * float(rec.success) + short.score) / 4
        assert rec.total == pytest.approx(expected)
        assert rec.group == f"{rec.trajectory.scenario_id}@{rec.trajectory.seed}" and rec.group_size == 6
        assert (rec.blame is None) == bool(rec.success)
        assert rec.weights == {"test_recorded_outcome": 3.0, "test_short": 1.0, "simulator": 0.0}
    # ranks: within a group, a better total never ranks lower; the oracle (always successful) ranks first
    by_group: dict[str, list[Any]] = {}
    for rec in recs:
        by_group.setdefault(rec.group, []).append(rec)
    assert len(by_group) == 4
    for members in by_group.values():
        for a in members:
            for b in members:
                if a.total > b.total:
                    assert a.rank < b.rank
        oracle = [m for m in members if m.source.startswith(str(rollouts["oracle"]))]
        assert all(m.success and m.rank == 1 for m in oracle)
    # pass^k: the oracle always succeeds and random never does here, so pass^k = 1/2 for k=1 over both
    for scenario in SCENARIOS:
        successes = sum(1 for r in recs if r.trajectory.scenario_id == scenario and r.success)
        assert summary.pass_k[scenario][1] == pytest.approx(successes / 12)
        assert set(summary.pass_k[scenario]) == set(range(1, 7))


def _first_excluded(path: Path, tmp_path: Path) -> Path:
    """A copy of the trajectory file whose first episode ended in infra_error (excluded from scoring)."""
    lines = path.read_text().splitlines()
    excluded = json.loads(lines[0])
    excluded["termination"], excluded["infra_error"] = "infra_error", "model server down"
    job = tmp_path / "job.jsonl"
    job.write_text("\n".join([json.dumps(excluded), *lines[1:]]) + "\n")
    return job


def test_each_scored_line_is_its_record_as_pydantic_writes_it(rollouts: dict[str, Path], tmp_path: Path) -> None:
    # ranks are spliced into lines written before the ranks were known: the result must be the line
    # pydantic writes for the ranked record, for scored and excluded episodes alike
    config, scorers = load_scoring_config(_config_file(tmp_path, CONFIG))
    out = tmp_path / "scored.jsonl"
    score_files([_first_excluded(rollouts["random"], tmp_path), rollouts["oracle"]], out, Scoring(config, scorers))
    written = out.read_text().splitlines()
    recs = list(iter_scored(out))
    assert len(written) == len(recs) == 2 * len(rollouts["oracle"].read_text().splitlines())
    assert {r.group_size for r in recs} == {0, 5, 6} and sum(r.rank is None for r in recs) == 1
    for line, rec in zip(written, recs, strict=True):
        assert line == rec.model_dump_json()


def test_the_input_is_never_touched(rollouts: dict[str, Path], tmp_path: Path) -> None:
    before = rollouts["oracle"].read_bytes()
    config, scorers = load_scoring_config(_config_file(tmp_path, CONFIG))
    with pytest.raises(TrajgymError, match="never overwrites its input"):
        score_files([rollouts["oracle"]], rollouts["oracle"], Scoring(config, scorers))
    score_files([rollouts["oracle"]], tmp_path / "s.jsonl", Scoring(config, scorers))
    assert rollouts["oracle"].read_bytes() == before


def test_infra_error_units_are_excluded_and_reruns_win(rollouts: dict[str, Path], tmp_path: Path) -> None:
    lines = rollouts["oracle"].read_text().splitlines()
    first, second = json.loads(lines[0]), json.loads(lines[1])
    for ep in (first, second):
        ep["termination"], ep["infra_error"] = "infra_error", "model server down"
    # unit 1 failed and was rerun later (the rerun counts); unit 2 only failed (excluded)
    job = tmp_path / "job.jsonl"
    job.write_text("\n".join([json.dumps(first), json.dumps(second), *lines[2:], lines[0]]) + "\n")
    config, scorers = load_scoring_config(_config_file(tmp_path, CONFIG))
    out = tmp_path / "scored.jsonl"
    summary = score_files([job], out, Scoring(config, scorers))
    recs = list(iter_scored(out))
    assert len(recs) == len(lines) and summary.excluded == 1
    excluded = [r for r in recs if r.excluded]
    assert [r.trajectory.episode_id for r in excluded] == [second["episode_id"]]
    assert excluded[0].blame == "infrastructure" and excluded[0].total is None and excluded[0].rank is None
    assert excluded[0].scores == {}
    rerun = [r for r in recs if r.trajectory.episode_id == first["episode_id"]]
    assert len(rerun) == 1 and rerun[0].trajectory.termination != "infra_error"
    assert rerun[0].group_size == 2  # the excluded trial of its group is not ranked


def test_a_torn_last_line_is_an_error_unless_skipped_a_broken_middle_line_is_an_error(
        rollouts: dict[str, Path], tmp_path: Path) -> None:
    text = rollouts["oracle"].read_text()
    torn = tmp_path / "torn.jsonl"
    torn.write_text(text + text.splitlines()[0][:50])
    config, scorers = load_scoring_config(_config_file(tmp_path, CONFIG))
    with pytest.raises(TrajgymError, match=r"torn\.jsonl:13: the last line is cut short .*--resume"):
        score_files([torn], tmp_path / "a.jsonl", Scoring(config, scorers))
    assert not (tmp_path / "a.jsonl").exists()
    assert score_files([torn], tmp_path / "a.jsonl", Scoring(config, scorers), skip_torn=True).scored == 12
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{not json\n" + text)
    with pytest.raises(TrajgymError, match=r"broken\.jsonl:1:"):
        score_files([broken], tmp_path / "b.jsonl", Scoring(config, scorers))
    assert not (tmp_path / "b.jsonl").exists() and not (tmp_path / "b.jsonl.partial").exists()


def test_a_scorer_bug_fails_loudly_naming_scorer_and_episode(rollouts: dict[str, Path], tmp_path: Path) -> None:
    class Buggy(Scorer):
        name: ClassVar[str] = "test_buggy"

        def score(self, traj: Trajectory, ctx: ScoringContext) -> ScoreResult:
            raise KeyError("oops")

    config = ScoringConfig.model_validate({"scorers": {"test_short": 1}, "success_from": "test_short"})
    scoring = Scoring(config, [*build_scorers(config)])

    scoring.scorers.append(ActiveScorer("test_buggy", Buggy(), 1.0))
    with pytest.raises(KeyError) as info:
        score_files([rollouts["oracle"]], tmp_path / "s.jsonl", scoring)
    assert any("test_buggy" in note and "episode" in note for note in info.value.__notes__)


# -- scoring in worker processes ------------------------------------------------------------------

forks = pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods() or sys.platform == "darwin",
                           reason="this platform scores in one process (trajgym.scorers.workers.can_fork)")


def _rule_scoring() -> Scoring:
    config, scorers = load_scoring_config(None)
    scoring = Scoring(config, scorers)
    assert can_fork(scoring)  # the rule-based scorers run in workers, so the tests below test workers
    return scoring


@forks
def test_workers_write_the_file_one_process_writes(rollouts: dict[str, Path], tmp_path: Path) -> None:
    inputs = [_first_excluded(rollouts["random"], tmp_path), rollouts["oracle"]]
    one = score_files(inputs, tmp_path / "one.jsonl", _rule_scoring())
    assert one.scored == 23 and one.excluded == 1
    for workers in (2, 3):
        progress = Counter[str]()
        many = score_files(inputs, tmp_path / f"{workers}.jsonl", _rule_scoring(), workers=workers,
                           on_progress=functools.partial(progress.update, ["written"]))
        assert (tmp_path / f"{workers}.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()
        assert many == one and progress["written"] == 24


class _Crashes(Scorer):
    """Test scorer: a bug (``how='raise'``) or a process that dies (``how='exit'``), in a worker only."""

    name: ClassVar[str] = "test_crashes"
    forkable: ClassVar[bool] = True

    def __init__(self, how: str, parent: int) -> None:
        self.how, self.parent = how, parent

    def score(self, traj: Trajectory, ctx: ScoringContext) -> ScoreResult:
        if os.getpid() != self.parent:  # never this test's own process
            if self.how == "exit":
                os._exit(3)
            raise KeyError("oops")
        return ScoreResult(score=1.0)


@forks
@pytest.mark.parametrize(("how", "error", "what"), [("raise", KeyError, "oops"),
                                                    ("exit", TrajgymError, "worker process died")])
def test_a_worker_that_fails_stops_the_run_loudly(rollouts: dict[str, Path], tmp_path: Path, how: str,
                                                  error: type[Exception], what: str) -> None:
    scoring = _rule_scoring()
    scoring.scorers.append(ActiveScorer("test_crashes", _Crashes(how, os.getpid()), 1.0))
    with pytest.raises(error, match=what) as info:
        score_files([rollouts["oracle"]], tmp_path / "s.jsonl", scoring, workers=2)
    if how == "raise":  # the scorer and the episode are named, and where in the worker it failed
        notes = info.value.__notes__
        assert any("test_crashes" in note and "episode" in note for note in notes)
        assert any("scoring worker process" in note and "in score" in note for note in notes)
    assert not (tmp_path / "s.jsonl").exists()


@forks
def test_a_broken_line_stops_the_workers_naming_it(rollouts: dict[str, Path], tmp_path: Path) -> None:
    lines = rollouts["oracle"].read_text().splitlines()
    broken = json.loads(lines[4])
    broken["steps"] = "none"  # a line that names its unit but is no trajectory
    job = tmp_path / "broken.jsonl"
    job.write_text("\n".join([*lines[:4], json.dumps(broken), *lines[5:]]) + "\n")
    with pytest.raises(TrajgymError, match=r"broken\.jsonl:5:"):
        score_files([job], tmp_path / "s.jsonl", _rule_scoring(), workers=2)
    assert not (tmp_path / "s.jsonl").exists() and not (tmp_path / "s.jsonl.partial").exists()


@forks
def test_the_score_cli_scores_in_workers(rollouts: dict[str, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "scored.jsonl"
    assert cli(["score", str(rollouts["random"]), "--out", str(out), "--workers", "2", "--no-progress"]) == 0
    assert "12 episodes scored" in capsys.readouterr().out
    score_files([rollouts["random"]], tmp_path / "one.jsonl", _rule_scoring())
    assert out.read_bytes() == (tmp_path / "one.jsonl").read_bytes()
    assert cli(["score", str(rollouts["random"]), "--out", str(out), "--workers", "0"]) == 1
    assert "--workers must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "where", "what"), [
    ("scorers:\n  test_short: 1\n  outcom: 2\n", ":3:3:", "unknown scorer 'outcom'"),
    ("scorers:\n  test_short: {weight: -1}\n", ":2:", "greater than or equal to 0"),
    ("scorers:\n  test_short: {wieght: 1}\n", ":2:", "wieght"),
    ("scorers:\n  test_recorded_outcome: {options: {bonnus: 1}}\nsuccess_from: test_recorded_outcome\n",
     ":2:", "has no option 'bonnus'"),
    ("scorers:\n  test_short: 1\nsuccess_from: outcome\n", ":3:", "success_from names 'outcome'"),
    ("", ":1:1:", "scorer config is empty"),
    ("- outcome\n", ":1:1:", "YAML mapping"),
])
def test_config_errors_are_located(tmp_path: Path, text: str, where: str, what: str) -> None:
    path = _config_file(tmp_path, text)
    with pytest.raises(ScorerConfigError) as info:
        load_scoring_config(path)
    message = str(info.value)
    assert f"{path}{where}" in message and what in message, message


def test_score_cli_writes_the_scored_file_and_a_table(rollouts: dict[str, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "scored.jsonl"
    code = cli(["score", str(rollouts["random"]), "--scorers", str(_config_file(tmp_path, CONFIG)),
                "--out", str(out), "--no-progress"])
    text = capsys.readouterr().out
    assert code == 0 and out.exists()
    for scenario in SCENARIOS:
        assert scenario in text
    assert "pass^3" in text and "12 episodes scored" in text
    code = cli(["score", str(tmp_path / "missing.jsonl"), "--scorers", str(_config_file(tmp_path, CONFIG)),
                "--out", str(out)])
    assert code == 1 and "no trajectory file" in capsys.readouterr().err
