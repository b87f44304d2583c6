"""A model agent that runs a transformers model in process (the ``hf`` extra): a quick look at a
model playing a scenario without starting a server.

The model is a local transformers folder (default: the bundled SmolLM2-135M-Instruct, converted
once by :func:`trajgym.serving.convert.convert_bundled_model`). The role's conversation is kept as
token ids (:class:`~trajgym.agents.tokens.TokenChain`): the folder's chat template renders the
first prompt and then only what is new at each turn, after the ids the model generated, so every
turn's prompt extends the previous turn's prompt and completion exactly. Tool calls are read from
``<tool_call>{json}</tool_call>`` text; ``tool_choice="required"`` starts the answer with
``<tool_call>`` (a prefill, part of the prompt's token ids).

Each step's :attr:`~trajgym.agents.base.Agent.generation` carries the prompt ids new to the turn,
the completion's ids and one log-probability per generated token: of the model's own distribution (``"raw"``, what
vLLM returns by default) or of the one sampled from, after temperature, top-p and top-k
(``"processed"``). Every call is seeded from the episode seed, the role and the call's index, so
the same seed gives the same trajectory.

One model instance per (folder, dtype, device) serves every agent of the process: loaded on first
use in a worker thread, and generating one answer at a time (the seed is torch's global one, and
``generate`` is not documented as thread-safe). :meth:`HFAgent.aact` runs in a worker thread, so the
event loop stays responsive while the model thinks.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from trajgym.agents.base import AgentContext
from trajgym.agents.chat import (
    TOOL_CALL_PREFILL,
    ChatAgent,
    check_sampling,
    check_tool_choice,
    generation,
)
from trajgym.agents.tokens import ChatCodec, TokenChain
from trajgym.errors import TrajgymError
from trajgym.seeding import stable_seed
from trajgym.serving.weights import weights_id

log = logging.getLogger(__name__)

SAMPLING_KEYS = ("temperature", "top_p", "top_k", "min_p", "max_tokens", "seed", "stop",
                 "repetition_penalty")
DEFAULT_SAMPLING: dict[str, Any] = {"temperature": 1.0, "top_p": 1.0, "max_tokens": 512}
"""What an unset setting means (the OpenAI API's defaults; a bounded answer length). The
recorded sampling settings always include these."""
INSTALL_HINT = "pip install torch==2.13.0 'trajgym[hf]' (or make hf-setup)"

Dtype = Literal["auto", "float32", "bfloat16", "float16"]
LogprobsMode = Literal["raw", "processed"]


def require_hf() -> None:
    """Raise a clear error naming the ``hf`` extra unless torch and transformers are installed."""
    missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        raise TrajgymError(f"the hf agent needs {' and '.join(missing)}: {INSTALL_HINT}")


# ---------------------------------------------------------------------------------------------
# one loaded model per (folder, dtype, device), shared by every agent of the process


@dataclass
class LoadedModel:
    """A model and its tokenizer, with the lock that lets one answer be generated at a time."""

    path: Path
    dtype: str
    device: str
    model: Any
    tokenizer: Any
    max_positions: int | None
    lock: threading.Lock


_models: dict[tuple[str, str, str], LoadedModel] = {}
_load_lock = threading.Lock()


def load_model(path: Path, dtype: Dtype = "auto", device: str | None = None, *,
               bundled: bool = False) -> LoadedModel:
    """The model in folder ``path``, loaded once per process (``bundled``: convert the bundled
    SmolLM2 into ``path`` first if needed). ``dtype="auto"`` is float32 on a CPU (bf16 matmuls
    are slower there) and the checkpoint's own elsewhere; ``device`` defaults to CUDA if there is one."""
    require_hf()
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype == "auto" and device == "cpu":
        dtype = "float32"
    with _load_lock:
        if bundled:
            from trajgym.serving.convert import convert_bundled_model

            path = convert_bundled_model(path)
        key = (str(path.resolve()), dtype, device)
        hit = _models.get(key)
        if hit is not None:
            return hit
        from transformers import AutoModelForCausalLM, AutoTokenizer

        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder: never reach for a hub
        start = time.perf_counter()
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            auto: Any = AutoModelForCausalLM  # typed with transformers installed, Any without
            model = auto.from_pretrained(path, dtype=dtype if dtype == "auto" else getattr(torch, dtype),
                                         local_files_only=True)
        except (OSError, ValueError) as exc:
            raise TrajgymError(f"hf agent: cannot load the model in {path}: {exc}; give a folder "
                               "written by save_pretrained (config, weights, tokenizer)") from None
        model.to(device).eval()
        if not getattr(tokenizer, "chat_template", None):
            raise TrajgymError(f"hf agent: the tokenizer in {path} has no chat template; add a "
                               "chat_template.jinja to the folder (see trajgym/serving/templates)")
        loaded = LoadedModel(path, dtype, device, model, tokenizer,
                             getattr(model.config, "max_position_embeddings", None), threading.Lock())
        _models[key] = loaded
        log.info("hf agent: loaded %s (%s, %s) in %.1f s", path, dtype, device, time.perf_counter() - start)
        return loaded


# ---------------------------------------------------------------------------------------------
# the agent


@dataclass
class _Request:
    """One call's inputs, taken on the caller's thread (the history may grow after)."""

    prompt_ids: list[int]
    prompt_from: int
    new_ids: list[int]
    chain_break: str | None
    prefill: str
    seed: int


@dataclass
class _Output:
    prompt_token_ids: list[int]
    token_ids: list[int]
    logprobs: list[float]
    text: str
    stopped: bool
    seconds: float


class HFAgent(ChatAgent):
    """Plays a role with a transformers model in this process.

    Args:
        model: a local transformers folder (config, weights, tokenizer with a chat template);
            default: the bundled SmolLM2-135M-Instruct, converted on first use.
        sampling: temperature, top_p, top_k, min_p, max_tokens, seed, stop, repetition_penalty
            (unset ones: temperature 1, top_p 1, max_tokens 512; temperature 0 is greedy).
            ``seed`` is mixed into every call's seed with the episode's.
        tool_choice: ``"auto"`` (default) or None: the model chooses; ``"required"``: the answer
            starts with ``<tool_call>``; ``"none"``: no tools in the prompt.
        dtype: ``"auto"``, ``"float32"``, ``"bfloat16"`` or ``"float16"``; device: e.g. ``"cpu"``.
        logprobs: ``"raw"`` (the model's distribution) or ``"processed"`` (the sampled one).
        text_tool_calls: read ``<tool_call>`` blocks in the answer (else every answer is text).
        loop_generation: the self-improvement loop's generation that made these weights, recorded.

    The weights' id recorded with every answer is the content hash of the folder's weight files.
    """

    kind = "hf"

    def __init__(self, *, model: str | os.PathLike[str] | None = None,
                 sampling: dict[str, Any] | None = None, tool_choice: str | None = "auto",
                 dtype: Dtype = "auto", device: str | None = None, logprobs: LogprobsMode = "raw",
                 text_tool_calls: bool = True, name: str | None = None, reply_tool: bool | None = None,
                 loop_generation: int | None = None) -> None:
        super().__init__(text_tool_calls=text_tool_calls, name=name, reply_tool=reply_tool)
        self.loop_generation = loop_generation
        self.sampling = {**DEFAULT_SAMPLING, **check_sampling(sampling, SAMPLING_KEYS)}
        if not isinstance(self.sampling["max_tokens"], int) or self.sampling["max_tokens"] < 1:
            raise TrajgymError(f"hf agent: sampling max_tokens must be a positive integer, "
                               f"got {self.sampling['max_tokens']!r}")
        self.stops = _stop_strings(self.sampling.get("stop"))
        self.tool_choice = check_tool_choice(tool_choice)
        if dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise TrajgymError(f"hf agent: dtype must be auto, float32, bfloat16 or float16, got {dtype!r}")
        if logprobs not in ("raw", "processed"):
            raise TrajgymError(f"hf agent: logprobs must be raw or processed, got {logprobs!r}")
        self.dtype: Dtype = dtype
        self.device = device
        self.logprobs_mode: LogprobsMode = logprobs
        self.bundled = model is None
        if model is None:
            from trajgym.serving.convert import default_cache_dir

            self.model_path = default_cache_dir()
        else:
            self.model_path = Path(model).expanduser()
            if not (self.model_path / "config.json").is_file():
                raise TrajgymError(f"hf agent: {self.model_path} is not a transformers model folder "
                                   "(no config.json); give --model a folder written by save_pretrained, "
                                   "or leave it out for the bundled SmolLM2")
        self.model = str(self.model_path)
        self.role = ""
        self.episode_seed = 0
        self.codec: ChatCodec | None = None
        require_hf()  # after the options: their errors come first, with or without the extra

    def config(self) -> dict[str, Any]:
        return {"sampling": dict(self.sampling), "tool_choice": self.tool_choice, "reply_tool": self.replies_by_tool,
                "dtype": self.dtype, "logprobs": self.logprobs_mode, "text_tool_calls": self.text_tool_calls}

    def transport(self) -> dict[str, Any]:
        return {"device": self.device}

    def prepare(self) -> None:
        """Load the model (once per process) and hash its weights (once per checkpoint state)."""
        if self.codec is not None:
            return
        lm = load_model(self.model_path, self.dtype, self.device, bundled=self.bundled)
        self.weights_id = weights_id(lm.path)
        self.codec = ChatCodec(lm.tokenizer)

    async def aprepare(self) -> None:
        await asyncio.to_thread(self.prepare)

    def reset(self, ctx: AgentContext) -> None:
        super().reset(ctx)
        self.prepare()
        assert self.codec is not None
        self.chain = TokenChain(self.codec)
        self.role = ctx.role
        self.episode_seed = ctx.seed

    def act(self, messages: list[dict[str, Any]], info: dict[str, Any]) -> str:
        self.observe(messages)
        request = self._request(info)
        return self._finish(request, self._run(request))

    async def generate(self, info: dict[str, Any]) -> str:
        request = self._request(info)
        return self._finish(request, await asyncio.to_thread(self._run, request))

    # ------------------------------------------------------------------------------------------

    def _request(self, info: dict[str, Any]) -> _Request:
        """The next turn's prompt: the role's token chain extended with what came since (on the
        caller's thread: the history may grow while the model thinks)."""
        assert self.chain is not None, "reset() starts the chain"
        self.calls += 1
        tools = (self.tools_of(info) or None) if self.tool_choice != "none" else None
        prefill = TOOL_CALL_PREFILL if tools and self.tool_choice == "required" else ""
        seed = stable_seed("hf", self.episode_seed, self.sampling.get("seed"), self.role, self.calls)
        prompt, start, new, why = self.chain.prompt(self.history, tools, prefill)
        return _Request(prompt, start, new, why, prefill, seed)

    def _run(self, req: _Request) -> _Output:
        """Generate and score one answer over the prompt's token ids (in a worker thread under :meth:`aact`)."""
        import torch

        lm = load_model(self.model_path, self.dtype, self.device, bundled=self.bundled)
        tok = lm.tokenizer
        prompt_ids = req.prompt_ids
        max_new = self._room(lm, len(prompt_ids))
        s = self.sampling
        greedy = float(s["temperature"]) <= 0.0
        kwargs: dict[str, Any] = {"max_new_tokens": max_new, "do_sample": not greedy,
                                  "return_dict_in_generate": True,
                                  "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id}
        if not greedy:
            kwargs.update(temperature=float(s["temperature"]), top_p=float(s["top_p"]),
                          top_k=max(int(s.get("top_k") or 0), 0))
            if s.get("min_p") is not None:
                kwargs["min_p"] = float(s["min_p"])
        if s.get("repetition_penalty") is not None:
            kwargs["repetition_penalty"] = float(s["repetition_penalty"])
        if self.stops:
            kwargs.update(stop_strings=self.stops, tokenizer=tok)
        kwargs["output_logits" if self.logprobs_mode == "raw" else "output_scores"] = True

        input_ids = torch.tensor([prompt_ids], device=lm.device)
        with lm.lock, torch.inference_mode():
            torch.manual_seed(req.seed)
            start = time.perf_counter()
            out = lm.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **kwargs)
            seconds = time.perf_counter() - start
        scores = out.logits if self.logprobs_mode == "raw" else out.scores
        new = out.sequences[0, len(prompt_ids):]
        logprobs = lm.model.compute_transition_scores(out.sequences, scores, normalize_logits=True)[0]
        token_ids = [int(t) for t in new.tolist()]
        text = tok.decode(token_ids, skip_special_tokens=True)
        stopped = bool(token_ids) and token_ids[-1] in _eos_ids(lm)  # a batch of one: no padding
        for stop in self.stops:
            if stop in text:
                text, stopped = text[:text.index(stop)], True
        return _Output(prompt_ids, token_ids, [float(x) for x in logprobs[:len(token_ids)].tolist()],
                       req.prefill + text, stopped, seconds)

    def _room(self, lm: LoadedModel, prompt_len: int) -> int:
        """The answer's token budget: max_tokens, within the model's context."""
        max_new = int(self.sampling["max_tokens"])
        if lm.max_positions is None:
            return max_new
        room = lm.max_positions - prompt_len
        if room < 1:
            raise TrajgymError(f"hf agent: the prompt ({prompt_len} tokens) fills the context of "
                               f"{lm.path} ({lm.max_positions} tokens); lower the scenario's "
                               "limits.max_turns or use a model with a longer context")
        return min(max_new, room)

    def _finish(self, req: _Request, out: _Output) -> str:
        action, fmt = self.answer(out.text)
        assert self.chain is not None
        self.chain.completed(out.token_ids, len(self.history))
        reason = "stop" if out.stopped else "length"
        if fmt and out.stopped:
            reason = "tool_calls"
        bad = [x for x in out.logprobs if not math.isfinite(x)]
        if bad:
            log.warning("hf agent: %d non-finite logprob(s) in call %d", len(bad), self.calls)
        self.generation = generation(
            "hf", model=self.model, weights_id=self.weights_id, loop_generation=self.loop_generation, api="local",
            sampling={**self.sampling, "seed": req.seed}, tool_choice=self.tool_choice,
            logprobs_mode=self.logprobs_mode, prompt_from=req.prompt_from, prompt_ids=req.new_ids,
            chain_break=req.chain_break, token_ids=out.token_ids, logprobs=out.logprobs, finish_reason=reason,
            usage={"prompt_tokens": len(out.prompt_token_ids), "completion_tokens": len(out.token_ids),
                   "total_tokens": len(out.prompt_token_ids) + len(out.token_ids)},
            prefill=req.prefill or None, tool_call_format=fmt, raw_content=out.text,
            wall_latency_ms=round(out.seconds * 1000.0, 3))
        return action


def _stop_strings(stop: Any) -> list[str]:
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else list(stop)
    if not all(isinstance(x, str) and x for x in stops):
        raise TrajgymError(f"hf agent: sampling stop must be a string or a list of strings, got {stop!r}")
    return stops


def _eos_ids(lm: LoadedModel) -> set[int]:
    eos = lm.model.generation_config.eos_token_id
    if eos is None:
        eos = lm.tokenizer.eos_token_id
    return set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
