"""`trajgym train sft|dpo`: TRL's trainers on exported records, the run folder, resume, and where the
loss falls. A tiny random model (the bundled tokenizer, a 2-layer Llama) keeps most tests fast; the
bundled SmolLM2-135M itself trains a few steps in the tests the issue asks for."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("trl")
pytest.importorskip("datasets")

import torch
from datasets import Dataset
from safetensors.torch import load_file

from trajgym.cli.main import main as cli_main
from trajgym.errors import TrajgymError
from trajgym.serving.server import chat_template_path
from trajgym.serving.weights import weights_id
from trajgym.trainers.config import DPORunConfig, SFTRunConfig, TrainConfigError, load_train_config
from trajgym.trainers.curves import read_rows
from trajgym.trainers.dpo import train_dpo
from trajgym.trainers.evaluate import held_out_units, trained_on
from trajgym.trainers.export import export
from trajgym.trainers.run import TRAINING_FILE, RunFolder, TrainingError
from trajgym.trainers.sft import build_trainer, train_sft


@pytest.fixture(scope="module")
def sft_data(scored_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "sft"
    export([scored_file], out, fmt="sft")
    return out


@pytest.fixture(scope="module")
def one_sft_record(scored_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The oracle's refund_damaged_item episode alone, as SFT data."""
    root = tmp_path_factory.mktemp("one")
    lines = [line for line in scored_file.read_text().splitlines()
             if '"refund_damaged_item"' in line and '"oracle"' in line]
    (root / "one.jsonl").write_text(lines[0] + "\n")
    export([root / "one.jsonl"], root / "sft", fmt="sft")
    return root / "sft"


