"""Training configs: what ``trajgym train sft|dpo CONFIG.yaml`` reads, as pydantic models.

A config names the model to start from, the exported dataset (``trajgym export``) and the run folder,
plus the optimisation settings. Unknown keys are rejected and every problem is reported as
``file:line:col: message``; relative paths are relative to the config file's folder. A command-line
option overrides the file (``--out``, ``--max-steps``).

    model: bundled                 # or a transformers folder (a previous run's model/)
    data: ../runs/sft-data         # a `trajgym export --format sft` folder
    output: ../runs/sft            # the run folder: checkpoints/, model/, curves.csv, curves.png
    epochs: 2
    learning_rate: 5.0e-5
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from trajgym.configfile import load_config
from trajgym.errors import ConfigFileError

BUNDLED = "bundled"
"""The ``model`` that names the bundled SmolLM2-135M-Instruct (converted on first use)."""


def native_bf16(device: str = "auto") -> bool:
    """Whether this machine does bfloat16 arithmetic natively on ``device`` (auto: cuda when available):
    a CUDA GPU that supports it, or a CPU whose torch kernels are AVX-512's. On an AVX2-only CPU, torch
    emulates bfloat16 and autocast made a training step many times slower than float32, not faster."""
    import torch

    if device != "cpu" and torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    return torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def absolute_path(base: Path, p: str) -> str:
    """``p`` as an absolute path, a relative one taken against ``base`` (a config file's folder)."""
    path = Path(p).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def scenario_ref(base: Path, s: str) -> str:
    """A scenario named in a config: a built-in id as is, a ``.yaml`` file made absolute against ``base``."""
    return absolute_path(base, s) if s.endswith((".yaml", ".yml")) else s


class TrainConfigError(ConfigFileError):
    """A training config is broken. Carries every problem found, each located in the file."""


class LoraOptions(BaseModel):
    """LoRA adapters (PEFT) instead of full fine-tuning; merged into the saved model, so it serves as is."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(16, ge=1, description="adapter rank")
    alpha: int = Field(32, ge=1, description="scaling numerator (lora_alpha)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: str | list[str] = Field("all-linear", description="modules that get adapters")


class TrainConfig(BaseModel):
    """Settings every training method shares."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(BUNDLED, description="'bundled' (SmolLM2-135M-Instruct) or a transformers folder")
    data: str = Field(description="a `trajgym export` folder of the method's format")
    output: str = Field(description="the run folder (checkpoints, the trained model, curves)")
    epochs: float = Field(1.0, gt=0, description="passes over the data")
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps (overrides epochs)")
    learning_rate: float = Field(5e-5, gt=0)
    lr_scheduler: Literal["constant", "linear", "cosine"] = "linear"
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(1, ge=1, description="records per device batch")
    grad_accum: int = Field(1, ge=1, description="batches per optimizer step")
    max_length: int = Field(4096, ge=16, description="tokens per record; longer ones are cut")
    precision: Literal["auto", "mixed", "bf16", "fp32"] = Field(
        "auto", description="mixed: float32 weights and optimizer, bfloat16 arithmetic (autocast); bf16: all "
                            "bfloat16 (updates smaller than a weight's precision are lost); fp32: all float32; "
                            "auto: mixed where bfloat16 arithmetic is native (a GPU that has it, an AVX-512 CPU), "
                            "else fp32")
    seed: int = 0
    lora: LoraOptions | None = Field(None, description="LoRA adapters instead of full fine-tuning")
    save_steps: int = Field(25, ge=1, description="a checkpoint every N steps (a killed run resumes from the last)")
    save_total_limit: int = Field(2, ge=1, description="checkpoints kept")
    logging_steps: int = Field(1, ge=1, description="a row of the training curves every N steps")
    gradient_checkpointing: bool = Field(False, description="less memory, more time")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="cuda when available, else cpu")

    def effective_precision(self) -> Literal["mixed", "bf16", "fp32"]:
        """The precision a run uses: ``auto`` resolved on this machine (:func:`native_bf16`)."""
        if self.precision != "auto":
            return self.precision
        return "mixed" if native_bf16(self.device) else "fp32"

    def resolve(self, base: Path) -> TrainConfig:
        """A copy with ``data``, ``output`` and a folder ``model`` made absolute against ``base``."""
        def absolute(p: str) -> str:
            return absolute_path(base, p)

        changes: dict[str, Any] = {"data": absolute(self.data), "output": absolute(self.output)}
        if self.model != BUNDLED:
            changes["model"] = absolute(self.model)
        return self.model_copy(update=changes)


class SFTRunConfig(TrainConfig):
    """``trajgym train sft``: supervised fine-tuning on whole learner conversations, the loss only on
    what the learner said and called (TRL's SFTTrainer, ``assistant_only_loss``)."""

    method: Literal["sft"] = "sft"
    packing: bool = Field(False, description="pack records into max_length rows (padding-free); fewer pad tokens")


