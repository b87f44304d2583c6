"""The review page as a reviewer uses it, in Debian's headless Chromium (driven over the DevTools
protocol, ``tests/report/chromium_cdp.py``), keyboard only: open the queue, filter it, edit a tool
call (a malformed one first, then one that lost a race with another reviewer), review three
episodes (accept, reject with a reason, flag the simulator), reload and find the labels kept, then
export them and check the SFT and DPO records made of them. Screenshots go to ``test-artifacts/``.

Without ``chromium`` the test is skipped; with ``TRAJGYM_REQUIRE_CHROMIUM=1`` (``.ci/run``) it fails.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from chromium_cdp import CDPError, Chromium, require_chromium

from trajgym.review.app import make_app

pytestmark = pytest.mark.slow
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def chromium() -> str:
    """The chromium binary, or a skip (a failure under TRAJGYM_REQUIRE_CHROMIUM=1)."""
    return require_chromium()


async def _key(page: Chromium, key: str, *, ctrl: bool = False) -> None:
    """One key press, as a keyboard sends it (keydown with its text, keyup)."""
    named = {"Enter": ("Enter", 13), "Escape": ("Escape", 27)}
    code, vk = named.get(key, (f"Key{key.upper()}" if key.isalpha() else f"Digit{key}" if key.isdigit() else key,
                               ord(key.upper()) if len(key) == 1 else 0))
    down: dict[str, Any] = {"type": "keyDown", "key": key, "code": code, "windowsVirtualKeyCode": vk,
                            "modifiers": 2 if ctrl else 0}
    if len(key) == 1 and not ctrl:
        down["text"] = key
    if key == "Enter" and not ctrl:
        down["text"] = "\r"
    await page.send("Input.dispatchKeyEvent", down)
    await page.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": key, "code": code, "windowsVirtualKeyCode": vk,
                                               "modifiers": 2 if ctrl else 0})
    await _settle(page)


async def _type(page: Chromium, text: str) -> None:
    await page.send("Input.insertText", {"text": text})
    await _settle(page)


async def _settle(page: Chromium) -> None:
    """Let the page finish what the last key started (its requests and re-render)."""
    for _ in range(200):
        busy = await page.evaluate("!!document.body && document.body.dataset.ready === '1' && !window.__busy")
        if busy:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.15)


async def _until(page: Chromium, expression: str, timeout: float = 15.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            value = await page.evaluate(expression)
        except CDPError:  # the page is still loading
            value = None
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"the page never got to: {expression}")
        await asyncio.sleep(0.05)


async def _shot(page: Chromium, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    shot = await page.send("Page.captureScreenshot", {"format": "png"})
    (ARTIFACTS / name).write_bytes(base64.b64decode(shot["data"]))


STATUS = "Object.fromEntries([...document.querySelectorAll('#queue-table tbody tr')].map(" \
         "(tr) => [tr.dataset.id, tr.cells[0].textContent]))"


async def _drive(binary: str, scored: Path) -> dict[str, Any]:
    app = make_app(scored, reviewer="ana")
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}/"
    out: dict[str, Any] = {}
    try:
        async with Chromium(binary) as page, aiohttp.ClientSession() as http:
            for domain in ("Page", "Runtime", "Log"):
                await page.send(f"{domain}.enable")
            await page.send("Emulation.setDeviceMetricsOverride", {"width": page.width, "height": page.height,
                                                                   "deviceScaleFactor": 1, "mobile": False})
            await page.send("Page.navigate", {"url": url})
            await _until(page, "document.body.dataset.ready === '1'")
            out["all"] = await page.evaluate("document.querySelectorAll('#queue-table tbody tr').length")
            # filter the queue: "/" focuses the filter, type, Enter leaves it
            await _key(page, "/")
            await _type(page, "refund_damaged_item")
            await _key(page, "Enter")
            out["filtered"] = await page.evaluate(
                "[...document.querySelectorAll('#queue-table tbody tr')].map((tr) => tr.cells[2].textContent)")
            out["counts"] = await page.evaluate("document.querySelector('#counts').textContent")
            await _shot(page, "review-queue.png")
            # open the first episode (the oracle's), pick its first turn with a tool call
            await _key(page, "Enter")
            await _until(page, "!document.querySelector('#episode').hidden")
            first = await page.evaluate("document.querySelector('#ep-head b').textContent")
            for _ in range(12):
                await _key(page, "]")
                if await page.evaluate("!!document.querySelector('.step.turn-selected code.call')"):
                    break
            out["turn"] = int(await page.evaluate("document.querySelector('.step.turn-selected').dataset.turn"))
            out["call_before"] = await page.evaluate("document.querySelector('.step.turn-selected code.call').textContent")
            # edit it: malformed first (the page says why and keeps the editor open)
            await _key(page, "e")
            await _until(page, "!document.querySelector('#edit-dialog').hidden")
            original = await page.evaluate("document.querySelector('#edit-text').value")
            await page.evaluate("document.querySelector('#edit-text').select()")
            await _type(page, '{"order_id": ')
            await _key(page, "Enter", ctrl=True)
            out["malformed"] = await _until(page, "document.querySelector('#edit-error').textContent")
            # another reviewer saves this turn meanwhile: the save is refused, saying by whom
            args = json.loads(original)
            theirs = {**args, **{k: (f"{v}-bo" if isinstance(v, str) else v) for k, v in list(args.items())[:1]}}
            async with http.post(f"{url}api/episodes/{first}/edit", json={
                    "turn": out["turn"], "kind": "tool_call", "index": 0, "arguments": json.dumps(theirs),
                    "base_version": 0, "reviewer": "bo"}) as r:
                assert r.status == 200
            mine = {**args, **{k: (f"{v}-ana" if isinstance(v, str) else v) for k, v in list(args.items())[:1]}}
            await page.evaluate("document.querySelector('#edit-text').select()")
            await _type(page, json.dumps(mine))
            await _key(page, "Enter", ctrl=True)
            out["conflict"] = await _until(page, "document.querySelector('#edit-error').textContent.includes('edited by')"
                                                 " && document.querySelector('#edit-error').textContent")
            # Esc, back to the queue and into the episode again: bo's version; edit it once more, now it saves
            await _key(page, "Escape")
            await _key(page, "Escape")
            await _key(page, "Enter")
            await _until(page, "!document.querySelector('#episode').hidden")
            for _ in range(out["turn"] + 1):
                await _key(page, "]")
                if await page.evaluate(f"document.querySelector('.step.turn-selected').dataset.turn === '{out['turn']}'"):
                    break
            await _key(page, "e")
            await page.evaluate("document.querySelector('#edit-text').select()")
            await _type(page, json.dumps(mine))
            await _key(page, "Enter", ctrl=True)
            await _until(page, "document.querySelector('#edit-dialog').hidden")
            out["edited_badge"] = await page.evaluate("document.querySelector('.step.turn-selected .edited').textContent")
            out["stale"] = await page.evaluate("document.querySelectorAll('.step.stale').length")
            out["call_after"] = await page.evaluate("document.querySelector('.step.turn-selected code.call').textContent")
            await _shot(page, "review-episode.png")
            # side by side with the other episode of its variation, and back
            await _key(page, "c")
            out["compare"] = await _until(page, "!document.querySelector('#compare').hidden && "
                                                "[document.querySelectorAll('#left .step').length, "
                                                "document.querySelectorAll('#right .step').length]")
            await _key(page, "Escape")
            # review three episodes with the keyboard: accept, reject with a reason, the simulator was wrong
            await _key(page, "a")
            await _until(page, f"document.querySelector('#ep-head b').textContent !== '{first}'")
            second = await page.evaluate("document.querySelector('#ep-head b').textContent")
            await _key(page, "r")
            await _until(page, "!document.querySelector('#reason-dialog').hidden")
            await _key(page, "1")
            await _type(page, "refunded without checking")
            await _key(page, "Enter")
            await _until(page, f"document.querySelector('#ep-head b').textContent !== '{second}'")
            third = await page.evaluate("document.querySelector('#ep-head b').textContent")
            await _key(page, "f")
            await _until(page, f"document.querySelector('#ep-head b').textContent !== '{third}'"
                               " || !document.querySelector('#queue').hidden")
            # back to it (k), undo (u): unreviewed again; flag it once more
            await _key(page, "k")
            await _until(page, f"document.querySelector('#ep-head b').textContent === '{third}'")
            await _key(page, "u")
            out["undone"] = await _until(page, "document.querySelector('#ep-status').textContent === 'unreviewed'"
                                               " && document.querySelector('#ep-status').textContent")
            await _key(page, "f")
            await _key(page, "Escape")
            out["ids"] = [first, second, third]
            # reload: the labels are kept
            await page.send("Page.reload")
            await _until(page, "document.body.dataset.ready === '1' && document.querySelectorAll('#queue-table tbody tr').length")
            out["after_reload"] = await page.evaluate(STATUS)
            out["agreement_rows"] = await page.evaluate("document.querySelectorAll('#agreement-table tbody tr').length")
            out["problems"] = [e for e in page.events if e.get("method") in ("Runtime.exceptionThrown",)
                               or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] == "error")]
    finally:
        await runner.cleanup()
    return out


def test_review_with_the_keyboard_then_export(chromium: str, scored: Path, tmp_path: Path) -> None:
    out = asyncio.run(_drive(chromium, scored))
    assert out["all"] == 8
    assert out["filtered"] and set(out["filtered"]) == {"refund_damaged_item"} and len(out["filtered"]) == 4
    assert out["counts"].startswith("4 of 8 episodes shown")
    assert "not JSON" in out["malformed"]
    assert "edited by bo" in out["conflict"]
    assert out["edited_badge"].startswith("edited v2 by ana") and out["stale"] > 0
    assert "-ana" in out["call_after"] and out["call_after"] != out["call_before"]
    assert out["compare"][0] > 0 and out["compare"][1] > 0
    assert out["undone"] == "unreviewed"
    first, second, third = out["ids"]
    status = out["after_reload"]
    assert status[first].startswith("accept") and "✎" in status[first]
    assert status[second].startswith("reject") and status[third].startswith("flag simulator")
    assert out["agreement_rows"] >= 1
    assert not out["problems"], out["problems"]

    from trajgym.trainers.export import export

    pytest.importorskip("datasets")
    import datasets

    labels = scored.with_name("scored.labels.sqlite")
    sft = export([scored], tmp_path / "sft", fmt="sft", labels=labels)
    rows = datasets.load_from_disk(str(tmp_path / "sft" / "dataset"))
    by_id = {r["episode_id"]: r for r in rows}
    assert second not in by_id  # rejected
    corrected = by_id[first]
    assert corrected["human"].startswith(f"edit turn {out['turn']} v2 by ana")
    last = corrected["messages"][-1]
    assert last["role"] == "assistant" and "-ana" in last["tool_calls"][0]["function"]["arguments"]
    assert sft.manifest["labels"]["accepted"] == 1 and sft.manifest["labels"]["rejected"] == 1
    dpo = export([scored], tmp_path / "dpo", fmt="dpo", labels=labels, min_margin=10.0)  # only the reviewers' pairs
    pairs = datasets.load_from_disk(str(tmp_path / "dpo" / "dataset"))
    kinds = sorted(p["human"].split(" ")[0] for p in pairs)
    assert dpo.records == len(pairs) and kinds == ["accept", "edit"]  # the turn's latest version; accept > reject
    edit = next(p for p in pairs if p["human"].startswith(f"edit turn {out['turn']} v2"))
    assert "-ana" in edit["chosen"][0]["tool_calls"][0]["function"]["arguments"]
    assert "-ana" not in edit["rejected"][0]["tool_calls"][0]["function"]["arguments"]
    pair = next(p for p in pairs if p["human"] == "accept > reject")
    assert pair["chosen_episode_id"] == first and pair["rejected_episode_id"] == second
