"""``trajgym train dpo``: direct preference optimisation on exported pairs (TRL's DPOTrainer).

A pair (``trajgym export --format dpo``) is the shared conversation up to the first learner turn
where two episodes of one scenario variation differ (the prompt), the better-ranked episode's turn
(chosen) and the other's (rejected). The reference model is the starting model; by default its
log-probabilities are computed once before training, so only one model is held in memory.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from trajgym.trainers.config import DPORunConfig
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
PAIR_COLUMNS = ("prompt", "chosen", "rejected", "tools")


def build_trainer(config: DPORunConfig, run: RunFolder, *, progress: bool = True,
                  data: tuple[Any, dict[str, Any]] | None = None) -> tuple[Any, Any, Any, Any]:
    """TRL's DPOTrainer for ``config``: ``(trainer, tokenizer, dataset, manifest)``."""
    from trl.trainer.dpo_config import DPOConfig
    from trl.trainer.dpo_trainer import DPOTrainer

    from trajgym.trainers.callbacks import CurvesCallback
    from trajgym.trainers.template import apply_to

    dataset, manifest = data if data is not None else load_export(config.data, "dpo")
    model, tokenizer, _ = load_policy(config)
    apply_to(tokenizer)  # the markers render nothing: prompts and answers tokenize as served
    loss: list[str] = ["sigmoid", "sft"] if config.sft_weight else [config.loss_type]
    args = DPOConfig(
        **common_args(config, run), beta=config.beta, loss_type=loss,
        loss_weights=[1.0, config.sft_weight] if config.sft_weight else None,
        precompute_ref_log_probs=config.precompute_ref_log_probs, disable_tqdm=not progress,
    )
    columns = [c for c in dataset.column_names if c not in PAIR_COLUMNS]
    trainer = DPOTrainer(model=model, args=args, train_dataset=dataset.remove_columns(columns),
                         processing_class=tokenizer,
                         callbacks=[CurvesCallback(run.root, f"DPO: {run.root.name}")])
    return trainer, tokenizer, dataset, manifest


def train_dpo(config: DPORunConfig, *, progress: bool = True, overrides: tuple[str, ...] = ()) -> dict[str, Any]:
    """Train ``config`` to the end (resuming the run folder's last checkpoint, if any); return the
    run's summary (with the trained model's ``weights_id`` and the last reward accuracy)."""
    require_train_extra()
    data = load_export(config.data, "dpo")  # before the run folder is made: bad data leaves nothing behind
    run, resume = open_run(config, overrides=overrides)
    trainer, tokenizer, dataset, manifest = build_trainer(config, run, progress=progress, data=data)
    rows = trainer.train_dataset
    per_epoch = sum(len(p) + len(c) + len(r) for p, c, r in
                    zip(rows["prompt_ids"], rows["chosen_ids"], rows["rejected_ids"], strict=True))
    steps_per_epoch = max(1, -(-len(rows) // (config.batch_size * config.grad_accum)))
    fraction = (config.max_steps / steps_per_epoch) if config.max_steps is not None else config.epochs
    start = time.monotonic()
    trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    summary = finish(run, trainer, tokenizer, config=config, base=base_folder(config), dataset=dataset,
                     manifest=manifest, seconds=time.monotonic() - start, tokens=int(per_epoch * fraction))
    accuracies = [row["rewards/accuracies"] for row in trainer.state.log_history if "rewards/accuracies" in row]
    summary["final_reward_accuracy"] = accuracies[-1] if accuracies else None
    return summary
