"""The review web app (aiohttp): one page, a small JSON API, labels in SQLite beside the data.

    GET  /                                  the page (the queue, an episode, side by side)
    GET  /api/episodes                      every episode's queue row with its review status, the
                                            reject reasons, notes on the data, agreement per scorer
    GET  /api/episodes/{id}                 an episode as a conversation (see data.episode_view)
    POST /api/episodes/{id}/label           {action: accept|reject|flag_simulator|skip, reason, reviewer}
    POST /api/episodes/{id}/undo            {reviewer}: the reviewer's latest action on it, undone
    POST /api/episodes/{id}/edit            {turn, kind: message|tool_call, index, content|arguments,
                                             base_version, reviewer}: a new version of a learner turn
    GET  /api/agreement                     per scorer: agreement with the reviewers, Cohen's kappa

Bound to 127.0.0.1 by default. Bound elsewhere, every request must carry the token the command
prints (``?token=...`` in the page's URL; the page sends it on as a header). A bad request (an
unknown episode, a malformed edit) answers 400 with ``{"error": ...}`` saying what is wrong; an edit
of a turn someone else edited since answers 409; the page shows both and keeps what was typed.
"""

from __future__ import annotations

import hmac
import secrets
from importlib.resources import files
from pathlib import Path
from typing import Any

from aiohttp import web

from trajgym.errors import TrajgymError
from trajgym.review.data import ReviewData, data_files, edited_message, episode_view
from trajgym.scorers.base import ScoringContext
from trajgym.trajectory.labels import (
    REJECT_REASONS,
    VERDICTS,
    EditConflictError,
    LabelStore,
    agreement,
)

LOOPBACK = ("127.0.0.1", "localhost", "::1")
DATA_KEY: web.AppKey[ReviewData] = web.AppKey("data", ReviewData)
STORE_KEY: web.AppKey[LabelStore] = web.AppKey("store", LabelStore)
CTX_KEY: web.AppKey[ScoringContext] = web.AppKey("ctx", ScoringContext)
TOKEN_KEY: web.AppKey[str] = web.AppKey("token", str)
REVIEWER_KEY: web.AppKey[str] = web.AppKey("reviewer", str)


def _asset(name: str) -> str:
    return files("trajgym.review").joinpath("assets", name).read_text(encoding="utf-8")


