"""The reward-model scorer: a tiny random Llama built from a config (fast), and the bundled SmolLM2
loaded as a sequence classifier (slow, real weights, a freshly initialised head)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import BUILTIN

from trajgym.rollout.episode import run_episode
from trajgym.rollout.runner import agents_for
from trajgym.scorers import ScorerError, ScoringContext
from trajgym.scorers.config import ScoringConfig, build_scorers
from trajgym.scorers.pipeline import Scoring, score_files
from trajgym.scorers.reward_model import RewardModel
from trajgym.trajectory.schema import Trajectory
from trajgym.trajectory.scored import iter_scored
from trajgym.trajectory.store import TrajectoryWriter
from trajgym.world.loader import load

for _module in ("torch", "transformers", "tokenizers"):
    if importlib.util.find_spec(_module) is None:
        _reason = f"{_module} is not installed: the reward model needs the hf extra (make hf-setup)"
        if os.environ.get("TRAJGYM_REQUIRE_HF") == "1":
            pytest.fail(f"TRAJGYM_REQUIRE_HF=1 but {_reason}", pytrace=False)
        pytest.skip(_reason, allow_module_level=True)

log = logging.getLogger(__name__)
CTX = ScoringContext()
CHATML = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"


def make_tiny(folder: Path, *, num_labels: int = 1, id2label: dict[int, str] | None = None,
              chat_template: bool = True) -> Path:
    """A random two-layer Llama classifier and a byte-level BPE tokenizer trained on two sentences."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForSequenceClassification, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(["the customer asked for a refund of the order", "support calls refund_order"],
                            trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    if chat_template:
        tokenizer.chat_template = CHATML
    labels = {"num_labels": num_labels} if id2label is None else {
        "id2label": id2label, "label2id": {v: k for k, v in id2label.items()}}
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                         pad_token_id=tokenizer.pad_token_id, initializer_range=0.2, **labels)
    torch.manual_seed(0)
    LlamaForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny(tmp_path_factory.mktemp("tiny-rm"))


def play(scenario: str, agent: str = "oracle", seed: int = 0) -> Trajectory:
    template = load(BUILTIN[scenario])
    return Trajectory.model_validate(run_episode(template, seed, agents_for(template, agent)))


@pytest.fixture(scope="module")
def episodes() -> list[Trajectory]:
    return [play(s, a) for s in ("refund_damaged_item", "refund_service_flaky", "cancel_shipped_order")
            for a in ("oracle", "random")]


def logits(results: list[Any]) -> list[float]:
    """Every result's logits, flattened (pytest.approx compares flat lists)."""
    return [x for r in results for x in r.details["logits"]]


def test_scores_are_probabilities_of_the_reward_logit(tiny: Path, episodes: list[Trajectory]) -> None:
    import math

    results = RewardModel(model=str(tiny), max_length=256).score_batch(episodes)
    for result in results:
        (logit,) = result.details["logits"]
        assert 0.0 < result.score < 1.0 and result.score == pytest.approx(1 / (1 + math.exp(-logit)))
        d = result.details
        assert d["tokens"] == 256 and d["truncated"] and not d["untrained_head"] and d["model"] == tiny.name
    assert len({r.score for r in results}) == len(episodes)  # different trajectories, different scores


def test_batches_score_exactly_as_one_by_one(tiny: Path, episodes: list[Trajectory]) -> None:
    scorer = RewardModel(model=str(tiny), max_length=512, batch_size=4)
    batched = scorer.score_batch(episodes)  # sorted by length inside, padded on the right
    single = [scorer.score(t, CTX) for t in episodes]
    assert logits(batched) == pytest.approx(logits(single), abs=1e-5)
    assert logits(RewardModel(model=str(tiny), max_length=512).score_batch(episodes)) == logits(batched)  # reload


