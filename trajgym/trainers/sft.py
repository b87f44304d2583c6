"""``trajgym train sft``: supervised fine-tuning on exported learner conversations (TRL's SFTTrainer).

Each record is one whole conversation of the learner role (``trajgym export --format sft``), trained
in one pass with the loss only on what the learner generated: its messages, its tool calls and the
``<|im_end|>`` that ends each turn (``assistant_only_loss`` over the training chat template's
``{% generation %}`` markers, :mod:`trajgym.trainers.template`). Never on the system prompt, the
customer's or a supervisor's words, or tool results: the model learns to act, not to simulate the
world. Per-turn prompt/completion records would repeat the whole prefix once per turn.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from trajgym.trainers.config import SFTRunConfig
from trajgym.trainers.run import (
    RunFolder,
    base_folder,
    common_args,
    finish,
    load_export,
    load_policy,
    open_run,
    require_train_extra,
)

log = logging.getLogger(__name__)


def build_trainer(config: SFTRunConfig, run: RunFolder, *, progress: bool = True,
                  data: tuple[Any, dict[str, Any]] | None = None) -> tuple[Any, Any, Any, Any]:
    """TRL's SFTTrainer for ``config``: ``(trainer, tokenizer, dataset, manifest)``."""
    from trl.trainer.sft_config import SFTConfig
    from trl.trainer.sft_trainer import SFTTrainer

    from trajgym.trainers.callbacks import CurvesCallback
    from trajgym.trainers.template import apply_to

    dataset, manifest = data if data is not None else load_export(config.data, "sft")
    model, tokenizer, _ = load_policy(config)
    apply_to(tokenizer)
    args = SFTConfig(
        **common_args(config, run), assistant_only_loss=True, packing=config.packing,
        padding_free=config.packing, disable_tqdm=not progress, remove_unused_columns=True,
    )
    columns = [c for c in dataset.column_names if c not in ("messages", "tools")]
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset.remove_columns(columns),
                         processing_class=tokenizer,
                         callbacks=[CurvesCallback(run.root, f"SFT: {run.root.name}")])
    return trainer, tokenizer, dataset, manifest


def train_sft(config: SFTRunConfig, *, progress: bool = True, overrides: tuple[str, ...] = ()) -> dict[str, Any]:
    """Train ``config`` to the end (resuming the run folder's last checkpoint, if any); return the
    run's summary (with the trained model's ``weights_id``)."""
    require_train_extra()
    data = load_export(config.data, "sft")  # before the run folder is made: bad data leaves nothing behind
    run, resume = open_run(config, overrides=overrides)
    trainer, tokenizer, dataset, manifest = build_trainer(config, run, progress=progress, data=data)
    if resume is not None:
        log.info("resuming %s from %s", run.root, resume.name)
    tokens = _trained_tokens(trainer, config)
    start = time.monotonic()
    trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    return finish(run, trainer, tokenizer, config=config, base=base_folder(config), dataset=dataset, manifest=manifest,
                  seconds=time.monotonic() - start, tokens=tokens)


def _trained_tokens(trainer: Any, config: SFTRunConfig) -> int:
    """Tokens the run goes through (the tokenized records over the epochs, or the steps' share)."""
    lengths = [len(ids) for ids in trainer.train_dataset["input_ids"]]
    per_epoch = sum(lengths)
    if config.max_steps is not None:
        per_step = per_epoch / max(1, len(lengths)) * config.batch_size * config.grad_accum
        return int(per_step * config.max_steps)
    return int(per_epoch * config.epochs)

