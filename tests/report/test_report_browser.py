"""The report as a person sees it: generated from real oracle and random rollouts, opened in
Debian's headless Chromium (driven over the DevTools protocol, :mod:`chromium_cdp`).

Checks that the tables, plots and episode links render and work, that nothing is fetched from
outside the page, that no console error or exception happens, and that trajectory text cannot
inject markup. Keeps screenshots in ``test-artifacts/report.png`` and ``report-episode.png``.

Without ``chromium`` the test is skipped; with ``TRAJGYM_REQUIRE_CHROMIUM=1`` (set by ``.ci/run``,
which installs it) it fails instead.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest
from chromium_cdp import Chromium, require_chromium
from scored_rollouts import SCENARIOS, scored_rollouts

from trajgym.report import write_report
from trajgym.trajectory.scored import ScoredTrajectory

pytestmark = pytest.mark.slow

HOSTILE = "<img src=x onerror=\"console.error('xss')\"><script>console.error('xss')</script>"


@pytest.fixture(scope="module")
def chromium() -> str:
    """The chromium binary, or a skip (a failure under TRAJGYM_REQUIRE_CHROMIUM=1)."""
    return require_chromium()


@pytest.fixture(scope="module")
def report_html(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[ScoredTrajectory]]:
    folder = tmp_path_factory.mktemp("report")
    records = scored_rollouts(folder, episodes=2, trials=2, hostile=HOSTILE)
    out = folder / "report.html"
    summary = write_report(records, out, sources=[str(folder / "scored.jsonl")], max_transcripts=len(records) - 3)
    assert summary.left_out == 3
    return out, records


# What the page shows, read in the browser.
PAGE_FACTS = """(() => {
  const q = (s) => Array.from(document.querySelectorAll(s));
  const links = q('#episode-table a.ep-link');
  return {
    tables: q('table').length,
    scenarioRows: q('#scenario-table tbody tr').length,
    episodeRows: q('#episode-table tbody tr').length,
    scorerRows: q('#scorer-table tbody tr').length,
    faultRows: q('#fault-table tbody tr').length,
    plots: q('img.plot').map((img) => ({id: img.id, complete: img.complete, w: img.naturalWidth,
                                        h: img.naturalHeight, shownW: img.getBoundingClientRect().width})),
    links: links.length,
    brokenLinks: links.filter((a) => !document.getElementById(a.hash.slice(1))).map((a) => a.href),
    transcripts: q('details.episode').length,
    leftOutNote: (document.getElementById('left-out') || {}).textContent || '',
    injected: q('img[src="x"]').length + q('main script').length,
    hostileShown: document.body.textContent.split(HOSTILE_TEXT).length - 1,
  };
})()""".replace("HOSTILE_TEXT", json.dumps(HOSTILE))


async def _click(page: Chromium, selector: str) -> None:
    """A real mouse click in the middle of the element ``selector`` (scrolled into view first)."""
    box = await page.evaluate(f"""(() => {{
      const el = document.querySelector({selector!r});
      el.scrollIntoView({{block: 'center'}});
      const r = el.getClientRects()[0];  // the first line box: a wrapped link has a gap in the middle
      return {{x: r.x + r.width / 2, y: r.y + r.height / 2}};
    }})()""")
    for kind in ("mousePressed", "mouseReleased"):
        await page.send("Input.dispatchMouseEvent", {"type": kind, "x": box["x"], "y": box["y"], "button": "left",
                                                     "clickCount": 1})


async def _screenshot(page: Chromium, path: Path, *, full: bool) -> None:
    params: dict[str, Any] = {"format": "png"}
    if full:
        height = min(await page.evaluate("document.documentElement.scrollHeight"), 6000)
        params.update(captureBeyondViewport=True, clip={"x": 0, "y": 0, "width": page.width, "height": height,
                                                        "scale": 1})
    shot = await page.send("Page.captureScreenshot", params)
    path.write_bytes(base64.b64decode(shot["data"]))


async def _drive(binary: str, report: Path, artifacts: Path) -> dict[str, Any]:
    async with Chromium(binary) as page:
        for domain in ("Page", "Runtime", "Log", "Network"):
            await page.send(f"{domain}.enable")
        await page.send("Emulation.setDeviceMetricsOverride", {"width": page.width, "height": page.height,
                                                               "deviceScaleFactor": 1, "mobile": False})
        mark = len(page.events)
        await page.send("Page.navigate", {"url": report.as_uri()})
        await page.wait_event("Page.loadEventFired", after=mark)
        facts = await page.evaluate(PAGE_FACTS)
        await _screenshot(page, artifacts / "report.png", full=True)

        # Follow the link of a failed episode, as a person would: a mouse click.
        target = await page.evaluate("""(() => {
          const a = Array.from(document.querySelectorAll('#episode-table a.ep-link'))
            .find((a) => a.closest('tr').textContent.includes('failure'));
          a.id = 'clicked-link';
          return a.hash.slice(1);
        })()""")
        await _click(page, "#clicked-link")
        await page.evaluate("new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(ok)))")
        followed = await page.evaluate(f"""(() => {{
          const d = document.getElementById({target!r});
          const r = d.getBoundingClientRect();
          return {{hash: location.hash, open: d.open, top: r.top, inView: r.top >= -1 && r.top < innerHeight,
                  steps: d.querySelectorAll('li.step').length, findingLinks: d.querySelectorAll('ul.findings a').length}};
        }})()""")
        await _screenshot(page, artifacts / "report-episode.png", full=False)

        # Sort the episode table by turns, longest first (two clicks on its header).
        turns_col = await page.evaluate("""Array.from(document.querySelectorAll('#episode-table thead th'))
            .findIndex((th) => th.textContent === 'turns')""")
        for _ in range(2):
            await _click(page, f"#episode-table thead th:nth-child({turns_col + 1})")
        turns = await page.evaluate(f"""Array.from(document.querySelectorAll('#episode-table tbody tr'))
            .map((tr) => Number(tr.cells[{turns_col}].textContent))""")
        await asyncio.sleep(0.2)  # let late console messages arrive before the browser closes
        return {"facts": facts, "target": target, "followed": followed, "turns": turns, "events": list(page.events)}


def _problems(events: list[dict[str, Any]]) -> list[str]:
    """Console errors, uncaught exceptions, error log entries and requests that leave the page."""
    out = []
    for e in events:
        method, p = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert", "warning"):
            out.append(f"console.{p['type']}: {[a.get('value', a.get('description')) for a in p['args']]}")
        elif method == "Runtime.exceptionThrown":
            out.append(f"exception: {p['exceptionDetails']}")
        elif method == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
            out.append(f"log {p['entry']['level']}: {p['entry']['text']} ({p['entry'].get('url')})")
        elif method == "Network.requestWillBeSent" and not p["request"]["url"].startswith(("file:", "data:")):
            out.append(f"request to {p['request']['url']}")
    return out


def test_report_renders_in_headless_chromium(chromium: str, report_html: tuple[Path, list[ScoredTrajectory]],
                                             artifacts_dir: Path) -> None:
    page, records = report_html
    seen = asyncio.run(_drive(chromium, page, artifacts_dir))
    facts = seen["facts"]

    assert _problems(seen["events"]) == []
    assert facts["scenarioRows"] == len(SCENARIOS)
    assert facts["episodeRows"] == len(SCENARIOS) * 2 * 2 * 2      # 2 variations x 2 trials x 2 agents
    assert facts["scorerRows"] == len({name for r in records for name in r.scores}) >= 4
    assert facts["faultRows"] >= 2
    assert facts["tables"] >= 6
    plot_ids = {p["id"] for p in facts["plots"]}
    assert {"plot-success", "plot-pass-k", "plot-scores", "plot-blame", "plot-faults", "plot-lengths"} <= plot_ids
    for plot in facts["plots"]:
        assert plot["complete"] and plot["w"] > 100 and plot["h"] > 100 and plot["shownW"] > 100, plot
    assert facts["transcripts"] == facts["episodeRows"] - 3
    assert facts["links"] == facts["transcripts"] and facts["brokenLinks"] == []
    assert "3 of 48 transcripts were left out" in facts["leftOutNote"]
    # Hostile text is shown as text (a message, a malformed action, a finding quoting it), never run as markup.
    assert facts["injected"] == 0
    assert facts["hostileShown"] >= 2

    followed = seen["followed"]
    assert followed["hash"] == f"#{seen['target']}"
    assert followed["open"] and followed["inView"], followed
    assert followed["steps"] > 0

    assert seen["turns"] == sorted(seen["turns"], reverse=True) and len(set(seen["turns"])) > 1
    for name in ("report.png", "report-episode.png"):
        shot = artifacts_dir / name
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
