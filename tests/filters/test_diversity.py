"""Diversity figures on hand-built sets with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from filters_helpers import Rollout, with_actions

from trajgym.filters import (
    action_names,
    diversity,
    diversity_by_scenario,
    embedding_spread,
    entropy,
    ngram_entropy,
)
from trajgym.filters.diversity import ngrams


def test_entropy_of_known_distributions() -> None:
    assert entropy({}) == 0.0
    assert entropy({"a": 7}) == 0.0
    assert entropy({"a": 1, "b": 1, "c": 1, "d": 1}) == pytest.approx(2.0)
    assert entropy({"a": 2, "b": 1, "c": 1}) == pytest.approx(1.5)
    assert entropy({"a": 3, "b": 1}) == pytest.approx(-(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)))


def test_ngrams_stay_inside_each_sequence() -> None:
    seqs = [["a", "b", "a"], ["b", "a"], ["c"]]
    assert ngrams(seqs, 1) == {("a",): 3, ("b",): 2, ("c",): 1}
    assert ngrams(seqs, 2) == {("a", "b"): 1, ("b", "a"): 2}  # no ('a', 'b') from one episode into the next
    assert ngrams(seqs, 3) == {("a", "b", "a"): 1}
    assert ngram_entropy(seqs, 2) == pytest.approx(entropy({"ab": 1, "ba": 2}))
    with pytest.raises(ValueError, match="n >= 1"):
        ngrams(seqs, 0)


def test_embedding_spread_of_known_vectors() -> None:
    e = np.eye(3, dtype=np.float32)
    assert embedding_spread(e) == pytest.approx(1.0)             # orthogonal: cos 0 between every two
    assert embedding_spread(np.stack([e[0]] * 4)) == pytest.approx(0.0)
    assert embedding_spread(np.stack([e[0], -e[0]])) == pytest.approx(2.0)
    assert embedding_spread(e[:1]) == 0.0


def test_action_names_of_a_real_oracle_episode(rollout: Rollout) -> None:
    traj = rollout("refund_damaged_item", 0)
    assert action_names(traj) == ["say", "find_customer", "verify_identity", "get_order", "refund_order", "say"]
    assert action_names(traj, roles=("customer",)) == ["say", "say", "end_conversation"]


def test_figures_of_a_hand_built_set(rollout: Rollout) -> None:
    base = rollout("refund_damaged_item", 0)
    episodes = [
        with_actions(base, ["get_order", "refund_order", "say"], scenario="s1"),
        with_actions(base, ["get_order", "refund_order", "say"], scenario="s1"),
        with_actions(base, ["get_order", "say"], scenario="s1"),
        with_actions(base, ["malformed", "say"], scenario="s2"),
    ]
    figures = diversity(episodes)
    assert figures["episodes"] == 4 and figures["distinct_decision_chains"] == 3
    assert figures["distinct_chain_share"] == pytest.approx(0.75)
    # unigrams: get_order 3, refund_order 2, say 4, malformed 1 (10 in all)
    assert figures["action_1gram_entropy_bits"] == pytest.approx(entropy({"g": 3, "r": 2, "s": 4, "m": 1}))
    # bigrams: (get_order, refund_order) 2, (refund_order, say) 2, (get_order, say) 1, (malformed, say) 1
    assert figures["action_2gram_entropy_bits"] == pytest.approx(entropy({"gr": 2, "rs": 2, "gs": 1, "ms": 1}))
    # trigrams: only the two copies have one, the same: no uncertainty
    assert figures["action_3gram_entropy_bits"] == 0.0
    by = diversity_by_scenario(episodes)
    assert by["overall"] == figures
    assert set(by["per_scenario"]) == {"s1", "s2"}
    assert by["per_scenario"]["s1"]["distinct_decision_chains"] == 2 and by["per_scenario"]["s2"]["episodes"] == 1
    assert by["per_scenario"]["s2"]["action_1gram_entropy_bits"] == pytest.approx(1.0)  # malformed, say


def test_an_empty_set_has_zero_figures() -> None:
    figures = diversity([])
    assert figures["episodes"] == 0 and figures["distinct_chain_share"] == 0 and figures["action_1gram_entropy_bits"] == 0
