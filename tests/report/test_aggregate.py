"""The report's figures on hand-built scored records with known answers."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest

from trajgym.filters.decisions import action_names
from trajgym.filters.diversity import diversity, entropy
from trajgym.report import summarize
from trajgym.report.aggregate import fault_credits
from trajgym.scorers.base import Blame, Finding, ScoreResult
from trajgym.trajectory.schema import Trajectory
from trajgym.trajectory.scored import ScoredTrajectory

_counter = iter(range(10**6))


def _call(name: str, turn: int, faults: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"id": f"c{turn}", "name": name, "arguments": {}, "ok": not faults, "content": {}, "error_type": None,
            "applied": False, "latency_ms": 0, "faults": faults or [], "violations": []}


def _step(turn: int, role: str, *, tools: tuple[str, ...] = (), message: str | None = None,
          error: str | None = None, faults: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"turn": turn, "role": role, "observation": [], "action": "{}", "message": message,
            "tool_calls": [_call(t, turn, faults) for t in tools], "error": error, "wall_time": 0.0, "wall_ms": 0.0}


def traj(scenario: str, seed: int, trial: int, success: bool, *, actions: tuple[str, ...] = ("get_order", "say"),
         faults: tuple[str, ...] = ()) -> Trajectory:
    """An episode whose support agent takes ``actions`` (tool names, or ``say``), with ``faults``
    (kinds) injected into its first tool call."""
    fault_records = [{"index": i, "kind": k, "tool": "get_order", "turn": 1, "call": 1, "applied": False}
                     for i, k in enumerate(faults)]
    steps = [_step(0, "customer", message="hi")]
    for i, action in enumerate(actions, 1):
        if action == "say":
            steps.append(_step(i, "support", message="done"))
        else:
            steps.append(_step(i, "support", tools=(action,), faults=fault_records if i == 1 else None))
    return Trajectory.model_validate({
        "episode_id": f"{scenario}-{next(_counter)}", "scenario_id": scenario, "scenario_hash": "0" * 16,
        "scenario_path": f"/x/{scenario}.yaml", "domain": "customer_support", "seed": seed, "trial": trial,
        "policy": "p0", "tools": {},
        "variables": {}, "agents": [{"role": "support", "name": "oracle", "kind": "oracle"}], "steps": steps,
        "faults": fault_records, "final_state": {}, "termination": "customer_ended", "truncated": False,
        "rewards": {}, "outcome": {"success": success, "conditions": [], "facts": [], "end_ok": True,
                                   "allowed_endings": ["customer_ended"], "violations": [], "forbidden": [],
                                   "goal_changed_at": None},
        "provenance": {"trajgym_version": "0", "git_revision": None, "python": "3"},
        "wall_started_at": 0.0, "wall_duration_s": 0.0})


def rec(t: Trajectory, success: bool | None, *, blame: Blame | None = None, total: float | None = None,
        scores: dict[str, ScoreResult | None] | None = None, excluded: str | None = None,
        rank: int | None = None) -> ScoredTrajectory:
    return ScoredTrajectory(trajectory=t, scores=scores or {}, total=total, success=success, blame=blame,
                            excluded=excluded, group=f"{t.scenario_id}@{t.seed}", rank=rank)


def _dataset() -> list[ScoredTrajectory]:
    records = []
    # scenario A, variation 1: 4 trials, 3 successes (the failure blamed on the agent)
    for trial, ok in enumerate([True, True, False, True]):
        records.append(rec(traj("A", 1, trial, ok), ok, blame=None if ok else "agent", total=0.9 if ok else 0.2,
                           rank=1 + trial))
    # scenario A, variation 2: 2 trials, both successes
    for trial in range(2):
        records.append(rec(traj("A", 2, trial, True), True, total=1.0, rank=trial + 1))
    # scenario B, one variation: 3 failures (simulator, tool, no blame given) and one infra error
    blames: list[Blame | None] = ["simulator", "tool", None]
    for trial, blame in enumerate(blames):
        records.append(rec(traj("B", 5, trial, False), False, blame=blame, total=0.0))
    records.append(rec(traj("B", 5, 3, False), None, excluded="infra_error"))
    return records


def test_summary_per_scenario_and_overall() -> None:
    data = summarize(list(reversed(_dataset())))
    a, b = data.scenarios
    assert (a.scenario_id, a.episodes, a.excluded, a.successes, a.variations) == ("A", 6, 0, 5, 2)
    assert a.success_rate == pytest.approx(5 / 6)
    # pass^k per variation, v1 (3 of 4: C(3,k)/C(4,k)) and v2 (2 of 2), averaged, for k up to the fewest trials
    assert a.pass_k == pytest.approx({1: (0.75 + 1) / 2, 2: (0.5 + 1) / 2})
    assert a.mean_total == pytest.approx((0.9 * 3 + 0.2 + 2 * 1.0) / 6)
    assert a.blame == {"agent": 1, "simulator": 0, "tool": 0, "infrastructure": 0, "unattributed": 0}
    assert (b.episodes, b.excluded, b.successes, b.success_rate) == (3, 1, 0, 0.0)
    assert b.pass_k == {1: 0.0, 2: 0.0, 3: 0.0}
    # the excluded infra_error episode is an infrastructure failure, kept out of the rates
    assert b.blame == {"agent": 0, "simulator": 1, "tool": 1, "infrastructure": 1, "unattributed": 1}
    # overall: every variation of every scenario, k up to the fewest trials (2)
    assert data.pass_k == pytest.approx({1: (0.75 + 1 + 0) / 3, 2: (0.5 + 1 + 0) / 3})
    assert data.blame == {"agent": 1, "simulator": 1, "tool": 1, "infrastructure": 1, "unattributed": 1}
    assert (len(data.rows), len(data.scored), data.excluded, data.successes) == (10, 9, 1, 5)
    assert data.success_rate == pytest.approx(5 / 9)
    assert data.mean_total == pytest.approx((0.9 * 3 + 0.2 + 2 * 1.0) / 9)


def test_rows_are_ordered_by_scenario_variation_and_rank() -> None:
    data = summarize(list(reversed(_dataset())))
    keys = [(r.trajectory.scenario_id, r.trajectory.seed, r.record.rank) for r in data.rows]
    assert keys[:6] == [("A", 1, 1), ("A", 1, 2), ("A", 1, 3), ("A", 1, 4), ("A", 2, 1), ("A", 2, 2)]
    assert [r.index for r in data.rows] == list(range(10))
    assert data.scenarios[1].first_row == 6
    assert data.rows[-1].success is None and data.rows[-1].record.excluded == "infra_error"


def test_success_falls_back_to_the_episode_outcome_when_not_judged() -> None:
    data = summarize([rec(traj("A", 1, 0, True), None), rec(traj("A", 1, 1, False), None)])
    assert [r.success for r in data.rows] == [True, False]
    assert data.scenarios[0].pass_k == {1: 0.5, 2: 0.0}


def test_scorer_distributions() -> None:
    veto = ScoreResult(score=0.0, passed=False, veto=True, findings=[Finding(kind="minefield", message="x", turn=2)])
    records = [
        rec(traj("A", 1, 0, True), True, scores={"outcome": ScoreResult(score=1.0, passed=True), "recovery": None}),
        rec(traj("A", 1, 1, False), False, scores={"outcome": ScoreResult(score=0.0, passed=False),
                                                    "milestones": veto}),
        rec(traj("A", 1, 2, True), True, scores={"outcome": ScoreResult(score=1.0, passed=True),
                                                  "milestones": ScoreResult(score=0.5)}),
    ]
    stats = {s.name: s for s in summarize(records).scorers}
    assert sorted(stats) == ["milestones", "outcome", "recovery"]
    out = stats["outcome"]
    assert (out.applied, out.passed, out.failed, out.mean, out.median) == (3, 2, 1, pytest.approx(2 / 3), 1.0)
    ms = stats["milestones"]
    assert (ms.values, ms.vetoes, ms.findings, ms.passed, ms.failed) == ([0.0, 0.5], 1, 1, 0, 1)
    assert (stats["recovery"].applied, stats["recovery"].not_applicable, stats["recovery"].mean) == (0, 1, None)


def test_fault_recovery_per_kind() -> None:
    per_fault = ScoreResult(score=0.5, details={"faults": [{"kind": "timeout", "credit": 1.0},
                                                           {"kind": "rate_limit", "credit": 0.0}]})
    records = [
        # the recovery scorer reported credit per fault
        rec(traj("A", 1, 0, True, faults=("timeout", "rate_limit")), True, scores={"recovery": per_fault}),
        # an episode-level recovery score counts once per fault kind injected
        rec(traj("A", 1, 1, False, faults=("timeout", "timeout")), False, scores={"recovery": ScoreResult(score=0.25)}),
        # no recovery scorer: the success rate with the fault is still known
        rec(traj("A", 1, 2, True, faults=("outage",)), True),
        rec(traj("A", 1, 3, True), True),
    ]
    assert fault_credits(records[0]) == [("timeout", 1.0), ("rate_limit", 0.0)]
    assert fault_credits(records[1]) == [("timeout", 0.25)]
    assert fault_credits(records[2]) == []
    faults = {f.kind: f for f in summarize(records).faults}
    assert sorted(faults) == ["outage", "rate_limit", "timeout"]
    t = faults["timeout"]
    assert (t.injected, t.episodes, t.successes, t.success_rate, t.credits, t.recovery) == (3, 2, 1, 0.5, [1.0, 0.25],
                                                                                           0.625)
    assert (faults["rate_limit"].recovery, faults["rate_limit"].success_rate) == (0.0, 1.0)
    assert (faults["outage"].recovery, faults["outage"].success_rate) == (None, 1.0)


def test_diversity_figures() -> None:
    chains = [traj("A", 1, 0, True, actions=("find", "say")), traj("A", 1, 1, True, actions=("find", "say")),
              traj("A", 1, 2, True, actions=("find", "refund"))]
    assert action_names(chains[2]) == ["find", "refund"]
    assert action_names(chains[2], roles=("customer",)) == ["say"]
    figures = diversity(chains)
    assert figures["episodes"] == 3 and figures["distinct_decision_chains"] == 2
    assert figures["distinct_chain_share"] == pytest.approx(2 / 3)
    # unigrams: find x3, say x2, refund x1; bigrams: (find, say) x2, (find, refund) x1; no trigram
    assert figures["action_1gram_entropy_bits"] == pytest.approx(entropy(Counter("aaabbc")))
    assert figures["action_2gram_entropy_bits"] == pytest.approx(-(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3)))
    assert figures["action_3gram_entropy_bits"] == 0.0
    assert entropy(Counter("x")) == 0.0 and entropy(Counter()) == 0.0 and entropy(Counter("abcd")) == 2.0


def test_a_plugged_in_diversity_function_is_used_per_scenario_and_overall() -> None:
    seen: list[int] = []

    def spread(trajs: Sequence[Trajectory]) -> dict[str, float]:
        seen.append(len(trajs))
        return {"embedding_spread": len(trajs) / 10}

    data = summarize(_dataset(), diversity=spread)
    assert data.diversity == {"embedding_spread": 0.9}             # the 9 scored episodes
    assert [s.diversity for s in data.scenarios] == [{"embedding_spread": 0.6}, {"embedding_spread": 0.3}]
    assert sorted(seen) == [3, 6, 9]
