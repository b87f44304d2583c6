"""JSON on the hot paths: orjson, with the standard library for what orjson refuses."""

from __future__ import annotations

import json
import math
import re
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trajgym import jsonio


def test_dumps_is_compact_json_that_reads_back_the_same() -> None:
    obj = {"a": [1, 2.5, 1e-05, None, True], "é": "naïve ☃", "n": {"x": -3}}
    out = jsonio.dumps(obj)
    assert json.loads(out) == obj
    assert b" " not in out.replace(" ☃".encode(), b"")
    assert jsonio.dumps_line(obj) == out + b"\n"


@pytest.mark.parametrize("obj", [{"big": 2**70}, {1: "int key"}, {"lone": "\ud800"}])
def test_what_orjson_refuses_falls_back_to_the_standard_library(obj: dict[object, object]) -> None:
    out = jsonio.dumps(obj)
    out.decode("utf-8")  # always valid UTF-8: a lone surrogate is escaped
    assert json.loads(out) == json.loads(json.dumps(obj))
    assert jsonio.dumps_line(obj) == out + b"\n"


def test_non_finite_floats_are_written_as_null() -> None:
    assert json.loads(jsonio.dumps({"x": math.nan, "y": -math.inf})) == {"x": None, "y": None}


def test_loads_reads_what_json_loads_reads() -> None:
    assert jsonio.loads(b'{"a": [1, "\\u00e9"]}') == {"a": [1, "é"]}
    assert jsonio.loads('{"a": 1}') == {"a": 1}
    assert math.isinf(jsonio.loads(b'{"lp": -Infinity}')["lp"])  # not JSON, but servers send it
    assert jsonio.loads(b'{"a": "\xff"}') == {"a": "\ufffd"}  # invalid UTF-8 is replaced
    with pytest.raises(ValueError):
        jsonio.loads(b"<html>bad gateway</html>")


def test_kept_results_are_their_own_size() -> None:
    tracemalloc.start()
    try:
        kept = [jsonio.dumps({"role": "user", "content": "hi"}) for _ in range(100)]
        size, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # orjson's own result holds a 4 KB buffer however short it is; a kept history has many
    assert len(kept) == 100 and size < 100 * 200


@pytest.mark.parametrize("text", ['{"id": 123456789012345678901234567890}', '{"x": 1e400}',
                                  '[9223372036854775807, 9999999999999999999, 18446744073709551615]',
                                  '[18446744073709551616, -9223372036854775808, -9223372036854775809]',
                                  '{"s": -9999999999999999999, "t": 0.12345678901234567890123}', '{"s": "\\ud800"}',
                                  '{"a": 1, "a": 2}', '{"f": 0.1, "n": -0}', '[1, NaN]'])
def test_loads_decodes_exactly_as_json_loads(text: str) -> None:
    assert repr(jsonio.loads(text)) == repr(json.loads(text))
    assert repr(jsonio.loads(text.encode())) == repr(json.loads(text))


@pytest.mark.parametrize("text", ['{"a": 1,}', "[" * 5000 + "]" * 5000, '{"a": "x\x01"}'])
def test_loads_fails_as_json_loads_fails(text: str) -> None:
    with pytest.raises((ValueError, RecursionError)) as expected:
        json.loads(text)
    with pytest.raises(expected.type, match=re.escape(str(expected.value))):
        jsonio.loads(text)


def test_loads_without_the_look_for_big_ints_reads_them_as_orjson_does() -> None:
    text = b'{"id": 123456789012345678901234567890, "ok": [1, 2]}'
    assert jsonio.loads(text, big_ints=False) == {"id": 1.2345678901234568e29, "ok": [1, 2]}
    assert jsonio.loads(b'[1, NaN]', big_ints=False)[0] == 1  # what orjson refuses still decodes


def test_a_63_bit_seed_is_decoded_by_orjson() -> None:
    # every trajectory holds sampling seeds of 19 digits: they fit orjson's 64 bits, so the fast path reads them
    assert not jsonio._long_digits(b'{"seed": 9223372036854775807, "n": -922337203685477580}')
    assert jsonio._long_digits(b'{"n": 18446744073709551616}') and jsonio._long_digits(b"[-9223372036854775809]")
    assert jsonio._long_digits('{"n": -9223372036854775809}') and not jsonio._long_digits('[9999999999999999999]')


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=4) | st.integers() | st.booleans() | st.none() | st.floats(), inner,
                      max_size=3),
    max_leaves=15)


@given(json_values)
@settings(max_examples=300, deadline=None)
def test_text_is_json_dumps(obj: object) -> None:
    assert jsonio.text(obj) == json.dumps(obj)


def test_text_fails_as_json_dumps_fails() -> None:
    loop: list[object] = []
    loop.append({"x": loop})
    for obj in (loop, {"x": object()}, {(1, 2): 3}, [b"bytes"]):
        with pytest.raises((ValueError, TypeError)) as theirs:
            json.dumps(obj)
        with pytest.raises(type(theirs.value), match=re.escape(str(theirs.value))):
            jsonio.text(obj)
