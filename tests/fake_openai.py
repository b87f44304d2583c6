"""A deterministic fake OpenAI-compatible server (aiohttp.web on 127.0.0.1, a free port, its own
thread), answering like vLLM: token ids, logprobs, usage. Importable as ``fake_openai``.

Its replies come from a scripted policy of the request: as the support agent of
``refund_damaged_item`` (asks for the details, then find_customer, verify_identity, get_order,
refund_order, and tells the amount), or as the customer (opening, facts when asked,
end_conversation once told the refund). Fault modes: a queue of per-request faults (``"500"``,
``"400"``, ``"timeout"``, ``"bad_tool_text"``) and ``fail_after`` (every request after the first n
answers 503). With ``tool_choice: required`` and a ``reply`` tool offered, its chat messages
come as calls of that tool, like a model forced to call tools.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from trajgym.agents.toolcalls import format_text_tool_call


def fake_tokens(text: str) -> list[int]:
    return [ord(c) % 32000 for c in text]


def _texts(messages: list[dict[str, Any]], role: str, name: str | None = None) -> list[str]:
    return [m.get("content") or "" for m in messages
            if m.get("role") == role and (name is None or m.get("name") == name)]


def support_policy(messages: list[dict[str, Any]]) -> tuple[str | None, list[tuple[str, dict[str, Any]]]]:
    """The support agent of refund_damaged_item: (content, [(tool, args)])."""
    done = {m.get("name"): m.get("content") for m in messages if m.get("role") == "tool"}
    said = [m for m in messages if m.get("role") == "assistant"]
    customer = " ".join(_texts(messages, "user", "customer"))
    if not said:
        return "Sorry about that! Could you give me your email, ZIP code and order number?", []
    email = re.search(r"[\w.]+@[\w.]+\w", customer)
    zip_ = re.search(r"ZIP code is (\d{5})", customer)
    order = re.search(r"order (O\d+)", customer)
    if not (email and zip_ and order):
        return "Could you give me your email, ZIP code and order number?", []
    if "find_customer" not in done:
        return None, [("find_customer", {"email": email.group(0)})]
    found = json.loads(done["find_customer"] or "{}")
    found = found[0] if isinstance(found, list) and found else found
    cid = found.get("customer_id") or found.get("id") or "C1" if isinstance(found, dict) else "C1"
    if "verify_identity" not in done:
        return None, [("verify_identity", {"customer_id": cid, "email": email.group(0), "zip": zip_.group(1)})]
    if "get_order" not in done:
        return None, [("get_order", {"order_id": order.group(1)})]
    got = json.loads(done["get_order"] or "{}")
    price = sum(i["price"] for i in got.get("items", []))
    if "refund_order" not in done:
        return None, [("refund_order", {"order_id": order.group(1), "amount": price, "reason": "damaged"})]
    return f"Done: I refunded {price:.2f} to your card. Anything else?", []


def customer_policy(messages: list[dict[str, Any]]) -> tuple[str | None, list[tuple[str, dict[str, Any]]]]:
    system = messages[0].get("content") or ""
    support = _texts(messages, "user", "support")
    last = support[-1].lower() if support else ""
    if not support:
        opening = re.search(r"Your request: (.*)", system)
        return (opening.group(1) if opening else "Hi, I need help."), []
    if "refunded" in last:
        return None, [("end_conversation", {"reason": "my request is handled"})]
    facts = re.findall(r"^- (.*)$", system, re.MULTILINE)
    answers = [f for f in facts if any(k in last for k in ("email", "zip", "order"))
               and any(w in f.lower() for w in ("email", "zip", "order"))]
    return (" ".join(answers) or "Please help me with my request."), []


@dataclass
class FakeOpenAI:
    """The server. ``requests`` keeps every request body; ``faults`` is consumed one per request."""

    tool_format: str = "api"  # or "text": tool calls written as <tool_call> blocks in content
    latency_s: float = 0.0
    faults: list[str] = field(default_factory=list)
    fail_after: int | None = None
    hang_s: float = 1.0  # how long a "timeout" fault holds the request
    requests: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # -- server -------------------------------------------------------------------------------

    def start(self) -> FakeOpenAI:
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake server did not start")
        return self

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app)
        loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self._runner.cleanup())
        loop.close()

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self._lock:
            self.requests.append(body)
            n = len(self.requests)
            fault = self.faults.pop(0) if self.faults else None
        if self.fail_after is not None and n > self.fail_after:
            return web.json_response({"error": {"message": "overloaded"}}, status=503)
        if fault == "500":
            return web.json_response({"error": {"message": "internal error"}}, status=500)
        if fault == "400":
            return web.json_response({"error": {"message": "This model's maximum context length is 10 tokens",
                                                "type": "BadRequestError"}}, status=400)
        if fault == "timeout":
            await asyncio.sleep(self.hang_s)
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        return web.json_response(self.reply(body, bad_tool_text=fault == "bad_tool_text"))

    # -- replies ------------------------------------------------------------------------------

    def reply(self, body: dict[str, Any], *, bad_tool_text: bool = False) -> dict[str, Any]:
        messages = body["messages"]
        tools = {t["function"]["name"] for t in body.get("tools", [])}
        policy = customer_policy if "end_conversation" in tools else support_policy
        content, calls = policy(messages)
        if body.get("tool_choice") == "required" and not calls and "reply" in tools:
            content, calls = None, [("reply", {"content": content})]  # a forced model talks by tool
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if bad_tool_text:
            message["content"] = '<tool_call>{"name": "get_order", "arguments": {"order_id": </tool_call>'
        elif calls and self.tool_format == "text":
            message["content"] = "\n".join(format_text_tool_call(n, a) for n, a in calls)
        elif calls:
            message["tool_calls"] = [
                {"id": f"chatcmpl-tool-{len(self.requests)}-{k}", "type": "function",
                 "function": {"name": n, "arguments": json.dumps(a)}} for k, (n, a) in enumerate(calls)]
        out_text = message["content"] or json.dumps(message.get("tool_calls"))
        prompt_ids = fake_tokens(json.dumps(messages))[:64]
        token_ids = fake_tokens(out_text)
        return {
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "model": body.get("model"),
            "prompt_token_ids": prompt_ids,
            "choices": [{
                "index": 0, "message": message, "token_ids": token_ids,
                "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
                "logprobs": {"content": [{"token": chr(t), "logprob": -0.01 * (i % 7),
                                          "bytes": None, "top_logprobs": []} for i, t in enumerate(token_ids)]},
            }],
            "usage": {"prompt_tokens": len(prompt_ids), "completion_tokens": len(token_ids),
                      "total_tokens": len(prompt_ids) + len(token_ids)},
        }
