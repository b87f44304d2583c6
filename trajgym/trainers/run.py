"""A training run's folder, and what every method does before and after TRL trains.

    RUN/
      config.json         the config the run was started with (a resume must match it)
      checkpoints/        TRL's checkpoints; a killed run resumes from the last one
      model/              the trained policy: a transformers folder that vLLM serves as is, with
                          trajgym_training.json (its weights id, base model, data, what it trained on)
      curves.csv, curves.png   the training curves
      summary.json        steps, records, tokens, seconds, tokens/s, final loss

The saved model's chat template is the serving one (the training template differs only by its
``{% generation %}`` markers, which render nothing): the folder serves exactly as the base did.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trajgym._version import __version__
from trajgym.errors import TrajgymError
from trajgym.trainers.config import BUNDLED, TrainConfig

log = logging.getLogger(__name__)

TRAINING_FILE = "trajgym_training.json"
"""In a trained model folder: how it was made, and the (scenario, seed) units it was trained on."""
TRAIN_HINT = "install the train extra: make train-setup (or pip install torch==2.13.0 'trajgym[hf,train]')"


class TrainingError(TrajgymError):
    """A training run cannot start or go on (a run folder of another config, missing data, ...)."""


def require_train_extra() -> None:
    """Raise :class:`TrainingError` naming the extra when TRL, datasets or torch are missing."""
    missing = [m for m in ("torch", "transformers", "trl", "datasets") if importlib.util.find_spec(m) is None]
    if missing:
        raise TrainingError(f"training needs {', '.join(missing)}; {TRAIN_HINT}")


@dataclass(frozen=True)
class RunFolder:
    """The paths of a run folder (see the module docstring)."""

    root: Path

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def config_file(self) -> Path:
        return self.root / "config.json"

    @property
    def summary_file(self) -> Path:
        return self.root / "summary.json"

    def last_checkpoint(self) -> Path | None:
        """The newest ``checkpoint-N`` folder that finished saving, if any."""
        if not self.checkpoints.is_dir():
            return None
        done = [p for p in self.checkpoints.glob("checkpoint-*")
                if p.name.removeprefix("checkpoint-").isdigit() and (p / "trainer_state.json").is_file()]
        return max(done, key=lambda p: int(p.name.removeprefix("checkpoint-")), default=None)


def open_run(config: TrainConfig, *, overrides: Iterable[str] = ()) -> tuple[RunFolder, Path | None]:
    """The run folder for ``config``, created or checked, and the checkpoint to resume from.

    A folder with a finished model is not trained again; a folder started with another config is
    refused (``overrides``, the keys set on the command line, may differ: a resumed run may be given
    more steps)."""
    run = RunFolder(Path(config.output))
    wanted = config.model_dump(mode="json")
    if (run.model / TRAINING_FILE).is_file():
        raise TrainingError(f"{run.root} holds a finished run (its model is {run.model}); give another output folder")
    if run.config_file.is_file():
        differ = config_differences(run.config_file, wanted, ignore=overrides)
        if differ:
            raise TrainingError(f"{run.root} holds a run started with another config (differs in: "
                                f"{', '.join(differ)}); give another output folder, or the same config to resume it")
    elif run.root.exists() and any(run.root.iterdir()):
        raise TrainingError(f"{run.root} is not empty and holds no training run; give a new or empty output folder")
    run.root.mkdir(parents=True, exist_ok=True)
    run.config_file.write_text(json.dumps(wanted, indent=2) + "\n")
    return run, run.last_checkpoint()


def config_differences(held_file: Path, wanted: dict[str, Any], *, ignore: Iterable[str] = ()) -> list[str]:
    """The keys in which the config a run folder was started with (``held_file``) and ``wanted``
    differ, but for those in ``ignore`` (what a resumed run may change)."""
    held = json.loads(held_file.read_text())
    skip = set(ignore)
    return sorted(k for k in set(held) | set(wanted) if held.get(k) != wanted.get(k) and k not in skip)


def base_folder(config: TrainConfig) -> Path:
    """The model folder training starts from (the bundled model converted on first use)."""
    if config.model == BUNDLED:
        from trajgym.serving.convert import convert_bundled_model

        return convert_bundled_model()
    folder = Path(config.model)
    if not (folder / "config.json").is_file():
        raise TrainingError(f"model {folder} is not a transformers folder (no config.json); give 'bundled' or a "
                            "folder such as a previous run's model/")
    return folder


def load_policy(config: TrainConfig) -> tuple[Any, Any, Path]:
    """The model (in the config's dtype, LoRA adapters added if asked) and its tokenizer, and the
    folder they came from."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    folder = base_folder(config)
    dtype = torch.bfloat16 if config.effective_precision() == "bf16" else torch.float32
    model: Any = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if config.lora is not None:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(
            r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
            target_modules=config.lora.target_modules, task_type="CAUSAL_LM"))
    return model, tokenizer, folder


