"""The review app's API and data: queue rows, the episode view, labels, edits, and bad input (a
missing or corrupt file, a torn last line, an unknown episode, malformed edits, two reviewers saving
the same turn at once)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from trajgym.cli.main import main as cli_main
from trajgym.review.app import make_app, token_for
from trajgym.review.data import ReviewDataError, data_files
from trajgym.trajectory.labels import LabelStore


async def _client(target: Path, **kw: Any) -> TestClient:
    client = TestClient(TestServer(make_app(target, reviewer="ana", **kw)))
    await client.start_server()
    return client


def _first_call(view: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in view["steps"] if s["learner"] and s["tool_calls"])


def test_queue_episode_labels_and_edits(scored: Path) -> None:
    async def go() -> None:
        c = await _client(scored)
        try:
            rows = (await (await c.get("/api/episodes")).json())["rows"]
            assert len(rows) == 8 and all(r["status"] == "unreviewed" for r in rows)
            assert {"scenario_id", "domain", "total", "blame", "faults", "persona", "weights_id", "policy"} <= set(rows[0])
            oracle, rand = rows[0]["episode_id"], rows[1]["episode_id"]
            view = await (await c.get(f"/api/episodes/{oracle}")).json()
            assert view["siblings"] == [rand]  # the same variation, the other policy
            assert view["world_diff"] == [] and view["reference"]["success"]  # the oracle ends as the reference does
            rview = await (await c.get(f"/api/episodes/{rand}")).json()
            assert rview["world_diff"] or rview["row"]["success"]
            roles = {s["role"] for s in view["steps"]}
            assert {"support", "customer"} <= roles
            assert any(r["ok"] for s in view["steps"] for r in s["results"])
            # a verdict, a reason-less rejection refused, an unknown action refused
            assert (await c.post(f"/api/episodes/{oracle}/label", json={"action": "accept"})).status == 200
            bad = await c.post(f"/api/episodes/{rand}/label", json={"action": "reject"})
            assert bad.status == 400 and "reason" in (await bad.json())["error"]
            assert (await c.post(f"/api/episodes/{rand}/label", json={"action": "bless"})).status == 400
            ok = await c.post(f"/api/episodes/{rand}/label", json={"action": "reject", "reason": "wrong action"})
            assert ok.status == 200
            # a label for an episode the data does not hold
            unknown = await c.post("/api/episodes/no-such-episode/label", json={"action": "accept"})
            assert unknown.status == 400 and "no episode no-such-episode" in (await unknown.json())["error"]
            # malformed edits: not JSON, not an object, rejected by the tool's schema, a turn the learner did not take
            step = _first_call(view)
            url = f"/api/episodes/{oracle}/edit"
            base = {"turn": step["turn"], "kind": "tool_call", "index": 0, "base_version": 0}
            for args, why in (("{oops", "not JSON"), ("[1, 2]", "a JSON object"),
                              ('{"bogus": 1}', "rejects these arguments")):
                r = await c.post(url, json={**base, "arguments": args})
                assert r.status == 400 and why in (await r.json())["error"], args
            r = await c.post(url, json={**base, "turn": 10_000, "arguments": "{}"})
            assert r.status == 400 and "did not act at turn" in (await r.json())["error"]
            # two reviewers save the same turn at once: one lands, the other is told who edited it
            new = json.loads(step["tool_calls"][0]["arguments"])
            posts = [c.post(url, json={**base, "arguments": json.dumps(new), "reviewer": who}) for who in ("ana", "bo")]
            answers = await asyncio.gather(*posts)
            assert sorted(a.status for a in answers) == [200, 409]
            lost = next(a for a in answers if a.status == 409)
            assert "edited by" in (await lost.json())["error"]
            view = await (await c.get(f"/api/episodes/{oracle}")).json()
            edited = next(s for s in view["steps"] if s["turn"] == step["turn"])
            assert edited["edit"]["version"] == 1
            assert all(s["stale"] for s in view["steps"] if s["turn"] > step["turn"])
            assert not any(s["stale"] for s in view["steps"] if s["turn"] <= step["turn"])
            rows = {r["episode_id"]: r for r in (await (await c.get("/api/episodes")).json())["rows"]}
            assert rows[oracle]["status"] == "accept" and rows[rand]["status"] == "reject"
            assert rows[oracle]["edited_turns"] == [step["turn"]]
            agreement = await (await c.get("/api/agreement")).json()
            assert {a["scorer"] for a in agreement} >= {"success"}
        finally:
            await c.close()

    asyncio.run(go())
    labels = LabelStore(scored.with_name("scored.labels.sqlite"))  # beside the data, kept
    assert len(labels.verdicts()) == 2
    # the report shows how often each scorer agreed with the reviewers
    out = scored.with_name("report.html")
    assert cli_main(["report", str(scored), "--out", str(out), "--labels", labels.path]) == 0
    page = out.read_text()
    assert 'id="agreement-table"' in page and "Cohen" in page


def test_a_token_guards_a_page_bound_elsewhere(scored: Path) -> None:
    assert token_for("127.0.0.1") == "" and len(token_for("0.0.0.0")) > 16

    async def go() -> None:
        c = await _client(scored, token="s3cret")
        try:
            assert (await c.get("/api/episodes")).status == 403
            assert (await c.get("/api/episodes?token=s3cret")).status == 200
            assert (await c.get("/api/episodes", headers={"X-Review-Token": "s3cret"})).status == 200
        finally:
            await c.close()

    asyncio.run(go())


def test_bad_data_is_a_clear_error(scored: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ReviewDataError, match="no such file"):
        data_files(tmp_path / "missing.jsonl")
    assert cli_main(["review", str(tmp_path / "missing.jsonl")]) == 1
    assert "no such file" in capsys.readouterr().err
    lines = scored.read_text().splitlines()
    corrupt = tmp_path / "corrupt.jsonl"
    corrupt.write_text("\n".join([lines[0], "{not json", *lines[2:]]) + "\n")
    with pytest.raises(ReviewDataError, match=r"corrupt.jsonl:2"):
        make_app(corrupt)
    torn = tmp_path / "torn.jsonl"
    torn.write_text("\n".join(lines) + "\n" + lines[0][: len(lines[0]) // 2])  # a job killed mid-write

    async def go() -> None:
        c = await _client(torn)
        try:
            data = await (await c.get("/api/episodes")).json()
            assert len(data["rows"]) == 8 and any("torn last line" in n for n in data["notes"])
        finally:
            await c.close()

    asyncio.run(go())
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ReviewDataError, match="holds no scored files"):
        data_files(empty)


def test_labels_override_a_filter_chain(scored: Path, tmp_path: Path) -> None:
    from trajgym.filters.chain import HUMAN_STEP, filter_file
    from trajgym.trainers.loop import read_labels
    from trajgym.trajectory.scored import iter_scored

    records = list(iter_scored(scored))
    good = next(r for r in records if r.success)
    bad = next(r for r in records if not r.success and r.total is not None)
    labels = tmp_path / "labels.sqlite"
    store = LabelStore(labels)
    store.add(good.trajectory.episode_id, "x", "reject", reviewer="ana", reason="made something up")
    store.add(bad.trajectory.episode_id, "x", "accept", reviewer="ana")
    store.close()
    chain = tmp_path / "chain.yaml"
    chain.write_text("filters:\n  - success: true\n")
    result = filter_file(scored, chain, tmp_path / "kept.jsonl", labels=labels)
    kept = {r.trajectory.episode_id for r in result.kept}
    assert bad.trajectory.episode_id in kept and good.trajectory.episode_id not in kept
    assert result.steps[-1].step == HUMAN_STEP and result.steps[-1].reasons == {
        "rejected by a reviewer": 1, "accepted by a reviewer, kept": 1}
    stamp = result.kept[0].filter
    assert stamp is not None and stamp.chain[-1] == {"human_labels": str(labels.resolve())}
    # the loop's filter step reads the same file
    assert read_labels(labels) == {good.trajectory.episode_id: "reject", bad.trajectory.episode_id: "accept"}
    assert cli_main(["filter", str(scored), "--config", str(chain), "--out", str(tmp_path / "k2.jsonl"),
                     "--labels", str(labels)]) == 0
