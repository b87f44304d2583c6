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
from typing import Any

from trajgym import jsonio
from trajgym.agents import http_client
from trajgym.agents.base import AgentContext
from trajgym.agents.chat import ChatAgent, check_sampling, check_tool_choice
from trajgym.errors import InfraError, TrajgymError
from trajgym.seeding import seeds_after

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
        models_path = http_client.split_url(f"{self.base_url}/models")[3]
        self._models_head = http_client.request_head(self._server, "GET", models_path, headers)
        self.timeout_s = timeout_s
        self.retries = max(1, retries)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s

    async def _request(self, head: bytes, url: str, body: bytes | None) -> Any:
        """Send ``head`` and ``body`` (a request to ``url``, named in errors); the decoded answer."""
        last = ""
        for attempt in range(self.retries):
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
        raise InfraError(f"model server {url} failed {self.retries} attempt(s); last error: {last}")

    async def chat(self, body: bytes) -> dict[str, Any]:
        """One completion; ``body`` is the request's JSON, encoded."""
        data = await self._request(self._chat_head, self.url, body)
        if not isinstance(data, dict) or not data.get("choices"):
            raise InfraError(f"model server {self.url} returned no choices: {str(data)[:200]}")
        return data

    async def first_model(self) -> str:
        data = await self._request(self._models_head, f"{self.base_url}/models", None)
        try:
            return str(data["data"][0]["id"])
        except (KeyError, IndexError, TypeError):
            raise TrajgymError(f"model server {self.base_url}/models lists no model; "
                               "pass model=...") from None


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
    """

    kind = "openai"

    def __init__(self, *, base_url: str | None = None, model: str | None = None,
                 api_key: str | None = None, sampling: dict[str, Any] | None = None,
                 tool_choice: str | None = "auto", strict: bool = False, timeout_s: float = 120.0,
                 retries: int = 5, backoff_s: float = 1.0, text_tool_calls: bool = True,
                 logprobs: bool = True, return_token_ids: bool = True,
                 extra_body: dict[str, Any] | None = None, request_seeds: bool = True,
                 name: str | None = None, reply_tool: bool | None = None) -> None:
        super().__init__(text_tool_calls=text_tool_calls, name=name, reply_tool=reply_tool)
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
        return {"base_url": self.base_url, "model": self.model, "sampling": dict(self.sampling),
                "tool_choice": self.tool_choice, "strict": self.strict, "reply_tool": self.replies_by_tool,
                "timeout_s": self.timeout_s, "retries": self.retries,
                "text_tool_calls": self.text_tool_calls, "request_seeds": self.request_seeds}

    def reset(self, ctx: AgentContext) -> None:
        super().reset(ctx)
        self._encoded = []
        self.seed_key = (ctx.seed, ctx.trial, ctx.role)

    def act(self, messages: list[dict[str, Any]], info: dict[str, Any]) -> str:
        """The sync form, for :func:`trajgym.rollout.episode.play` (one private event loop)."""
        async def once() -> str:
            try:
                return await self.aact(messages, info)
            finally:
                await close_connections()
        return asyncio.run(once())

    def replace_message(self, index: int, message: dict[str, Any]) -> None:
        """Replace ``history[index]`` (a new system prompt, say); later requests send the new one."""
        self.history[index] = message
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
        self.generation = self._generation(data, choice, latency_ms, fmt, sampling)
        return action

    def _generation(self, data: dict[str, Any], choice: dict[str, Any], latency_ms: float,
                    fmt: str | None, sampling: dict[str, Any]) -> dict[str, Any]:
        lp = choice.get("logprobs") or {}
        content_lp = lp.get("content") if isinstance(lp, dict) else None
        return {
            "backend": "openai",
            "model": data.get("model", self.model),
            "sampling": dict(sampling),
            "tool_choice": self.tool_choice,
            "prompt_token_ids": data.get("prompt_token_ids"),
            "token_ids": choice.get("token_ids"),
            "logprobs": [t.get("logprob") for t in content_lp] if content_lp else None,
            "finish_reason": choice.get("finish_reason"),
            "usage": data.get("usage"),
            "wall_latency_ms": round(latency_ms, 3),  # wall clock: dropped by strip_wall
            "tool_call_format": fmt,
            "raw_content": (choice.get("message") or {}).get("content"),
            "response_id": data.get("id"),
        }


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