def common_args(config: TrainConfig, run: RunFolder) -> dict[str, Any]:
    """The TrainingArguments every method shares, from the config."""
    return {
        "output_dir": str(run.checkpoints),
        "num_train_epochs": config.epochs,
        "max_steps": config.max_steps if config.max_steps is not None else -1,
        "learning_rate": config.learning_rate,
        "lr_scheduler_type": config.lr_scheduler,
        "warmup_steps": config.warmup_ratio,
        "weight_decay": config.weight_decay,
        "per_device_train_batch_size": config.batch_size,
        "gradient_accumulation_steps": config.grad_accum,
        "max_length": config.max_length,
        "bf16": config.effective_precision() in ("mixed", "bf16"),  # autocast; the weights' type is load_policy's
        "seed": config.seed,
        "data_seed": config.seed,
        "save_strategy": "steps",
        "save_steps": config.save_steps,
        "save_total_limit": config.save_total_limit,
        "logging_steps": config.logging_steps,
        "logging_first_step": True,
        "activation_checkpointing": config.gradient_checkpointing,
        "use_cpu": config.device == "cpu" or (config.device == "auto" and not _cuda()),
        "report_to": "none",
        "dataloader_num_workers": 0,
        "dataset_num_proc": None,
    }


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def load_export(folder: str | Path, fmt: str) -> tuple[Any, dict[str, Any]]:
    """The dataset a ``trajgym export --format fmt`` folder holds, and its manifest."""
    import datasets

    from trajgym.trainers.export import DATASET_DIR, MANIFEST

    root = Path(folder)
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise TrainingError(f"{root} is not a `trajgym export` folder ({MANIFEST}: {exc}); make one with "
                            f"`trajgym export SCORED.jsonl --format {fmt} --out {root}`") from None
    if manifest.get("format") != fmt:
        raise TrainingError(f"{root} holds {manifest.get('format')} records, and this is {fmt} training; export with "
                            f"--format {fmt}")
    try:
        dataset = datasets.load_from_disk(str(root / DATASET_DIR))
    except (OSError, ValueError, FileNotFoundError) as exc:
        raise TrainingError(f"cannot read the dataset in {root / DATASET_DIR}: {exc}") from None
    if len(dataset) == 0:
        raise TrainingError(f"{root} holds no records: nothing to train on")
    return dataset, manifest


def trained_units(dataset: Any) -> list[tuple[str, int]]:
    """The (scenario id, seed) variations a dataset's records came from, sorted."""
    return sorted({(str(s), int(n)) for s, n in zip(dataset["scenario_id"], dataset["seed"], strict=True)})


