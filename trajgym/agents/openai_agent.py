"""A model agent served by any OpenAI-compatible ``/v1/chat/completions`` server (vLLM first).

It talks to the server through :mod:`trajgym.agents.http_client`: keep-alive connections pooled per
event loop, sized for thousands of requests in flight (the stock AsyncOpenAI client over one httpx
pool was ~70x slower at 1,000 in flight, and aiohttp used 3x the CPU). It keeps its role's whole
message history, sends the role's tools, and asks for token ids and logprobs (``return_token_ids``
is a vLLM extension), which it records in :attr:`generation` so trainers need not re-tokenize.

Faults of the server (timeouts, 5xx, 408/429, refused connections) are retried with exponential
backoff and end as :class:`InfraError`; other 4xx answers are configuration errors
(:class:`TrajgymError`, with the server's message). A malformed tool call is the model's: the
action carries what it said and the env records a malformed action.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from trajgym import jsonio
from trajgym.agents import http_client
from trajgym.agents.base import AgentContext
from trajgym.agents.chat import (
    TOOL_CALL_PREFILL,
    ChatAgent,
    check_sampling,
    check_tool_choice,
)
from trajgym.agents.tokens import ChatCodec, TokenChain, codec_for
from trajgym.errors import InfraError, TrajgymError
from trajgym.seeding import seeds_after
from trajgym.serving.weights import weights_id
from trajgym.trajectory.schema import Generation

Api = Literal["chat", "tokens"]
LogprobsMode = Literal["raw", "processed"]
SAMPLING_KEYS = ("temperature", "top_p", "max_tokens", "seed", "stop", "presence_penalty",
                 "frequency_penalty", "top_k", "min_p", "repetition_penalty")
RETRY_STATUS = {408, 429}


async def close_connections() -> None:
    """Close the running loop's connections to model servers (call before the loop ends)."""
    await http_client.close_pools()


class OpenAIClient:
    """``POST {base_url}/chat/completions`` with retries. Stateless apart from its settings."""

    def __init__(self, base_url: str, api_key: str | None, *, timeout_s: float, retries: int,
                 backoff_s: float, max_backoff_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        try:
            scheme, host, port, path = http_client.split_url(self.url)
        except ValueError as exc:
            raise TrajgymError(f"model server base_url: {exc}") from None
        self._server = (scheme, host, port)
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        # the request heads, built once: a request adds its body's length and the body
        self._chat_head = http_client.request_head(self._server, "POST", path, headers)
        self.completions_url = f"{self.base_url}/completions"
        self._completions_head = http_client.request_head(self._server, "POST",
                                                          http_client.split_url(self.completions_url)[3], headers)
        models_path = http_client.split_url(f"{self.base_url}/models")[3]
        self._models_head = http_client.request_head(self._server, "GET", models_path, headers)
        self.timeout_s = timeout_s
        self.retries = max(1, retries)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._served: dict[str | None, ServedModel | None] = {}
        self._asking: dict[str | None, tuple[asyncio.AbstractEventLoop, asyncio.Task[ServedModel | None]]] = {}

    async def _request(self, head: bytes, url: str, body: bytes | None, retries: int | None = None) -> Any:
        """Send ``head`` and ``body`` (a request to ``url``, named in errors); the decoded answer."""
        last = ""
        retries = self.retries if retries is None else retries
        for attempt in range(retries):
            if attempt:
                await asyncio.sleep(min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s))
            try:
                resp = await http_client.pool(*self._server).request(head, body or b"", self.timeout_s)
            except TimeoutError:
                last = f"timed out after {self.timeout_s}s"
                continue
            except http_client.HTTPError as exc:
                last = str(exc)
                continue
            raw = resp.body
            if resp.status >= 500 or resp.status in RETRY_STATUS:
                last = f"HTTP {resp.status}: {_server_message(raw)}"
                continue
            if resp.status >= 400:
                raise TrajgymError(f"model server {url} rejected the request (HTTP "
                                   f"{resp.status}): {_server_message(raw)}")
            try:
                return jsonio.loads(raw, big_ints=False)  # ids, counts, logprobs, text
            except ValueError:
                last = f"response is not JSON: {raw[:200].decode('utf-8', errors='replace')!r}"
        raise InfraError(f"model server {url} failed {retries} attempt(s); last error: {last}")

    async def chat(self, body: bytes) -> dict[str, Any]:
        """One completion; ``body`` is the request's JSON, encoded."""
        data = await self._request(self._chat_head, self.url, body)
        if not isinstance(data, dict) or not data.get("choices"):
            raise InfraError(f"model server {self.url} returned no choices: {str(data)[:200]}")
        return data

    async def complete(self, body: bytes) -> dict[str, Any]:
        """One completion of a prompt given as token ids (``/completions``); ``body`` is the request's JSON."""
        data = await self._request(self._completions_head, self.completions_url, body)
        if not isinstance(data, dict) or not data.get("choices"):
            raise InfraError(f"model server {self.completions_url} returned no choices: {str(data)[:200]}")
        return data

    async def served_model(self, model: str | None) -> ServedModel | None:
        """What the server says of ``model`` (its first model when None): name, checkpoint folder and
        context length; asked once per client (one attempt: None when it does not answer). The
        episodes that start while the answer is on its way wait for that one request. The weights'
        id is not part of it: :meth:`ServedModel.current_weights_id` hashes the folder each time."""
        if model in self._served:
            return self._served[model]
        loop = asyncio.get_running_loop()
        pending = self._asking.get(model)
        if pending is None or pending[0] is not loop:
            pending = self._asking[model] = (loop, loop.create_task(self._ask(model)))
        return await asyncio.shield(pending[1])

    async def _ask(self, model: str | None) -> ServedModel | None:
        try:
            data = await self._request(self._models_head, f"{self.base_url}/models", None, retries=1)
        except TrajgymError:  # InfraError included: the episodes will meet the server's state
            data = None
        served = self._served[model] = _served_model(data, model)
        self._asking.pop(model, None)
        return served

    async def first_model(self) -> str:
        data = await self._request(self._models_head, f"{self.base_url}/models", None)
        try:
            return str(data["data"][0]["id"])
        except (KeyError, IndexError, TypeError):
            raise TrajgymError(f"model server {self.base_url}/models lists no model; "
                               "pass model=...") from None


