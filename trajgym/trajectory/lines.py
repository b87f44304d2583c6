"""Reading JSON Lines files of any data product, with every bad line located and explained.

Every reader (trajectories, scored records, filter sidecars) goes through :func:`numbered_lines`
and :func:`bad_line`, so a binary file passed by mistake, a JSON value that is not an object, or a
line cut short by a killed job gives one message ``FILE:LINE: what is wrong; what to do``
(:class:`~trajgym.errors.TrajectoryFileError`), never a ``UnicodeDecodeError`` traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from trajgym import jsonio
from trajgym.errors import TrajectoryFileError

TORN_HINT = ("the job that wrote it was killed mid-line: `trajgym rollout --resume` moves the piece aside "
             "(or pass --skip-torn to leave it out)")
"""What to do about a torn last line of a trajectory file (a job appends lines; a killed one leaves a piece)."""

REWRITE_HINT = ("the file was cut short after it was written (a partial copy? a full disk?): write it again "
                "with the command that made it")
"""What to do about a torn last line of a file written whole (scored records, a filter's output)."""


def open_lines(path: str | Path, what: str = "JSON Lines") -> Iterator[tuple[int, bytes, bool]]:
    """(line number, the line's bytes without its newline, whether it is the last line and has no
    newline) for every non-blank line of ``path``. A file that cannot be opened is an error naming
    it (and ``what`` it should have been)."""
    p = Path(path)
    if p.is_dir():
        raise TrajectoryFileError(p, 0, f"is a folder, not a {what} file")
    try:
        fh = p.open("rb")
    except OSError as exc:
        raise TrajectoryFileError(p, 0, f"cannot open the {what} file: {exc.strerror}") from None
    with fh:
        ahead = fh.readline()
        n = 0
        while ahead:
            line, ahead = ahead, fh.readline()
            n += 1
            body = line.rstrip(b"\r\n")
            if body.strip():
                yield n, body, not ahead and not line.endswith(b"\n")


def bad_line(raw: bytes, torn: bool, what: str, torn_hint: str = TORN_HINT) -> str:
    """Why ``raw`` is not a ``what`` line (a JSON object), in words a user can act on; "" if it is one.
    ``torn_hint`` says what to do about a torn last line (``torn``: no newline) that is not JSON."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}): is this a binary "
                f"file? Expected a {what} file (JSON Lines)")
    try:
        value: Any = json.loads(text)
    except RecursionError:
        return f"a JSON value nested too deeply to read: expected one {what} (a JSON object) per line"
    except ValueError as exc:
        if torn:
            return f"the last line is cut short ({len(raw)} bytes, no newline): {torn_hint}"
        if isinstance(exc, json.JSONDecodeError):  # "Unterminated string starting at" + " at column 7"
            why = f"{exc.msg.removesuffix(' at')} at column {exc.colno}"
        else:
            why = str(exc)
        return f"not JSON ({why}): expected one {what} (a JSON object) per line"
    if not isinstance(value, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")
        return f"a JSON value that is not an object ({kind}): expected one {what} (a JSON object) per line"
    return ""


def decode_object(path: str | Path, n: int, raw: bytes, torn: bool, what: str) -> dict[str, Any]:
    """Line ``n`` of ``path`` decoded as a JSON object, or a located :class:`TrajectoryFileError`."""
    try:
        raw.decode("utf-8")  # strictly: a binary file is an error, never text with replaced characters
        value = jsonio.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        value = None
    if not isinstance(value, dict):
        raise TrajectoryFileError(path, n, bad_line(raw, torn, what) or f"not a {what}")
    return value
