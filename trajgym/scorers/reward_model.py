"""``reward_model``: a transformers sequence-classification model scores the agent's conversation.

The model is loaded from a local folder (``model``; never from a hub) with
``AutoModelForSequenceClassification``, lazily on first use, so a config that names it costs nothing
until something is scored. torch and transformers are the ``hf`` extra. The trajectory is rendered as a
chat from the agent's side (:func:`trajgym.scorers.transcript.chat_messages`) through the tokenizer's
chat template (a tokenizer without one gets ``role: text`` paragraphs), cut to ``max_length`` tokens
(from the left by default: the end of an episode is what matters most), and scored in batches on the
CPU (right-padded, so a batch scores exactly as one by one).

The score: ``sigmoid(logit)`` for a model with one output (a reward model); for a classifier with
several labels, the softmax probability of ``label`` (an index or a name of ``id2label``).

A base model loaded as a classifier (``num_labels: 1`` on a causal LM folder) gets a freshly
initialised head: its scores are well defined (seeded with ``init_seed``) but mean nothing until it is
trained. Such a load is logged as a warning and marked ``details["untrained_head"]``.

From async code (the scoring pipeline), concurrent :meth:`RewardModel.ascore` calls are gathered into
batches and run in a worker thread, so the event loop keeps serving the other scorers.

Example (scorer config YAML)::

    reward_model:
      weight: 1
      options: {model: ~/models/my-rm, max_length: 2048, batch_size: 8}
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

from trajgym.scorers.base import Scorer, ScorerError, ScoreResult, ScoringContext, register
from trajgym.trajectory.chat import chat_messages
from trajgym.trajectory.schema import Trajectory

log = logging.getLogger(__name__)

Side = Literal["left", "right"]
DType = Literal["float32", "bfloat16"]
INSTALL_HINT = "install the hf extra: make hf-setup (or pip install torch==2.13.0 'trajgym[hf]')"


@dataclass
class _Loaded:
    torch: Any
    tokenizer: Any
    model: Any
    template: bool
    untrained: list[str]


@register
class RewardModel(Scorer):
    """Scores a trajectory with a sequence-classification model (see the module docstring).

    Args:
        model: a local transformers folder (config.json, weights, tokenizer).
        label: for a classifier with several labels, the one whose probability is the score.
        num_labels: load with this many outputs (``1`` turns a base model into a reward model with a
            fresh, untrained head); default: as the folder's config says.
        max_length: tokens per trajectory; longer ones are cut (``truncation_side``: ``left`` keeps
            the end, ``right`` the beginning).
        batch_size: trajectories per forward pass.
        role: the role whose conversation is scored; include_instructions: start with its system prompt.
        device: where the model runs (``cpu``); dtype: ``float32`` (exact batching) or ``bfloat16``.
        init_seed: seeds the initialisation of weights the folder lacks (a fresh head), so two loads agree.
    """

    name: ClassVar[str] = "reward_model"
    is_async: ClassVar[bool] = True

    def __init__(self, *, model: str, label: int | str | None = None, num_labels: int | None = None,
                 max_length: int = 2048, batch_size: int = 8, role: str = "support",
                 include_instructions: bool = True, truncation_side: Side = "left", device: str = "cpu",
                 dtype: DType = "float32", init_seed: int = 0) -> None:
        folder = Path(model).expanduser()
        try:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ScorerError(f"reward model {model}: not a local transformers folder (cannot read its "
                              f"config.json: {exc}); models are loaded from disk only, never from a hub") from None
        if truncation_side not in get_args(Side):
            raise ScorerError(f"truncation_side must be left or right, got {truncation_side!r}")
        if dtype not in get_args(DType):
            raise ScorerError(f"dtype must be one of {', '.join(get_args(DType))}, got {dtype!r}")
        if max_length < 8 or batch_size < 1:
            raise ScorerError(f"max_length must be >= 8 and batch_size >= 1, got {max_length} and {batch_size}")
        self.model = str(folder)
        self.num_labels = num_labels
        n = num_labels or len(config.get("id2label") or {}) or 2  # transformers' default is 2 labels
        self.label = _check_label(label, n, config.get("id2label") or {}, model)
        self.max_length = max_length
        self.batch_size = batch_size
        self.role = role
        self.include_instructions = include_instructions
        self.truncation_side = truncation_side
        self.device = device
        self.dtype = dtype
        self.init_seed = init_seed
        self._loaded: _Loaded | None = None
        self._lock = threading.Lock()
        self._queue: list[tuple[Trajectory, asyncio.Future[ScoreResult | None]]] = []
        self._worker: asyncio.Task[None] | None = None

    # -- loading ---------------------------------------------------------------------------------

    def load(self) -> _Loaded:
        """Import torch and transformers and load the model (once)."""
        with self._lock:
            if self._loaded is None:
                self._loaded = self._load()
            return self._loaded

    def _load(self) -> _Loaded:
        try:
            import torch
            from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
        except ImportError as exc:
            raise ScorerError(f"the reward_model scorer needs torch and transformers ({exc.name} is "
                              f"missing): {INSTALL_HINT}") from None
        tokenizer = AutoTokenizer.from_pretrained(self.model, local_files_only=True)
        tokenizer.model_max_length = 1 << 30  # we cut to max_length ourselves (and know when we did)
        options: dict[str, Any] = {"local_files_only": True, "dtype": getattr(torch, self.dtype),
                                   "output_loading_info": True}
        if self.num_labels is not None:  # a new head: of another shape than the folder's, if it has one
            config = AutoConfig.from_pretrained(self.model, local_files_only=True)
            config.num_labels = self.num_labels  # also renames the labels LABEL_0...
            options.update(config=config, ignore_mismatched_sizes=True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.init_seed)
            auto: Any = AutoModelForSequenceClassification
            model, info = auto.from_pretrained(self.model, **options)
        model.to(self.device).eval()
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        untrained = sorted({*(info.get("missing_keys") or ()),
                            *(k[0] if isinstance(k, tuple) else k for k in info.get("mismatched_keys") or ())})
        if untrained:
            log.warning("reward model %s: %s freshly initialised (seed %d): its scores mean nothing until it "
                        "is trained", self.model, ", ".join(untrained), self.init_seed)
        template = bool(getattr(tokenizer, "chat_template", None))
        if not template:
            log.warning("reward model %s: its tokenizer has no chat template; scoring 'role: text' paragraphs",
                        self.model)
        return _Loaded(torch, tokenizer, model, template, untrained)

    # -- scoring ---------------------------------------------------------------------------------

    def render(self, traj: Trajectory) -> str:
        """The text the model reads for ``traj`` (before tokenisation and truncation)."""
        loaded = self.load()
        messages = chat_messages(traj, role=self.role, include_instructions=self.include_instructions)
        if loaded.template:
            return str(loaded.tokenizer.apply_chat_template(messages, tokenize=False))
        return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)

    def tokens(self, traj: Trajectory) -> tuple[list[int], int]:
        """The token ids the model reads (cut to ``max_length``) and the length before the cut."""
        loaded = self.load()
        ids: list[int] = loaded.tokenizer(self.render(traj), add_special_tokens=not loaded.template)["input_ids"]
        full = len(ids)
        if full > self.max_length:
            ids = ids[-self.max_length:] if self.truncation_side == "left" else ids[:self.max_length]
        return ids, full

    def score(self, traj: Trajectory, ctx: ScoringContext | None = None) -> ScoreResult | None:
        return self.score_batch([traj])[0]

    def score_batch(self, trajs: list[Trajectory]) -> list[ScoreResult | None]:
        """Score many trajectories, ``batch_size`` at a time (similar lengths batched together);
        ``None`` for ``infra_error`` episodes."""
        loaded = self.load()
        torch = loaded.torch
        out: list[ScoreResult | None] = [None] * len(trajs)
        todo = [i for i, t in enumerate(trajs) if t.termination != "infra_error"]
        encoded = {i: self.tokens(trajs[i]) for i in todo}
        todo.sort(key=lambda i: len(encoded[i][0]))
        pad = loaded.tokenizer.pad_token_id
        for start in range(0, len(todo), self.batch_size):
            rows = todo[start:start + self.batch_size]
            width = max(len(encoded[i][0]) for i in rows)
            ids = torch.tensor([encoded[i][0] + [pad] * (width - len(encoded[i][0])) for i in rows])
            mask = torch.tensor([[1] * len(encoded[i][0]) + [0] * (width - len(encoded[i][0])) for i in rows])
            with self._lock, torch.inference_mode():
                logits = loaded.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
            for i, row in zip(rows, logits.float().cpu().tolist(), strict=True):
                out[i] = self._result(row, len(encoded[i][0]), encoded[i][1], loaded)
        return out

    def _result(self, logits: list[float], tokens: int, full: int, loaded: _Loaded) -> ScoreResult:
        if len(logits) == 1:
            value = 1.0 / (1.0 + math.exp(-logits[0]))
        else:
            if self.label is None or not isinstance(self.label, int) or self.label >= len(logits):
                raise ScorerError(f"reward model {self.model} has {len(logits)} outputs: set label to the one "
                                  f"that means good (an index, or a name of its id2label)")
            top = max(logits)
            exps = [math.exp(x - top) for x in logits]
            value = exps[self.label] / sum(exps)
        return ScoreResult(score=min(1.0, max(0.0, value)), details={
            "logits": logits, "tokens": tokens, "truncated": full > tokens, "untrained_head": bool(loaded.untrained),
            "model": Path(self.model).name})

    async def ascore(self, traj: Trajectory, ctx: ScoringContext) -> ScoreResult | None:
        """Queue ``traj``; concurrent calls are scored together, ``batch_size`` at a time, in a thread."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ScoreResult | None] = loop.create_future()
        self._queue.append((traj, future))
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._drain())
        return await future

    async def aclose(self) -> None:
        """Drop the loaded model (it is loaded again if the scorer is used again)."""
        with self._lock:
            self._loaded = None

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # let the other scorings started with this one queue up
        while self._queue:
            batch, self._queue = self._queue[:self.batch_size], self._queue[self.batch_size:]
            try:
                results = await asyncio.to_thread(self.score_batch, [t for t, _ in batch])
            except asyncio.CancelledError:
                for _, future in [*batch, *self._queue]:
                    future.cancel()
                self._queue = []
                raise
            except Exception as exc:  # handed to every caller of the batch: fails them, never scores 0
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)


def _check_label(label: int | str | None, n: int, id2label: dict[str, str], model: str) -> int | None:
    """``label`` as an index, checked against the model's outputs (known from its config)."""
    if n == 1:
        if label not in (None, 0):
            raise ScorerError(f"reward model {model} has one output (score = sigmoid of it): leave label out")
        return None
    if label is None:
        names = ", ".join(f"{k}={v}" for k, v in sorted(id2label.items())) or "no names"
        raise ScorerError(f"reward model {model} has {n} labels ({names}): set label to the one that means good, "
                          f"or num_labels: 1 to load it with a single reward output")
    if isinstance(label, str) and not label.isdigit():
        by_name = {v: int(k) for k, v in id2label.items()}
        if label not in by_name:
            raise ScorerError(f"reward model {model} has no label {label!r} (its labels: "
                              f"{', '.join(by_name) or 'none named'})")
        return by_name[label]
    index = int(label)
    if not 0 <= index < n:
        raise ScorerError(f"label {index} is out of range: reward model {model} has {n} labels (0..{n - 1})")
    return index