@dataclass(frozen=True)
class ServedModel:
    """A model as an OpenAI-compatible server lists it (vLLM adds ``root`` and ``max_model_len``)."""

    name: str
    root: str | None
    max_model_len: int | None

    async def current_weights_id(self) -> str | None:
        """The content hash of the weights in ``root`` now, when it is a folder here, else its name.

        Asked at every :meth:`OpenAIAgent.aprepare` (each episode), not cached with the rest: the
        weights behind a served name change while the name, the folder and this process stay
        (:meth:`trajgym.serving.server.VLLMServer.load_weights` retargets the ``root`` that vLLM
        reports; a trainer rewrites a folder and reloads it). :func:`weights_id` remembers each
        file state's hash, so an unchanged folder costs a listing and a few ``stat`` calls.
        """
        if not self.root:
            return None
        return await asyncio.to_thread(weights_id, self.root) or f"checkpoint:{self.root}"


def _served_model(data: Any, model: str | None) -> ServedModel | None:
    entries = data.get("data") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return None
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("id"), str) and model in (None, entry["id"]):
            root = entry.get("root") if isinstance(entry.get("root"), str) else None
            length = entry.get("max_model_len")
            return ServedModel(entry["id"], root, length if isinstance(length, int) else None)
    return None


@functools.lru_cache(maxsize=64)
def shared_client(base_url: str, api_key: str | None, timeout_s: float, retries: int,
                  backoff_s: float) -> OpenAIClient:
    """The one :class:`OpenAIClient` of these settings in this process: a job builds an agent per
    episode, and a client is immutable (its connections are the pools')."""
    return OpenAIClient(base_url, api_key, timeout_s=timeout_s, retries=retries, backoff_s=backoff_s)