def test_truncation_keeps_the_end_or_the_beginning(tiny: Path, episodes: list[Trajectory]) -> None:
    left = RewardModel(model=str(tiny), max_length=64)
    right = RewardModel(model=str(tiny), max_length=64, truncation_side="right")
    full = left.load().tokenizer(left.render(episodes[0]), add_special_tokens=False)["input_ids"]
    assert left.tokens(episodes[0]) == (full[-64:], len(full))
    assert right.tokens(episodes[0]) == (full[:64], len(full))
    text = left.render(episodes[0])
    assert text.startswith("<|im_start|>system\nYou are a support agent") and text.endswith("<|im_end|>\n")
    assert "<|im_start|>assistant\n[tool call] find_customer(" in text


def test_async_scorings_are_batched_in_a_worker_thread(tiny: Path, episodes: list[Trajectory]) -> None:
    scorer = RewardModel(model=str(tiny), max_length=128, batch_size=4)
    expected = logits(scorer.score_batch(episodes))
    batches: list[tuple[int, bool]] = []
    score_batch = scorer.score_batch

    def recording(trajs: list[Trajectory]) -> list[Any]:
        batches.append((len(trajs), threading.current_thread() is threading.main_thread()))
        return score_batch(trajs)

    scorer.score_batch = recording  # type: ignore[method-assign]

    async def go() -> list[Any]:
        return list(await asyncio.gather(*(scorer.ascore(t, CTX) for t in episodes)))

    assert logits(asyncio.run(go())) == pytest.approx(expected, abs=1e-5)
    assert batches == [(4, False), (2, False)]


def test_a_failing_batch_fails_every_caller(tiny: Path, episodes: list[Trajectory]) -> None:
    scorer = RewardModel(model=str(tiny), max_length=128, batch_size=8)

    def broken(trajs: list[Trajectory]) -> list[Any]:
        raise RuntimeError("out of memory")

    scorer.score_batch = broken  # type: ignore[method-assign]

    async def go() -> list[Any]:
        return list(await asyncio.gather(*(scorer.ascore(t, CTX) for t in episodes), return_exceptions=True))

    outcomes = asyncio.run(go())
    assert all(isinstance(o, RuntimeError) for o in outcomes)


def test_a_classifier_scores_the_probability_of_its_good_label(tmp_path: Path, episodes: list[Trajectory],
                                                               caplog: pytest.LogCaptureFixture) -> None:
    import torch

    folder = make_tiny(tmp_path / "cls", id2label={0: "bad", 1: "good"})
    by_name = RewardModel(model=str(folder), label="good", max_length=128).score_batch(episodes[:2])
    by_index = RewardModel(model=str(folder), label=1, max_length=128).score_batch(episodes[:2])
    for a, b in zip(by_name, by_index, strict=True):
        assert a.score == b.score == pytest.approx(torch.softmax(torch.tensor(a.details["logits"]), 0)[1].item())
    with pytest.raises(ScorerError, match=r"has 2 labels \(0=bad, 1=good\): set label"):
        RewardModel(model=str(folder))
    with pytest.raises(ScorerError, match="no label 'great'"):
        RewardModel(model=str(folder), label="great")
    with pytest.raises(ScorerError, match="out of range"):
        RewardModel(model=str(folder), label=2)
    with caplog.at_level(logging.WARNING, logger="trajgym.scorers.reward_model"):
        fresh = RewardModel(model=str(folder), num_labels=1, max_length=128).score_batch(episodes[:1])[0]
    assert fresh.details["untrained_head"] and len(fresh.details["logits"]) == 1
    assert "score.weight freshly initialised" in caplog.text


def test_bad_options_and_missing_installs_say_what_to_do(tmp_path: Path, tiny: Path, episodes: list[Trajectory],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ScorerError, match=r"not a local transformers folder .* never from a hub"):
        RewardModel(model="HuggingFaceTB/SmolLM2-135M-Instruct")
    with pytest.raises(ScorerError, match="truncation_side must be left or right"):
        RewardModel(model=str(tiny), truncation_side="middle")  # type: ignore[arg-type]
    with pytest.raises(ScorerError, match="one output"):
        RewardModel(model=str(tiny), label=1)
    scorer = RewardModel(model=str(tiny))  # nothing is imported or loaded yet
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ScorerError, match=r"needs torch and transformers .*install the hf extra: make hf-setup"):
        scorer.score(episodes[0], CTX)


