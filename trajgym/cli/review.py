"""``trajgym review FILE_OR_RUN_DIR``: the review page (:mod:`trajgym.review.app`) until Ctrl-C."""

from __future__ import annotations

import argparse
import getpass
from typing import Any

from rich.console import Console
from rich.markup import escape


def add_review_parser(sub: Any) -> None:
    p = sub.add_parser("review", help="review episodes in a web page: accept, reject, flag, edit; labels become data",
                       description="Serve a local page over scored files or a loop run folder where people accept, "
                                   "reject (with a reason), flag the simulator, skip, undo and edit learner turns, "
                                   "keyboard first. Labels go to SQLite beside the data; `trajgym export --labels` "
                                   "makes training data of them. Needs the review extra (aiohttp, jsonschema).")
    p.add_argument("target", metavar="FILE_OR_RUN_DIR", help="a scored file, or a `trajgym loop` run folder")
    p.add_argument("--labels", metavar="LABELS.sqlite",
                   help="where labels go (default: beside the data: FILE's <stem>.labels.sqlite, RUN_DIR/labels.sqlite)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; elsewhere a token is "
                                                       "required, printed in the URL)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--reviewer", default=None, help="the name labels are saved under (default: your user name; the "
                                                    "page can change it)")


def review_command(args: argparse.Namespace, console: Console) -> int:
    try:
        from aiohttp import web
    except ImportError:
        from trajgym.errors import TrajgymError

        raise TrajgymError("the review page needs aiohttp and jsonschema: pip install 'trajgym[review]'") from None
    from trajgym.review.app import LOOPBACK, make_app, token_for

    token = token_for(args.host)
    reviewer = args.reviewer or _user()
    app = make_app(args.target, labels=args.labels, token=token, reviewer=reviewer)
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{host}:{args.port}/" + (f"?token={token}" if token else "")
    console.print(f"reviewing {escape(args.target)} as {escape(reviewer)}: open [bold]{escape(url)}[/] "
                  f"(Ctrl-C stops){'' if args.host in LOOPBACK else ' — the token is needed: keep the URL private'}",
                  highlight=False, soft_wrap=True)
    web.run_app(app, host=args.host, port=args.port, print=None)
    return 0


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "reviewer"