@pytest.fixture(scope="module")
def one_pair(scored_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The oracle's refund_damaged_item episode against the random agent's, as one DPO pair."""
    root = tmp_path_factory.mktemp("pair")
    lines = [line for line in scored_file.read_text().splitlines() if '"refund_damaged_item"' in line]
    (root / "two.jsonl").write_text("\n".join(lines) + "\n")
    export([root / "two.jsonl"], root / "dpo", fmt="dpo")
    return root / "dpo"


@pytest.fixture(scope="module")
def dpo_data(scored_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The oracle's episode against the random agent's, per variation, as DPO pairs."""
    out = tmp_path_factory.mktemp("export") / "dpo"
    export([scored_file], out, fmt="dpo")
    return out


def _config(tmp_path: Path, model: Path | str, data: Path, **extra: Any) -> SFTRunConfig:
    return SFTRunConfig(model=str(model), data=str(data), output=str(tmp_path / "run"), precision="fp32",
                        save_steps=1, **extra)


def _losses(run: Path) -> list[float]:
    return [row["loss"] for row in read_rows(run / "curves.csv") if "loss" in row]


def _changed(before: Path, after: Path) -> bool:
    a, b = load_file(str(before / "model.safetensors")), load_file(str(after / "model.safetensors"))
    return any(not torch.equal(a[k].float(), b[k].float()) for k in a)


# -- where the loss falls ------------------------------------------------------------------------


def _batch(trainer: Any, example: dict[str, Any]) -> dict[str, torch.Tensor]:
    collated: dict[str, torch.Tensor] = trainer.data_collator([example])
    return {k: v for k, v in collated.items() if k in ("input_ids", "attention_mask", "labels")}


def _gradients(model: Any, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    model.zero_grad()
    model(**batch).loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_no_loss_falls_on_what_the_learner_did_not_generate(tiny_model: Path, sft_data: Path,
                                                            tmp_path: Path) -> None:
    config = _config(tmp_path, tiny_model, sft_data)
    run = RunFolder(tmp_path / "run")
    trainer, tokenizer, dataset, _ = build_trainer(config, run, progress=False)
    messages = dataset[0]["messages"]
    tools = dataset[0]["tools"]
    assert messages[-1]["role"] == "assistant"

    def tokenized(conversation: list[dict[str, Any]]) -> dict[str, Any]:
        """``conversation`` through the trainer's own preprocessing (tokens and labels, as trained)."""
        rows = Dataset.from_list([{"messages": conversation, "tools": tools}])
        prepared = trainer._prepare_dataset(rows, tokenizer, trainer.args, False, None, "check")
        return dict(prepared[0])

    assert tokenized(messages)["input_ids"] == trainer.train_dataset[0]["input_ids"]
    base = _batch(trainer, tokenized(messages))
    # every labelled token is the learner's: its messages, its calls, the <|im_end|> that ends each turn
    said = [m for m in messages if m["role"] == "assistant"]
    labelled = tokenizer.decode(base["labels"][0][base["labels"][0] != -100])
    assert labelled.count("<|im_end|>") == len(said)
    for m in said:
        assert (m["content"] or m["tool_calls"][0]["function"]["name"]) in labelled
    for m in messages:
        if m["role"] in ("user", "tool", "system") and m["content"] and len(m["content"]) > 20:
            assert m["content"] not in labelled

    # a customer's and a tool's message after the learner's last turn change no gradient at all
    model = trainer.model.float()
    perturbed = [*messages, {**messages[1], "content": "Actually, make it a refund of 9999 to my other card."},
                 {"role": "tool", "content": '{"error": "garbled"}', "name": "get_order", "tool_call_id": None,
                  "tool_calls": None}]
    grads, grads_after = _gradients(model, base), _gradients(model, _batch(trainer, tokenized(perturbed)))
    assert grads.keys() == grads_after.keys()
    for name in grads:
        torch.testing.assert_close(grads_after[name], grads[name], rtol=1e-5, atol=1e-7, msg=name)

    # and the loss's gradient at every position that predicts a token of others is exactly zero
    model.zero_grad()
    logits = model(input_ids=base["input_ids"]).logits
    logits.retain_grad()
    shifted = base["labels"][0, 1:]
    loss = torch.nn.functional.cross_entropy(logits[0, :-1], shifted, ignore_index=-100)
    loss.backward()
    assert logits.grad is not None
    per_position = logits.grad[0, :-1].abs().sum(dim=-1)
    assert torch.all(per_position[shifted == -100] == 0)
    assert torch.all(per_position[shifted != -100] > 0)


# -- training runs ------------------------------------------------------------------------------


def test_sft_run_folder_resume_and_refusals(tiny_model: Path, sft_data: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, tiny_model, sft_data, max_steps=3, learning_rate=1e-3)
    summary = train_sft(config, progress=False)
    run = RunFolder(Path(config.output))
    assert summary["steps"] == 3 and summary["records"] == 6
    assert (run.root / "curves.png").is_file() and len(_losses(run.root)) == 3
    info = json.loads((run.model / TRAINING_FILE).read_text())
    assert info["weights_id"] == summary["weights_id"] == weights_id(run.model) != weights_id(tiny_model)
    assert {tuple(u) for u in info["trained_on"]} == trained_on(run.model)[0]
    assert {s for s, _ in info["trained_on"]} == {"refund_damaged_item", "employee_onboarding", "count_words"}
    # the served template, not the training one
    assert (run.model / "chat_template.jinja").read_text() == chat_template_path().read_text()
    assert _changed(tiny_model, run.model)

    with pytest.raises(TrainingError, match="finished run"):
        train_sft(config, progress=False)

    # killed after its last checkpoint: the model was never written. Given more steps, it goes on from there.
    shutil.rmtree(run.model)
    more = config.model_copy(update={"max_steps": 5})
    with pytest.raises(TrainingError, match=r"another config .*max_steps"):
        train_sft(more, progress=False)
    summary = train_sft(more, progress=False, overrides=("max_steps",))
    assert summary["steps"] == 5
    steps = [row["step"] for row in read_rows(run.root / "curves.csv") if "loss" in row]
    assert steps == [1, 2, 3, 4, 5]

    with pytest.raises(TrainingError, match="not empty"):
        stray = tmp_path / "stray"
        stray.mkdir()
        (stray / "notes.txt").write_text("mine")
        train_sft(config.model_copy(update={"output": str(stray)}), progress=False)


def test_train_refuses_data_of_the_other_format(tiny_model: Path, dpo_data: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match=r"holds dpo records.*--format sft"):
        train_sft(_config(tmp_path, tiny_model, dpo_data, max_steps=1), progress=False)
    with pytest.raises(TrainingError, match="not a `trajgym export` folder"):
        train_sft(_config(tmp_path, tiny_model, tmp_path / "nothing", max_steps=1), progress=False)


def test_cli_train_with_a_config_file(tiny_model: Path, dpo_data: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "dpo.yaml"
    cfg.write_text(f"model: {tiny_model}\ndata: {dpo_data}\noutput: run\nprecision: fp32\nlearning_rate: 1.0e-3\n")
    assert cli_main(["train", "dpo", str(cfg), "--max-steps", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "trained dpo: 2 steps" in out and "reward accuracy" in out
    rows = read_rows(tmp_path / "run" / "curves.csv")
    assert any("rewards/accuracies" in r for r in rows)
    assert (tmp_path / "run" / "model" / TRAINING_FILE).is_file()


def test_config_errors_are_located(tmp_path: Path) -> None:
    cfg = tmp_path / "sft.yaml"
    cfg.write_text("data: d\noutput: o\nepochs: 2\nlearning_rat: 1.0e-4\n")
    with pytest.raises(TrainConfigError) as err:
        load_train_config(cfg, "sft")
    assert f"{cfg}:4:1" in str(err.value) and "learning_rat" in str(err.value)
    cfg.write_text("method: dpo\ndata: d\noutput: o\n")
    with pytest.raises(TrainConfigError, match=r"sft.yaml:1:9: method should be one of 'sft'"):
        load_train_config(cfg, "sft")
    cfg.write_text("data: d\noutput: o\nsft_weight: 0.5\nloss_type: ipo\n")
    with pytest.raises(TrainConfigError, match="sft_weight"):
        load_train_config(cfg, "dpo")
    cfg.write_text("data: ../d\noutput: out\n")
    loaded = load_train_config(cfg, "dpo")
    assert isinstance(loaded, DPORunConfig)
    assert loaded.data == str((tmp_path.parent / "d").resolve()) and loaded.output == str(tmp_path / "out")
    with pytest.raises(TrajgymError, match="cannot read"):
        load_train_config(tmp_path / "missing.yaml", "sft")


def test_auto_precision_uses_bfloat16_only_where_it_is_native(monkeypatch: pytest.MonkeyPatch) -> None:
    # bfloat16 autocast on an AVX2-only CPU is emulated: a step of the bundled model took ~25x longer than
    # in float32 (a CI run timed out on it), so auto means fp32 there
    def machine(capability: str, *, cuda: bool = False, cuda_bf16: bool = False) -> None:
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: cuda_bf16)

    auto = SFTRunConfig(data="d", output="o")
    assert auto.precision == "auto"
    machine("AVX2")
    assert auto.effective_precision() == "fp32"
    assert SFTRunConfig(data="d", output="o", precision="mixed").effective_precision() == "mixed"  # asked for
    machine("AVX512")
    assert auto.effective_precision() == "mixed"
    machine("AVX2", cuda=True, cuda_bf16=True)
    assert auto.effective_precision() == "mixed"
    assert SFTRunConfig(data="d", output="o", device="cpu").effective_precision() == "fp32"  # the CPU's say
    machine("AVX512", cuda=True, cuda_bf16=False)
    assert auto.effective_precision() == "fp32"


def test_held_out_units_leave_out_what_training_saw() -> None:
    units, dropped = held_out_units(["refund_damaged_item"], episodes=3, trials=2, seed=0, seen=set())
    assert len(units) == 6 and dropped == 0
    seen = {(units[0].key.scenario_id, units[0].key.seed)}
    kept, dropped = held_out_units(["refund_damaged_item"], episodes=3, trials=2, seed=0, seen=seen)
    assert dropped == 2 and len(kept) == 4
    assert all((u.key.scenario_id, u.key.seed) not in seen for u in kept)


# -- the bundled model -------------------------------------------------------------------------------


def test_sft_trains_the_bundled_model(converted_model: Path, one_sft_record: Path, tmp_path: Path) -> None:
    config = SFTRunConfig(model="bundled", data=str(one_sft_record), output=str(tmp_path / "run"), epochs=3,
                          learning_rate=1e-4, save_steps=100)
    summary = train_sft(config, progress=False)
    losses = _losses(tmp_path / "run")
    assert summary["steps"] == 3 and len(losses) == 3
    assert losses[-1] < losses[0]
    assert _changed(converted_model, tmp_path / "run" / "model")


def test_dpo_trains_the_bundled_model(converted_model: Path, one_pair: Path, tmp_path: Path) -> None:
    config = DPORunConfig(model="bundled", data=str(one_pair), output=str(tmp_path / "run"), epochs=2,
                          learning_rate=1e-5, save_steps=100)
    summary = train_dpo(config, progress=False)
    losses = _losses(tmp_path / "run")
    assert summary["steps"] == 2 and len(losses) == 2
    assert losses[0] == pytest.approx(0.6931, abs=1e-3)  # the policy is the reference at first: log 2
    assert losses[-1] < losses[0]
    assert summary["final_reward_accuracy"] == 1.0
    assert _changed(converted_model, tmp_path / "run" / "model")


# -- evaluation on the real server ----------------------------------------------------------------------


@pytest.mark.slow
def test_eval_plays_scores_and_splits_held_out_variations(vllm_server: Any, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """`trajgym eval` against the shared real vLLM server (the bundled model): what a trained model's
    folder says it trained on is left out, and its scenarios count as held-out seeds."""
    trained = tmp_path / "trained"
    trained.mkdir()
    units, _ = held_out_units(["refund_damaged_item"], episodes=2, trials=1, seed=1000, seen=set())
    seen = [[units[0].key.scenario_id, units[0].key.seed]]
    (trained / TRAINING_FILE).write_text(json.dumps({"trained_on": seen}))
    code = cli_main(["eval", "refund_damaged_item", "order_status_inquiry", "--base-url", vllm_server.base_url,
                     "--hold-out-from", str(trained), "--episodes", "2", "--max-turns", "4", "--max-tokens", "48",
                     "--api", "chat", "--out", str(tmp_path / "eval")])
    assert code == 0
    out = " ".join(capsys.readouterr().out.split())  # rich wraps long lines at the terminal's width
    assert "left out 1 trained-on variations" in out
    result = json.loads((tmp_path / "eval" / "eval.json").read_text())
    rows = {r["scenario_id"]: r for r in result["rows"]}
    assert rows["refund_damaged_item"]["split"] == "held-out seeds" and rows["refund_damaged_item"]["episodes"] == 1
    assert rows["order_status_inquiry"]["split"] == "held-out scenario" and rows["order_status_inquiry"]["episodes"] == 2
    assert result["splits"]["held-out scenario"]["episodes"] == 2
    assert (tmp_path / "eval" / "scored.jsonl").is_file()
    # a second evaluation into the same folder would mix two runs: refused
    assert cli_main(["eval", "refund_damaged_item", "--base-url", vllm_server.base_url, "--episodes", "1",
                     "--out", str(tmp_path / "eval")]) == 1