def _server_message(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return text[:500]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            return str(err.get("message") or err.get("detail") or err)[:500]
        return str(err)[:500]
    return text[:500]


class OpenAIAgent(ChatAgent):
    """Plays a role with a chat model behind an OpenAI-compatible server.

    Args:
        base_url: the server's ``/v1`` URL (default ``$OPENAI_BASE_URL`` or ``http://localhost:8000/v1``).
        model: the served model name (default ``$OPENAI_MODEL``, else the first of ``/models``).
        api_key: sent as a bearer token (default ``$OPENAI_API_KEY``; vLLM needs none).
        sampling: temperature, top_p, max_tokens, seed, ... sent with every request.
        request_seeds: send each request its own ``seed``, a stable hash of the episode seed, trial,
            role and turn (and of ``sampling["seed"]``, if given), so that rerunning a unit samples
            the same answers at any temperature; each step's ``generation["sampling"]`` records
            the seed sent. False sends ``sampling`` as given.
        tool_choice: ``"auto"``, ``"required"`` or ``None`` (not sent).
        strict: mark every function ``"strict": true`` (structured outputs).
        timeout_s: per-request timeout; retries: attempts per request; backoff_s: first retry delay.
        text_tool_calls: also parse ``<tool_call>`` blocks in the content.
        reply_tool: offer a ``reply`` tool whose calls are chat messages (default: with
            ``tool_choice="required"``, so a forced model can still talk).
        api: ``"chat"`` (default): send the history to ``/chat/completions``, rendered and tokenized
            by the server; each turn's prompt ids are recorded as the server reports them, extending
            the previous turn's or, where its rendering differs, as a chain break. ``"tokens"``: keep
            the role's conversation as token ids and send them to ``/completions`` (vLLM), so every
            turn extends the previous one by construction (:mod:`trajgym.agents.tokens`); the agent
            renders the chat with the model's own tokenizer and template (``tokenizer``), and
            ``tool_choice="required"`` starts the answer with ``<tool_call>`` and holds what follows
            to one call of the offered tools (vLLM's structured outputs, :func:`call_schema`), as
            vLLM's chat endpoint does with its own form of calls. ``strict`` is for ``"chat"``.
        tokenizer: the folder of the served model's tokenizer, for ``api="tokens"`` (default: the
            folder the server says it serves, ``root`` in ``/models``, when it is on this machine).
        weights_id: the served weights' id, recorded in every generation (default: the content hash
            of the served folder's weight files when it is on this machine, else its name).
        loop_generation: the self-improvement loop's generation that made these weights, recorded.
        logprobs_mode: what the server's logprobs are: ``"raw"`` (vLLM's default) or ``"processed"``
            (a server started with ``--logprobs-mode processed_logprobs``).
    """

    kind = "openai"

    def __init__(self, *, base_url: str | None = None, model: str | None = None,
                 api_key: str | None = None, sampling: dict[str, Any] | None = None,
                 tool_choice: str | None = "auto", strict: bool = False, timeout_s: float = 120.0,
                 retries: int = 5, backoff_s: float = 1.0, text_tool_calls: bool = True,
                 logprobs: bool = True, return_token_ids: bool = True,
                 extra_body: dict[str, Any] | None = None, request_seeds: bool = True,
                 name: str | None = None, reply_tool: bool | None = None, api: Api = "chat",
                 tokenizer: str | None = None, weights_id: str | None = None, loop_generation: int | None = None,
                 logprobs_mode: LogprobsMode = "raw") -> None:
        super().__init__(text_tool_calls=text_tool_calls, name=name, reply_tool=reply_tool)
        if api not in ("chat", "tokens"):
            raise TrajgymError(f"api must be chat or tokens, got {api!r}")
        if logprobs_mode not in ("raw", "processed"):
            raise TrajgymError(f"logprobs_mode must be raw or processed, got {logprobs_mode!r}")
        self.api: Api = api
        self.tokenizer = tokenizer
        self.given_weights_id = weights_id
        self.weights_id = weights_id
        self.loop_generation = loop_generation
        self.logprobs_mode: LogprobsMode = logprobs_mode
        self.max_model_len: int | None = None
        self.codec: ChatCodec | None = None
        self.tool_choice = check_tool_choice(tool_choice)
        self.sampling: dict[str, Any] = check_sampling(sampling, SAMPLING_KEYS)
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or "http://localhost:8000/v1"
        self.model = model or os.environ.get("OPENAI_MODEL") or None
        self.strict = strict
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.logprobs = logprobs
        self.return_token_ids = return_token_ids
        self.extra_body = dict(extra_body or {})
        self.request_seeds = request_seeds
        self.seed_key: tuple[object, ...] | None = None  # (episode seed, trial, role), set by reset
        # (sampling seed, seed_key) and turn -> the request's seed, with that key hashed once
        self._request_seed: tuple[tuple[object, ...], Callable[[object], int]] | None = None
        self.client = shared_client(self.base_url, api_key or os.environ.get("OPENAI_API_KEY"),
                                    timeout_s, retries, backoff_s)
        self._encoded: list[bytes] = []  # history[i] as JSON: each message is encoded once
        self._tools_json: tuple[list[dict[str, Any]], bytes] | None = None  # the last tools offered, encoded

    # ------------------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return {"api": self.api, "sampling": dict(self.sampling), "tool_choice": self.tool_choice,
                "strict": self.strict, "reply_tool": self.replies_by_tool, "text_tool_calls": self.text_tool_calls,
                "request_seeds": self.request_seeds, "logprobs_mode": self.logprobs_mode,
                **({"extra_body": dict(self.extra_body)} if self.extra_body else {})}

    def transport(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "timeout_s": self.timeout_s, "retries": self.retries,
                **({"tokenizer": self.tokenizer} if self.tokenizer else {})}

    async def aprepare(self) -> None:
        """Ask the server (once per client) for the served model: its name when none was given, its
        context length; hash its folder's weights now (a swap since the last episode shows); with
        ``api="tokens"``, load the tokenizer."""
        served = await self.client.served_model(self.model)
        if served is not None:
            self.model = self.model or served.name
            self.max_model_len = served.max_model_len
            if self.given_weights_id is None:
                self.weights_id = await served.current_weights_id()
        if self.api == "tokens":
            folder = self.tokenizer or (served.root if served is not None else None)
            if folder is not None and self.tokenizer is None:  # a served link's target: the tokenizer served now
                folder = os.path.realpath(folder)
            if folder is None:
                raise TrajgymError(f"api: tokens needs the served model's tokenizer: {self.base_url}/models names no "
                                   "folder (root) of it; pass the tokenizer option (a local model folder)")
            self.codec = await asyncio.to_thread(codec_for, folder)

    def prepare(self) -> None:
        """The sync :meth:`aprepare` (one private event loop)."""
        async def once() -> None:
            try:
                await self.aprepare()
            finally:
                await close_connections()
        asyncio.run(once())

    def reset(self, ctx: AgentContext) -> None:
        super().reset(ctx)
        self._encoded = []
        self.seed_key = (ctx.seed, ctx.trial, ctx.role)
        if self.api == "tokens":
            if self.codec is None:
                raise TrajgymError("api: tokens: call prepare() (or aprepare()) before the episode: it loads the "
                                   "tokenizer")
            self.chain = TokenChain(self.codec)

    def act(self, messages: list[dict[str, Any]], info: dict[str, Any]) -> str:
        """The sync form, for :func:`trajgym.rollout.episode.play` (one private event loop)."""
        async def once() -> str:
            try:
                return await self.aact(messages, info)
            finally:
                await close_connections()
        return asyncio.run(once())

    def replace_message(self, index: int, message: dict[str, Any]) -> None:
        super().replace_message(index, message)
        del self._encoded[index:]  # re-encoded at the next request

    def tools_for_request(self, tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not self.strict:
            return tools
        out = []
        for tool in tools:
            fn = dict(tool.get("function", {}))
            fn["strict"] = True
            out.append({**tool, "function": fn})
        return out

    def request_sampling(self, info: dict[str, Any]) -> dict[str, Any]:
        """The sampling settings of the next request: :attr:`sampling`, with the request's own
        ``seed`` in an episode (see ``request_seeds``), derived from the env's turn."""
        if not self.request_seeds or self.seed_key is None:
            return self.sampling
        turn = info.get("turn", self.calls)
        key = (self.sampling.get("seed"), *self.seed_key)
        if self._request_seed is None or self._request_seed[0] != key:
            self._request_seed = (key, seeds_after("sampling", *key))  # as stable_seed("sampling", *key, turn)
        seed = self._request_seed[1](turn)
        return {**self.sampling, "seed": seed}

    def encoded_body(self, info: dict[str, Any], sampling: dict[str, Any] | None = None) -> bytes:
        """The chat request as JSON: the model, ``sampling`` (default :meth:`request_sampling`), the
        history, the tools and the options, reusing each history message's encoding and the tools'
        (a long conversation is not re-encoded at every turn; at 1,000 episodes in flight the
        encoding is most of the client's work)."""
        if len(self._encoded) > len(self.history):  # the history was replaced
            self._encoded = []
        self._encoded.extend(jsonio.dumps(m) for m in self.history[len(self._encoded):])
        head: dict[str, Any] = {"model": self.model,
                                **(sampling if sampling is not None else self.request_sampling(info))}
        tools = self.tools_of(info)
        if tools and self.tool_choice is not None:
            head["tool_choice"] = self.tool_choice
        if self.logprobs:
            head["logprobs"] = True
        if self.return_token_ids:
            head["return_token_ids"] = True
        head.update(self.extra_body)
        parts = [jsonio.dumps(head)[:-1], b',"messages":[', b",".join(self._encoded), b"]"]
        if tools:
            if self._tools_json is None or self._tools_json[0] is not tools:  # an episode's are one list
                self._tools_json = (tools, _encoded_tools(tools, self.strict, self.tools_for_request))
            parts += [b',"tools":', self._tools_json[1]]
        parts.append(b"}")
        return b"".join(parts)

    async def generate(self, info: dict[str, Any]) -> str:
        """One completion over the history; records the assistant message and :attr:`generation`."""
        if self.chain is not None:
            return await self._generate_tokens(info)
        if self.model is None:
            self.model = await self.client.first_model()
        sampling = self.request_sampling(info)  # once: the seed recorded is the seed sent
        t0 = time.perf_counter()
        data = await self.client.chat(self.encoded_body(info, sampling))
        latency_ms = (time.perf_counter() - t0) * 1000.0
        self.calls += 1
        choice = data["choices"][0]
        message = choice.get("message") or {}
        action, fmt = self.answer(message.get("content"), message.get("tool_calls"))
        lp = choice.get("logprobs") or {}
        content_lp = lp.get("content") if isinstance(lp, dict) else None
        completion = choice.get("token_ids")
        start, new, why = self.served_tokens(data.get("prompt_token_ids"), completion)
        self.generation = self._generation(
            data, choice, sampling, latency_ms, api="chat", prompt_from=start, prompt_ids=new, chain_break=why,
            token_ids=completion, logprobs=[t.get("logprob") for t in content_lp] if content_lp else None,
            tool_call_format=fmt, raw_content=message.get("content"), prefill=None)
        return action

    async def _generate_tokens(self, info: dict[str, Any]) -> str:
        """One completion of the role's token chain (``api="tokens"``) through ``/completions``."""
        assert self.chain is not None
        tools = (self.tools_of(info) or None) if self.tool_choice != "none" else None
        prefill = TOOL_CALL_PREFILL if tools and self.tool_choice == "required" else ""
        prompt, start, new, why = self.chain.prompt(self.history, tools, prefill)
        sampling = self.request_sampling(info)
        head: dict[str, Any] = {"model": self.model, **sampling, "prompt": prompt, "return_token_ids": True}
        if prefill and tools:  # the call that follows <tool_call>, held to the tools' schemas as vLLM's chat does
            head["structured_outputs"] = {"json": call_schema(tools)}
        if self.logprobs:
            head["logprobs"] = 0  # the sampled token's own log-probability
        if self.max_model_len is not None:
            room = self.max_model_len - len(prompt)
            if room < 1:
                raise TrajgymError(f"the {info.get('role', 'agent')}'s conversation ({len(prompt)} tokens) fills the "
                                   f"context of {self.model} ({self.max_model_len} tokens); lower the scenario's "
                                   "limits.max_turns (or --max-turns), or serve a longer --max-model-len")
            head["max_tokens"] = min(int(sampling.get("max_tokens") or room), room)
        head.update(self.extra_body)
        t0 = time.perf_counter()
        data = await self.client.complete(jsonio.dumps(head))
        latency_ms = (time.perf_counter() - t0) * 1000.0
        self.calls += 1
        choice = data["choices"][0]
        completion = choice.get("token_ids")
        if not isinstance(completion, list):
            raise TrajgymError(f"api: tokens needs the completion's token ids: {self.client.completions_url} did not "
                               "return them (return_token_ids is a vLLM extension); use api: chat with this server")
        raw = prefill + str(choice.get("text") or "")
        action, fmt = self.answer(raw)
        self.chain.completed(completion, len(self.history))
        lp = choice.get("logprobs") or {}
        token_lp = lp.get("token_logprobs") if isinstance(lp, dict) else None
        self.generation = self._generation(
            data, choice, sampling, latency_ms, api="tokens", prompt_from=start, prompt_ids=new, chain_break=why,
            token_ids=completion, logprobs=token_lp, tool_call_format=fmt, raw_content=raw, prefill=prefill or None)
        return action

    def _generation(self, data: dict[str, Any], choice: dict[str, Any], sampling: dict[str, Any], latency_ms: float,
                    *, api: Literal["chat", "tokens"], prompt_from: int | None, prompt_ids: list[int] | None,
                    chain_break: str | None, token_ids: list[int] | None, logprobs: list[float] | None,
                    tool_call_format: str | None, raw_content: str | None, prefill: str | None) -> Generation:
        """The turn's record, written out whole (it is built four times per episode at 1,000 in flight)."""
        usage = data.get("usage")
        return {
            "backend": "openai", "model": data.get("model", self.model), "weights_id": self.weights_id,
            "loop_generation": self.loop_generation, "api": api, "sampling": dict(sampling),
            "tool_choice": self.tool_choice,  # type: ignore[typeddict-item]  # checked by check_tool_choice
            "logprobs_mode": self.logprobs_mode if self.logprobs else None,
            "prompt_from": prompt_from, "prompt_ids": prompt_ids, "chain_break": chain_break,
            "token_ids": token_ids, "logprobs": logprobs, "finish_reason": choice.get("finish_reason"),
            "usage": {"prompt_tokens": usage.get("prompt_tokens"), "completion_tokens": usage.get("completion_tokens"),
                      "total_tokens": usage.get("total_tokens")} if isinstance(usage, dict) else None,
            "prefill": prefill, "tool_call_format": tool_call_format,  # type: ignore[typeddict-item]
            "raw_content": raw_content, "response_id": data.get("id"), "literal": None,
            "wall_latency_ms": round(latency_ms, 3),
        }


def call_schema(tools: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON Schema of one ``{"name": ..., "arguments": {...}}`` call of one of ``tools``: what a
    model forced to call a tool writes after ``<tool_call>`` (the chat template's form of a call),
    each tool's arguments held to its parameters."""
    options = []
    for tool in tools:
        fn = tool.get("function") or {}
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        options.append({"type": "object", "properties": {"name": {"type": "string", "enum": [fn.get("name")]},
                                                          "arguments": params},
                        "required": ["name", "arguments"], "additionalProperties": False})
    return {"anyOf": options}


_TOOLS_CACHE: dict[tuple[int, bool, int], tuple[list[dict[str, Any]], bytes]] = {}


def _encoded_tools(tools: list[dict[str, Any]], strict: bool,
                   prepare: Any) -> bytes:
    """The tools' JSON, cached by the identity of the schema dicts (the envs share them); the
    cache holds the list, so an id cannot be reused while its entry lives."""
    key = (hash(tuple(id(t) for t in tools)), strict, len(tools))
    hit = _TOOLS_CACHE.get(key)
    if hit is not None and len(hit[0]) == len(tools) and all(a is b for a, b in zip(hit[0], tools, strict=True)):
        return hit[1]
    text = jsonio.dumps(prepare(tools))
    if len(_TOOLS_CACHE) > 256:
        _TOOLS_CACHE.clear()
    _TOOLS_CACHE[key] = (list(tools), text)
    return text