@web.middleware
async def _guard(request: web.Request, handler: Any) -> web.StreamResponse:
    token = request.app[TOKEN_KEY]
    if token:
        given = request.query.get("token") or request.headers.get("X-Review-Token") or ""
        if not hmac.compare_digest(given, token):
            return web.json_response({"error": "a token is needed: open the URL `trajgym review` printed"},
                                     status=403)
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except EditConflictError as exc:
        return web.json_response({"error": str(exc), "conflict": exc.latest.model_dump()}, status=409)
    except TrajgymError as exc:
        return web.json_response({"error": str(exc)}, status=400)


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise TrajgymError("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise TrajgymError("the request body is a JSON object")
    return body


def _reviewer(request: web.Request, body: dict[str, Any]) -> str:
    name = str(body.get("reviewer") or request.app[REVIEWER_KEY]).strip()
    if not name:
        raise TrajgymError("say who reviews (a name)")
    return name[:80]


async def index(request: web.Request) -> web.Response:
    page = _asset("review.html").replace("/*CSS*/", _asset("review.css")).replace("/*JS*/", _asset("review.js"))
    return web.Response(text=page, content_type="text/html")


async def episodes(request: web.Request) -> web.Response:
    data, store = request.app[DATA_KEY], request.app[STORE_KEY]
    status = store.status()
    edits = store.edits()
    rows = []
    for eid, entry in data.entries.items():
        lab = status.get(eid)
        rows.append({**entry.row, "status": lab.action if lab else "unreviewed",
                     "reviewer": lab.reviewer if lab else None, "reason": lab.reason if lab else None,
                     "edited_turns": sorted(edits.get(eid, {}))})
    return web.json_response({"rows": rows, "reasons": list(REJECT_REASONS), "notes": data.notes,
                              "files": [str(f) for f in data.files], "labels": store.path,
                              "reviewer": request.app[REVIEWER_KEY],
                              "agreement": agreement((e.record for e in data.entries.values()), store.verdicts())})


async def episode(request: web.Request) -> web.Response:
    data, store = request.app[DATA_KEY], request.app[STORE_KEY]
    entry = data.get(request.match_info["eid"])
    eid = entry.record.trajectory.episode_id
    view = episode_view(entry, store.edits(eid).get(eid, {}), request.app[CTX_KEY])
    lab = store.status().get(eid)
    view["status"] = lab.model_dump() if lab else None
    view["history"] = [r.model_dump() for r in store.labels(eid)]
    view["siblings"] = [e for e, other in data.entries.items() if other.row["group"] == entry.row["group"] and e != eid]
    return web.json_response(view)


async def label(request: web.Request) -> web.Response:
    data, store = request.app[DATA_KEY], request.app[STORE_KEY]
    entry = data.get(request.match_info["eid"])
    body = await _json(request)
    action = body.get("action")
    if action not in VERDICTS:
        raise TrajgymError(f"unknown action {action!r}: one of {', '.join(VERDICTS)}")
    lab = store.add(entry.record.trajectory.episode_id, entry.source, action, reviewer=_reviewer(request, body),
                    reason=body.get("reason"))
    return web.json_response({"label": lab.model_dump()})


async def undo(request: web.Request) -> web.Response:
    data, store = request.app[DATA_KEY], request.app[STORE_KEY]
    entry = data.get(request.match_info["eid"])
    body = await _json(request)
    lab = store.undo(entry.record.trajectory.episode_id, reviewer=_reviewer(request, body))
    return web.json_response({"undone": lab.model_dump() if lab else None})


async def edit(request: web.Request) -> web.Response:
    data, store = request.app[DATA_KEY], request.app[STORE_KEY]
    entry = data.get(request.match_info["eid"])
    body = await _json(request)
    turn, base = body.get("turn"), body.get("base_version", 0)
    if not isinstance(turn, int) or not isinstance(base, int):
        raise TrajgymError("an edit names its turn and the version it was made from (integers)")
    message = edited_message(entry, turn, body)
    lab = store.edit(entry.record.trajectory.episode_id, entry.source, turn, message,
                     reviewer=_reviewer(request, body), base_version=base, reason=body.get("reason"))
    return web.json_response({"edit": lab.model_dump()})


async def scorer_agreement(request: web.Request) -> web.Response:
    data, store = request.app[DATA_KEY], request.app[STORE_KEY]
    return web.json_response(agreement((e.record for e in data.entries.values()), store.verdicts()))


def make_app(target: str | Path, *, labels: str | Path | None = None, token: str = "",
             reviewer: str = "reviewer") -> web.Application:
    """The app over ``target`` (a scored file or a loop run folder), its labels in ``labels``
    (default: beside the data, see :func:`~trajgym.review.data.data_files`)."""
    paths, default_labels = data_files(target)
    data = ReviewData.load(paths)
    store = LabelStore(labels or default_labels)
    app = web.Application(middlewares=[_guard], client_max_size=4 * 1024 * 1024)
    app[DATA_KEY], app[STORE_KEY], app[CTX_KEY] = data, store, ScoringContext()
    app[TOKEN_KEY], app[REVIEWER_KEY] = token, reviewer
    app.router.add_get("/", index)
    app.router.add_get("/api/episodes", episodes)
    app.router.add_get("/api/episodes/{eid}", episode)
    app.router.add_post("/api/episodes/{eid}/label", label)
    app.router.add_post("/api/episodes/{eid}/undo", undo)
    app.router.add_post("/api/episodes/{eid}/edit", edit)
    app.router.add_get("/api/agreement", scorer_agreement)

    async def _close(_: web.Application) -> None:
        store.close()

    app.on_cleanup.append(_close)
    return app


def token_for(host: str) -> str:
    """No token on the loopback interface; a fresh one anywhere else."""
    return "" if host in LOOPBACK else secrets.token_urlsafe(18)
