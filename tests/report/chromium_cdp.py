"""A small Chrome DevTools Protocol client for tests: Debian's headless ``chromium``, one page.

Chromium is started with a fresh profile in a temporary folder and ``--remote-debugging-port=0``
(it picks a free loopback port and writes it to ``DevToolsActivePort`` in the profile); the client
talks to it over one aiohttp websocket with a flattened session for the page. Every event is kept,
so a test can look for console errors, exceptions and network requests afterwards. Closing asks
the browser to quit and then ends only the process this client started, by its PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

START_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 30.0


def chromium_binary() -> str | None:
    """The Debian ``chromium`` on PATH, if installed."""
    return shutil.which("chromium")


def require_chromium() -> str:
    """The chromium binary, or a skip of the calling test (a failure under TRAJGYM_REQUIRE_CHROMIUM=1,
    which ``.ci/run`` sets after installing it)."""
    import pytest

    binary = chromium_binary()
    if binary is None:
        reason = "headless Chromium is not installed: apt-get install chromium (the Debian package)"
        if os.environ.get("TRAJGYM_REQUIRE_CHROMIUM", "") not in ("", "0"):
            pytest.fail(f"TRAJGYM_REQUIRE_CHROMIUM=1 but {reason}")
        pytest.skip(reason)
    return binary


class CDPError(RuntimeError):
    """Chromium answered a command with an error, or did not start."""


class Chromium:
    """``async with Chromium() as page:``, then :meth:`send` page commands and read :attr:`events`."""

    def __init__(self, binary: str, *, width: int = 1280, height: int = 900) -> None:
        self.binary = binary
        self.width, self.height = width, height
        self.events: list[dict[str, Any]] = []
        self._profile = Path(tempfile.mkdtemp(prefix="trajgym-chromium-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._session: str | None = None
        self._event_seen = asyncio.Event()

    async def __aenter__(self) -> Chromium:
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    def _args(self) -> list[str]:
        args = [self.binary, "--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
                f"--user-data-dir={self._profile}", "--remote-debugging-port=0",
                f"--window-size={self.width},{self.height}", "about:blank"]
        if os.geteuid() == 0:  # Chromium refuses to run its sandbox as root
            args.insert(1, "--no-sandbox")
        return args

    async def _start(self) -> None:
        log = (self._profile / "chromium.log").open("wb")
        self._proc = subprocess.Popen(self._args(), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        port_file = self._profile / "DevToolsActivePort"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_S
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if self._proc.poll() is not None:
                raise CDPError(f"chromium exited with {self._proc.returncode}: {self.log_tail()}")
            if loop.time() > deadline:
                raise CDPError(f"chromium wrote no DevToolsActivePort in {START_TIMEOUT_S} s: {self.log_tail()}")
            await asyncio.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(f"ws://127.0.0.1:{port}{path}", max_msg_size=0)
        self._reader = asyncio.create_task(self._read())
        targets = await self.send("Target.getTargets", page=False)
        page = next(t for t in targets["targetInfos"] if t["type"] == "page")
        attached = await self.send("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True},
                                   page=False)
        self._session = attached["sessionId"]

    def log_tail(self, lines: int = 20) -> str:
        path = self._profile / "chromium.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    async def _read(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            if "id" in data:
                fut = self._pending.pop(data["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(data)
            else:
                self.events.append(data)
                self._event_seen.set()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(CDPError("the DevTools connection closed"))

    async def send(self, method: str, params: dict[str, Any] | None = None, *, page: bool = True) -> dict[str, Any]:
        """Run one command (on the page's session unless ``page`` is false) and return its result."""
        assert self._ws is not None
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if page:
            msg["sessionId"] = self._session
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = fut
        await self._ws.send_str(json.dumps(msg))
        reply = await asyncio.wait_for(fut, CALL_TIMEOUT_S)
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def wait_event(self, method: str, *, after: int = 0, timeout: float = CALL_TIMEOUT_S) -> dict[str, Any]:
        """The first event called ``method`` among ``events[after:]``, waiting for it if need be."""
        async with asyncio.timeout(timeout):
            while True:
                for event in self.events[after:]:
                    if event.get("method") == method:
                        return event
                self._event_seen.clear()
                await self._event_seen.wait()

    async def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page (awaiting a promise)."""
        reply = await self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                     "awaitPromise": True})
        if "exceptionDetails" in reply:
            raise CDPError(f"page script failed: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    async def close(self) -> None:
        """Quit the browser, end its process by PID if it lingers, remove the profile."""
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.send("Browser.close", page=False), 5)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._ws is not None:
            await self._ws.close()
        if self._http is not None:
            await self._http.close()
        if self._proc is not None:
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
        shutil.rmtree(self._profile, ignore_errors=True)