class DPORunConfig(TrainConfig):
    """``trajgym train dpo``: direct preference optimisation on exported pairs (TRL's DPOTrainer)."""

    method: Literal["dpo"] = "dpo"
    learning_rate: float = Field(1e-6, gt=0)
    beta: float = Field(0.1, gt=0, description="how far the policy may move from the reference (higher: less)")
    loss_type: Literal["sigmoid", "ipo", "hinge", "robust"] = "sigmoid"
    precompute_ref_log_probs: bool = Field(
        True, description="score the pairs with the reference model once, before training (no second model in memory)")
    sft_weight: float = Field(0.0, ge=0, description="add this much SFT loss on the chosen answers (RPO); 0: none")

    @model_validator(mode="after")
    def _check(self) -> DPORunConfig:
        if self.sft_weight and self.loss_type != "sigmoid":
            raise ValueError("sft_weight mixes an SFT loss into the sigmoid DPO loss only: set loss_type: sigmoid")
        return self


class GRPORunConfig(TrainConfig):
    """``trajgym train grpo``: online multi-turn RL. Each step the policy, served by vLLM, plays
    ``group_size`` episodes of ``variations_per_step`` scenario variations; the scored episodes'
    rewards are compared within each variation (group-relative advantages), one clipped policy-gradient
    update is made on the learner's own tokens, and the new weights are served in place."""

    method: Literal["grpo"] = "grpo"
    data: str | None = Field(None, description="unused: GRPO plays its own episodes")  # type: ignore[assignment]
    scenarios: list[str] = Field(min_length=1, description="scenario ids or files the policy plays")
    max_steps: int | None = Field(10, ge=1, description="RL steps (play, score, update, serve)")
    learning_rate: float = Field(1e-6, gt=0)
    lr_scheduler: Literal["constant", "linear", "cosine"] = "constant"
    variations_per_step: int = Field(4, ge=1, description="scenario variations played per step (over all scenarios)")
    group_size: int = Field(4, ge=2, description="episodes per variation (K): the group its rewards are compared in")
    clip_epsilon: float = Field(0.2, gt=0, description="the importance ratio is clipped to [1-eps, 1+eps_high]")
    clip_epsilon_high: float | None = Field(None, gt=0, description="upper clip (default: clip_epsilon)")
    beta: float = Field(0.0, ge=0, description="weight of the KL penalty to the starting model (0: none, no "
                                               "reference model in memory)")
    scale_rewards: Literal["group", "none"] = Field(
        "group", description="group: advantages divided by the group's reward std; none: only centred (Dr. GRPO)")
    updates_per_step: int = Field(1, ge=1, description="optimizer steps on each batch of episodes")
    temperature: float = Field(1.0, gt=0, description="sampling temperature while playing")
    max_tokens: int = Field(256, ge=1, description="tokens per model turn")
    max_turns: int | None = Field(None, ge=1, description="cut episodes at this many turns (default: the scenario's)")
    scoring: str | None = Field(None, description="a scorer config (default: trajgym's scorers); the reward is "
                                                  "its weighted total, vetoes included")
    concurrency: int = Field(32, ge=1, description="episodes in flight")
    max_model_len: int = Field(8192, ge=256, description="vLLM's context length")
    request_timeout: float = Field(900.0, gt=0)
    base_url: str | None = Field(None, description="play against this running server instead of starting vLLM "
                                                   "(it must serve the starting model; no weights are swapped)")

    def resolve(self, base: Path) -> GRPORunConfig:
        def absolute(p: str) -> str:
            return absolute_path(base, p)

        changes: dict[str, Any] = {"output": absolute(self.output)}
        if self.model != BUNDLED:
            changes["model"] = absolute(self.model)
        if self.scoring is not None:
            changes["scoring"] = absolute(self.scoring)
        changes["scenarios"] = [scenario_ref(base, s) for s in self.scenarios]
        return self.model_copy(update=changes)


RunConfig = SFTRunConfig | DPORunConfig | GRPORunConfig
_MODELS: dict[str, type[TrainConfig]] = {"sft": SFTRunConfig, "dpo": DPORunConfig, "grpo": GRPORunConfig}
_EXAMPLE = "model: bundled, data: runs/sft-data, output: runs/sft, epochs: 2"


def load_train_config(path: str | Path, method: Literal["sft", "dpo", "grpo"]) -> RunConfig:
    """Read ``path`` as a ``method`` config, its relative paths made absolute against its folder."""
    p = Path(path)
    model = _MODELS[method]
    config, _ = load_config(p, model, what=f"{method} training config", example=_EXAMPLE, error=TrainConfigError)
    resolved = config.resolve(p.parent.resolve())
    assert isinstance(resolved, SFTRunConfig | DPORunConfig | GRPORunConfig)
    return resolved
