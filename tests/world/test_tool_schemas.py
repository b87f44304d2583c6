"""Tool schemas come from signatures and docstrings; calling a tool never raises."""

from __future__ import annotations

from typing import Any, Literal

import pytest

from trajgym.errors import ToolCallError
from trajgym.world.control import ControlTools
from trajgym.world.customer_support import SupportTools
from trajgym.world.tools import ToolKit, tool


class Kit(ToolKit):
    @tool("read")
    def lookup(self, key: str, mode: Literal["fast", "slow"] = "fast", limit: int | None = None) -> dict[str, Any]:
        """Look a key up.

        Longer explanation on a second paragraph.

        Args:
            key: The key.
            mode: How hard to look.
            limit: At most this many.
        """
        if key == "boom":
            raise RuntimeError("kaput")
        if key == "refuse":
            raise ToolCallError("not allowed", error_type="forbidden")
        return {"key": key, "mode": mode, "limit": limit}

    @tool("write", handoff="supervisor", verify="lookup")
    def store(self, key: str) -> str:
        """Store a key.

        Args:
            key: The key.
        """
        return key


def test_schema_is_openai_function_json() -> None:
    schema = Kit.specs()["lookup"].schema
    fn = schema["function"]
    assert schema["type"] == "function" and fn["name"] == "lookup"
    assert fn["description"].startswith("Look a key up.") and "second paragraph" in fn["description"]
    params = fn["parameters"]
    assert params["type"] == "object" and params["additionalProperties"] is False
    assert params["required"] == ["key"]
    assert params["properties"]["key"] == {"type": "string", "description": "The key."}
    assert params["properties"]["mode"]["enum"] == ["fast", "slow"]
    assert "title" not in str(params)


def test_tags() -> None:
    specs = Kit.specs()
    assert specs["lookup"].kind == "read" and specs["store"].kind == "write"
    assert specs["store"].handoff == "supervisor" and specs["store"].verify == "lookup"
    support = SupportTools.specs()
    assert {n for n, s in support.items() if s.kind == "write"} >= {"refund_order", "cancel_order", "exchange_item"}
    assert len(support) >= 15 and set(ControlTools.specs()) == {"end_conversation", "request_human", "transfer_to_human"}


@pytest.mark.parametrize(("args", "error_type"), [
    ({"key": 3}, "invalid_arguments"),
    ({}, "invalid_arguments"),
    ({"key": "a", "extra": 1}, "invalid_arguments"),
    ({"key": "a", "mode": "medium"}, "invalid_arguments"),
    ("not a dict", "invalid_arguments"),
    ({"key": "boom"}, "internal_error"),
    ({"key": "refuse"}, "forbidden"),
])
def test_failures_are_error_results(args: Any, error_type: str) -> None:
    result = Kit(None).call("lookup", args)
    assert not result.ok and result.error_type == error_type
    assert result.content["error"]["type"] == error_type and result.content["error"]["message"]


def test_unknown_tool_is_an_error_result() -> None:
    assert Kit(None).call("nope", {}).error_type == "unknown_tool"


def test_defaults_are_filled() -> None:
    result = Kit(None).call("lookup", {"key": "k"})
    assert result.ok and result.content == {"key": "k", "mode": "fast", "limit": None} and not result.applied
    assert Kit(None).call("store", {"key": "k"}).applied


def test_a_tool_without_docstring_is_refused_at_class_creation() -> None:
    with pytest.raises(TypeError, match="needs a docstring"):
        class Bad(ToolKit):
            @tool("read")
            def nothing(self, x: int) -> int:
                return x
    with pytest.raises(TypeError, match="not described"):
        class Bad2(ToolKit):
            @tool("read")
            def something(self, x: int) -> int:
                """Does something."""
                return x
