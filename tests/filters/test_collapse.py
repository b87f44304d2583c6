"""The collapse monitor on hand-built generations with known answers: a diverse generation against one
whose episodes all do and say the same thing, lose the rare customers and fail the rare scenario."""

from __future__ import annotations

import pytest
from filters_helpers import Rollout, scored, with_actions

from trajgym.filters.collapse import (
    CollapseThresholds,
    collapse_figures,
    collapse_warnings,
    persona_counts,
    phrase_repetition,
    rarest,
)
from trajgym.trajectory.schema import Trajectory


def _as(traj: Trajectory, *, actions: list[str], scenario: str, said: str, mood: str | None) -> Trajectory:
    copy = with_actions(traj, actions, scenario=scenario)
    for step in copy.steps:
        if step.role == "support" and step.message is not None:
            step.message = said
    for agent in copy.agents:
        if agent.role == "customer":
            agent.persona = {"mood": mood, "language": "en"} if mood else None
    return copy


def test_phrase_repetition_of_known_sets() -> None:
    assert phrase_repetition([]) == 0.0
    assert phrase_repetition([["too short"], ["two words"]]) == 0.0                  # no 4-grams at all
    assert phrase_repetition([["a b c d e"], ["v w x y z"]]) == 0.0                  # nothing shared
    assert phrase_repetition([["a b c d"]] * 4) == pytest.approx(1 - 1 / 4)          # all say the same
    assert phrase_repetition([["A b, c d."], ["a b c d"]]) == pytest.approx(0.5)    # case, punctuation: no matter
    assert phrase_repetition([["a b c d", "a b c d"], ["e f g h"]]) == 0.0          # an episode's own repeats: once


def test_rarest_scenarios_are_those_with_fewest_episodes(rollout: Rollout) -> None:
    base = rollout("refund_damaged_item", 0)
    trajs = [with_actions(base, ["say"], scenario=s) for s in ["a", "a", "a", "b", "b", "c", "d", "d"]]
    assert rarest(trajs, 0.25) == ["c"]
    assert rarest(trajs, 0.5) == ["c", "b"]        # ties broken by id: b (2) before d (2)
    assert rarest(trajs, 0.0) == ["c"]             # at least one
    assert rarest([], 0.5) == []


def test_a_collapsed_generation_warns_on_what_fell(rollout: Rollout) -> None:
    base = rollout("refund_damaged_item", 0)
    chains = [["find_customer", "get_order", "refund_order", "say"], ["get_order", "say"],
              ["find_customer", "say"], ["say", "get_order", "cancel_order", "say"]]
    moods = ["calm", "angry", "confused", "calm"]
    diverse = [scored(_as(base, actions=chains[i % 4], scenario="common" if i < 6 else "rare",
                          said=f"reply number {i} with its own words here", mood=moods[i % 4]), 1.0)
               for i in range(8)]
    collapsed = [scored(_as(base, actions=chains[0], scenario="common" if i < 6 else "rare",
                            said="thank you for contacting us today", mood="calm"), 1.0 if i < 6 else 0.0)
                 for i in range(8)]
    before, after = collapse_figures(diverse), collapse_figures(collapsed)

    assert before["distinct_chain_share"] == pytest.approx(4 / 8) and after["distinct_chain_share"] == pytest.approx(1 / 8)
    assert before["persona_mood_values"] == 3 and after["persona_mood_values"] == 1
    assert after["persona_mood_entropy_bits"] == 0.0 and before["persona_mood_entropy_bits"] == pytest.approx(1.5)
    assert before["rare_scenario_success"] == 1.0 and after["rare_scenario_success"] == 0.0
    assert after["success"] == pytest.approx(6 / 8)
    assert before["phrase_repetition"] < 0.5 < after["phrase_repetition"]

    warnings = collapse_warnings(before, after, since="generation 0")
    fell = {w.split()[0] for w in warnings}
    assert {"distinct_chain_share", "action_2gram_entropy_bits", "persona_mood_values", "persona_mood_entropy_bits",
            "rare_scenario_success", "phrase_repetition"} <= fell
    assert "persona_language_values" not in fell                     # English throughout: unchanged
    assert any(w.startswith("rare_scenario_success fell 100% since generation 0 (1 -> 0)") for w in warnings)
    assert collapse_warnings(before, before) == []                   # no change, no warning
    assert collapse_warnings(before, after, thresholds=CollapseThresholds(max_drop=1.0, max_repetition_rise=1.0)) == []


def test_named_rare_scenarios_and_excluded_episodes(rollout: Rollout) -> None:
    base = rollout("refund_damaged_item", 0)
    episodes = [scored(with_actions(base, ["say"], scenario="a"), 1.0),
                scored(with_actions(base, ["say"], scenario="b"), 0.0),
                scored(with_actions(base, ["say"], scenario="b"), None, excluded="infra_error")]
    figures = collapse_figures(episodes, rare=["b"])
    assert figures["rare_scenario_success"] == 0.0                   # the excluded one counts nowhere
    assert figures["success"] == 0.5
    # bare trajectories count their outcome; the scripted customer's persona counts
    assert collapse_figures([base])["success"] == 1.0
    assert persona_counts([base]) == {"mood": {"calm": 1}, "language": {"en": 1}, "expertise": {"average": 1}}