def finish(run: RunFolder, trainer: Any, tokenizer: Any, *, config: TrainConfig, base: Path, dataset: Any,
           manifest: dict[str, Any], seconds: float, tokens: int) -> dict[str, Any]:
    """Save the trained policy to ``run.model`` (merged, with the serving chat template), write its
    ``trajgym_training.json`` and the run's summary; return the summary."""
    from trajgym.serving.weights import weights_id

    tmp = run.root / ".model.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    model = trainer.model
    if hasattr(model, "merge_and_unload"):  # LoRA: one plain folder that vLLM serves as is
        model = model.merge_and_unload()
    save_policy(model, tokenizer, base, tmp)
    base_info = _read_training(base)
    state = trainer.state
    losses = [row["loss"] for row in state.log_history if "loss" in row]
    summary = {
        "method": getattr(config, "method", "?"), "precision": config.effective_precision(),
        "steps": state.global_step, "epochs": state.epoch, "records": len(dataset), "tokens": tokens, "seconds": round(seconds, 1),
        "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else None,
        "first_loss": losses[0] if losses else None, "final_loss": losses[-1] if losses else None,
    }
    units = trained_units(dataset)
    earlier = [tuple(u) for u in base_info.get("trained_on", [])]
    record = {
        "trajgym": __version__, "method": summary["method"], "config": config.model_dump(mode="json"),
        "base_model": str(base), "base_weights_id": weights_id(base),
        "data": {"folder": str(Path(config.data)), "manifest": manifest},
        "trained_on": sorted({*earlier, *units}),
        "scenarios": sorted({s for s, _ in {*earlier, *units}}),
        "summary": summary, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (tmp / TRAINING_FILE).write_text(json.dumps(record, indent=2) + "\n")
    tmp.rename(run.model)
    summary["weights_id"] = record["weights_id"] = weights_id(run.model)
    (run.model / TRAINING_FILE).write_text(json.dumps(record, indent=2) + "\n")
    run.summary_file.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def save_policy(model: Any, tokenizer: Any, base: Path, dest: Path) -> None:
    """Write ``model`` to ``dest`` as a folder vLLM serves as is: the base model's dtype (served alike,
    and a live swap stays possible), the tokenizer, and the serving chat template as the only one.
    The model in memory keeps its own dtype (a copy is converted)."""
    import torch

    from trajgym.serving.server import chat_template_path

    dtype = _saved_dtype(base)
    state = {k: v.detach().to(dtype) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.save_pretrained(dest, state_dict=state, safe_serialization=True)
    config_file = dest / "config.json"  # it names the model's dtype in memory: name the saved one
    config = json.loads(config_file.read_text())
    config["dtype"] = str(dtype).removeprefix("torch.")
    config.pop("torch_dtype", None)
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    # training leaves the tokenizer as it was: the base's files, byte for byte (vLLM reads them only when it
    # starts, so a server on the base takes these weights in a live swap)
    from trajgym.serving.swap import STARTUP_FILES

    copied = [name for name in STARTUP_FILES if (base / name).is_file()]
    for name in copied:
        shutil.copyfile(base / name, dest / name)
    if "tokenizer_config.json" not in copied:
        template, tokenizer.chat_template = tokenizer.chat_template, None
        try:
            tokenizer.save_pretrained(dest)
        finally:
            tokenizer.chat_template = template
    shutil.copyfile(chat_template_path(), dest / "chat_template.jinja")
    _drop_inline_template(dest / "tokenizer_config.json")


def _saved_dtype(base: Path) -> Any:
    """The torch dtype of the base model's weights (its config.json), float32 if it names none."""
    import torch

    try:
        config = json.loads((base / "config.json").read_text())
    except (OSError, ValueError):
        config = {}
    name = config.get("dtype") or config.get("torch_dtype") or "float32"
    dtype = getattr(torch, str(name), None)
    return dtype if isinstance(dtype, torch.dtype) else torch.float32


def _read_training(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / TRAINING_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_training(folder: str | Path) -> dict[str, Any]:
    """A model folder's ``trajgym_training.json`` (empty for a model trajgym did not train)."""
    return _read_training(Path(folder))


def _drop_inline_template(path: Path) -> None:
    """chat_template.jinja is the one template; none inline in tokenizer_config.json."""
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if config.pop("chat_template", None) is not None:
        path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