def test_a_tokenizer_without_chat_template_reads_plain_paragraphs(tmp_path: Path, episodes: list[Trajectory],
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    scorer = RewardModel(model=str(make_tiny(tmp_path / "plain", chat_template=False)), include_instructions=False)
    with caplog.at_level(logging.WARNING, logger="trajgym.scorers.reward_model"):
        text = scorer.render(episodes[0])
    assert text.startswith("user: Hi, my ") and "\n\nassistant: " in text and "no chat template" in caplog.text


def test_infra_error_episodes_are_not_scored(tiny: Path, episodes: list[Trajectory]) -> None:
    broken = episodes[0].model_copy(update={"termination": "infra_error"})
    results = RewardModel(model=str(tiny), max_length=64).score_batch([broken, episodes[1]])
    assert results[0] is None and results[1] is not None


def test_the_pipeline_runs_the_reward_model_from_a_config(tiny: Path, episodes: list[Trajectory],
                                                          tmp_path: Path) -> None:
    source = tmp_path / "runs.jsonl"
    with TrajectoryWriter(source, fsync=False) as writer:
        for trial, traj in enumerate(episodes):
            writer.write(traj.model_copy(update={"trial": trial}).model_dump(mode="json"))
    config = ScoringConfig.model_validate({"scorers": {"reward_model": {"options": {
        "model": str(tiny), "max_length": 128, "batch_size": 4}}}, "success_from": "reward_model"})
    out = tmp_path / "scored.jsonl"
    active = build_scorers(config)
    score_files([source], out, Scoring(config, active), concurrency=8)
    assert active[0].scorer._loaded is None  # type: ignore[attr-defined]  # the run's end freed the model
    scored = {rec.trajectory.trial: rec for rec in iter_scored(out)}  # oracle and random share episode ids
    direct = RewardModel(model=str(tiny), max_length=128).score_batch(episodes)
    for trial, result in enumerate(direct):
        got = scored[trial].scores["reward_model"]
        assert got is not None and got.details["logits"] == pytest.approx(result.details["logits"], abs=1e-5)
    assert json.loads(out.read_text().splitlines()[0])["scoring"]["scorers"]["reward_model"]["max_length"] == 128


@pytest.mark.slow
def test_smollm2_as_a_reward_model(converted_model: Path, episodes: list[Trajectory],
                                   caplog: pytest.LogCaptureFixture) -> None:
    """The bundled SmolLM2 loaded as a sequence classifier: real weights, but its one-logit head is
    freshly initialised (seeded), so the scores are well defined and mean nothing about quality."""
    episodes = episodes[::2] + episodes[1:2]  # the oracle on three scenarios, and random on one
    with caplog.at_level(logging.WARNING, logger="trajgym.scorers.reward_model"):
        scorer = RewardModel(model=str(converted_model), num_labels=1, max_length=512, batch_size=2)
        start = time.perf_counter()
        batched = scorer.score_batch(episodes)
        seconds = time.perf_counter() - start
    assert "score.weight freshly initialised" in caplog.text
    log.warning("reward_model (SmolLM2-135M, fp32, CPU, max_length 512, batch 2): %d trajectories in %.1f s, "
                "%.2f trajectories/s", len(episodes), seconds, len(episodes) / seconds)
    assert all(len(r.details["logits"]) == 1 and r.details["untrained_head"] for r in batched)  # shapes
    assert all(0.0 < r.score < 1.0 and 0 < r.details["tokens"] <= 512 for r in batched)
    assert len({r.score for r in batched}) == len(episodes)  # different trajectories, different scores
    single = [scorer.score(t, CTX) for t in episodes]
    assert logits(batched) == pytest.approx(logits(single), abs=1e-4)
    again = RewardModel(model=str(converted_model), num_labels=1, max_length=512, batch_size=2)
    assert logits(again.score_batch(episodes)) == pytest.approx(logits(batched), abs=1e-5)  # same seed, same head
