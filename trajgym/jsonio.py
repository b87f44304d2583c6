"""JSON on the hot paths of a batch job: trajectory lines, model requests and responses.

orjson encodes a 25 KB trajectory about 10x faster than the standard library and decodes a model
answer about 3x faster; at 1,000 episodes in flight the standard library's JSON was about a
quarter of the client's CPU time. What orjson refuses falls back to the standard library, so nothing that encoded
or decoded before fails now: integers beyond 64 bits, non-string keys and lone surrogates when
encoding (the fallback escapes what is not ASCII, so the output is always valid UTF-8);
``NaN``/``Infinity`` tokens, lone surrogates and invalid UTF-8 when decoding, and integers beyond
64 bits, which orjson would read as floats. Decoding gives what ``json.loads`` gives.

The output is compact JSON (no spaces) in UTF-8. It differs from ``json.dumps`` only in spacing, in
float spelling (``1e-05`` is ``0.00001``; the same float) and in non-finite floats, which JSON
cannot represent: they are written as ``null``. Text that a model or an agent sees (observations,
tool results, actions) is not encoded by orjson: its spelling is the env's, ``json.dumps``'s
(:func:`text`).
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(obj: Any) -> bytes:
    """``obj`` as compact JSON, UTF-8 encoded (ASCII with escapes when orjson refuses it).

    orjson's result keeps the buffer it was encoded into (4 KB or more, however short the JSON:
    4 KB per message of a kept history, 1,000 episodes in flight), so what it returns is copied
    to its own size: the result may be kept. :func:`dumps_line` is the transient form."""
    try:
        return memoryview(orjson.dumps(obj)).tobytes()
    except TypeError:
        return _fallback(obj)


def dumps_line(obj: Any) -> bytes:
    """``obj`` as one line of JSON Lines (compact JSON and a newline), to write out at once."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        return _fallback(obj) + b"\n"


_C_MAKE_ENCODER = getattr(json.encoder, "c_make_encoder", None)  # CPython's C encoder (json.dumps uses it)
_TEXT_ENCODER = (_C_MAKE_ENCODER(None, json.JSONEncoder().default, json.encoder.encode_basestring_ascii, None,
                                 ": ", ", ", False, False, True)
                 if _C_MAKE_ENCODER is not None else None)


def text(obj: Any) -> str:
    """``json.dumps(obj)``: the same text, errors included, for the messages agents and envs exchange
    (an action, a tool's result), whose spelling is the env's. ``json.dumps`` builds its C encoder
    anew at every call, half the time of encoding a short message; this one is built once. (It keeps
    no record of the containers it is in: a cycle ends in a RecursionError, and ``json.dumps``
    then reports it as its own error.)"""
    if _TEXT_ENCODER is None or isinstance(obj, str):
        return json.dumps(obj)
    try:
        return "".join(_TEXT_ENCODER(obj, 0))
    except (RecursionError, ValueError, TypeError):
        return json.dumps(obj)  # raises as json.dumps does


def _fallback(obj: Any) -> bytes:
    # what orjson refuses (orjson.JSONEncodeError is a TypeError): big ints, non-str keys, lone surrogates
    return json.dumps(obj, separators=(",", ":")).encode("ascii")


_DIGIT_MARKS = bytes(0x31 if 0x30 <= b <= 0x39 else b if b == 0x2D else 0x20 for b in range(256))  # digits -> "1"
_LONG_RUN = b"1" * 20
_LONG_NEGATIVE = b"-" + b"1" * 19


def _long_digits(data: bytes | str) -> bool:
    """Whether ``data`` may hold an integer that orjson reads as a float: one beyond 64 bits, that
    is 20 digits in a row, or ``-`` and 19 digits (below -2**63). A 19-digit positive integer (a
    63-bit seed, say) fits orjson's unsigned 64 bits and is read exactly."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")  # and the bytes' scan: 9x faster than a regex
    marked = data.translate(_DIGIT_MARKS)
    return marked.find(_LONG_RUN) >= 0 or marked.find(_LONG_NEGATIVE) >= 0


def loads(data: bytes | str, *, big_ints: bool = True) -> Any:
    """Decode JSON text as ``json.loads`` does, errors included (``ValueError``, ``RecursionError``).

    orjson decodes unless the text may hold an integer beyond 64 bits (which orjson reads as a
    float: see :func:`_long_digits`) or orjson refuses it; then the standard library decodes. ``big_ints=False`` skips
    that look for long integers (for text that holds none worth keeping exact, such as a model's
    answer: the look takes a third of the time of decoding it)."""
    if not (big_ints and _long_digits(data)):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    return json.loads(text)
