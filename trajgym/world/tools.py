"""Typed tools: a method's signature and docstring are its schema.

Decorate a method of a :class:`ToolKit` with :func:`tool` and it becomes a tool whose OpenAI
function-calling schema is generated from its type hints and its Google-style docstring. Each tool
is tagged ``read`` or ``write``. Calling a tool never raises: bad arguments, a
:class:`~trajgym.errors.ToolCallError` or any other exception comes back as an error result.
"""

from __future__ import annotations

import inspect
import json
import logging
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

import docstring_parser
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from trajgym.errors import ToolCallError

log = logging.getLogger(__name__)

ToolKind = Literal["read", "write"]
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class ToolMeta:
    kind: ToolKind
    handoff: str | None = None
    verify: str | None = None


def tool(kind: ToolKind, *, handoff: str | None = None, verify: str | None = None) -> Callable[[F], F]:
    """Mark a ToolKit method as a tool.

    Args:
        kind: ``read`` (no effect on the world) or ``write``.
        handoff: a role that takes the turn after a successful call (e.g. ``supervisor``).
        verify: a read tool that shows whether this write took effect (used after a timeout).
    """

    def mark(fn: F) -> F:
        fn.__trajgym_tool__ = ToolMeta(kind, handoff, verify)  # type: ignore[attr-defined]
        return fn

    return mark


@dataclass(frozen=True)
class ToolSpec:
    """Everything known about one tool, built once per ToolKit class."""

    name: str
    kind: ToolKind
    description: str
    args_model: type[BaseModel]
    schema: dict[str, Any]
    handoff: str | None = None
    verify: str | None = None


@dataclass
class ToolResult:
    """What a tool call returned. ``content`` is JSON-able; on error it is ``{"error": {...}}``."""

    ok: bool
    content: Any
    error_type: str | None = None
    applied: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def error(cls, error_type: str, message: str, **extra: Any) -> ToolResult:
        return cls(False, {"error": {"type": error_type, "message": message, **extra}}, error_type)


def whole_result(ok: bool, content: Any) -> bool:
    """Whether a tool result succeeded and is whole: not cut-off JSON text, not marked ``_meta``
    (a stale cache, missing fields) by the fault layer. Text that is not JSON (a file) is whole."""
    if not ok:
        return False
    if isinstance(content, str):
        if not content.lstrip().startswith(("{", "[")):
            return True
        try:
            json.loads(content)
        except ValueError:
            return False
        return True
    return not (isinstance(content, dict) and content.get("_meta"))


def _strip_titles(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strip_titles(v) for k, v in schema.items() if k != "title"}
    if isinstance(schema, list):
        return [_strip_titles(v) for v in schema]
    return schema


def build_spec(name: str, fn: Callable[..., Any], meta: ToolMeta) -> ToolSpec:
    """Build the argument model and the OpenAI schema of one tool function."""
    doc = docstring_parser.parse(inspect.getdoc(fn) or "")
    if not doc.short_description:
        raise TypeError(f"tool {name!r} needs a docstring: its first line is the tool description")
    param_docs = {p.arg_name: p.description or "" for p in doc.params}
    hints = typing.get_type_hints(fn)
    fields: dict[str, Any] = {}
    for pname, param in inspect.signature(fn).parameters.items():
        if pname == "self":
            continue
        if pname not in hints:
            raise TypeError(f"tool {name!r}: parameter {pname!r} needs a type hint")
        if pname not in param_docs:
            raise TypeError(f"tool {name!r}: parameter {pname!r} is not described in Args:")
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[pname] = (hints[pname], Field(default, description=param_docs[pname]))
    model: type[BaseModel] = create_model(
        f"{name}_args", __config__=ConfigDict(extra="forbid"), **fields
    )
    params = _strip_titles(model.model_json_schema())
    params.setdefault("properties", {})
    params["additionalProperties"] = False
    description = doc.short_description
    if doc.long_description:
        description += "\n" + doc.long_description
    schema = {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": params},
    }
    return ToolSpec(name, meta.kind, description, model, schema, meta.handoff, meta.verify)


class ToolKit:
    """Base of a domain's tools. Subclasses define ``@tool`` methods working on ``self.state``."""

    _specs: ClassVar[dict[str, ToolSpec]]

    def __init__(self, state: Any) -> None:
        self.state = state
        self.turn = 0  # the env's turn counter, set before every call (deadlines, clocks)

    def service_name(self, tool: str, args: dict[str, Any]) -> str:
        """The system a call goes to, as error messages name it (default: from the tool name)."""
        return tool.split("_", 1)[-1]

    def finalize(self) -> None:
        """Called once when the episode ends, before the goal is checked: a domain can record
        in ``state`` what only its resources know (e.g. the result of a check script)."""

    def close(self) -> None:
        """Free the toolkit's resources (a sandbox, say). Idempotent."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        specs: dict[str, ToolSpec] = {}
        for klass in reversed(cls.__mro__):
            for attr, fn in vars(klass).items():
                meta = getattr(fn, "__trajgym_tool__", None)
                if isinstance(meta, ToolMeta):
                    specs[attr] = build_spec(attr, fn, meta)
        cls._specs = specs

    @classmethod
    def specs(cls) -> dict[str, ToolSpec]:
        return cls._specs

    @classmethod
    def validate(cls, name: str, args: Any) -> dict[str, Any] | ToolResult:
        """The arguments of a call to ``name``, validated and with defaults filled in; or the
        error result the caller gets for an unknown tool or bad arguments."""
        spec = cls._specs.get(name)
        if spec is None:
            return ToolResult.error("unknown_tool", f"there is no tool named {name!r}")
        if not isinstance(args, dict):
            return ToolResult.error("invalid_arguments", f"arguments of {name} must be a JSON object")
        try:
            return dict(iter(spec.args_model.model_validate(args)))  # iter: dict(model) probes for .keys(), slowly
        except ValidationError as exc:
            detail = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.errors()
            )
            return ToolResult.error("invalid_arguments", f"bad arguments for {name}: {detail}")

    def call(self, name: str, args: Any) -> ToolResult:
        """Call tool ``name``. Never raises: every failure is an error result."""
        checked = self.validate(name, args)
        if isinstance(checked, ToolResult):
            return checked
        return self.invoke(name, checked)

    def invoke(self, name: str, checked: dict[str, Any]) -> ToolResult:
        """Call tool ``name`` with arguments :meth:`validate` already returned (no second
        validation on the hot path). Never raises: a failing tool is an error result."""
        spec = self._specs[name]
        try:
            content = getattr(self, name)(**checked)
        except ToolCallError as exc:
            return ToolResult.error(exc.error_type, str(exc))
        except Exception as exc:  # a bug in a tool must not crash the episode
            log.exception("tool %s raised", name)
            return ToolResult.error("internal_error", f"{type(exc).__name__}: {exc}")
        return ToolResult(True, content, applied=spec.kind == "write")

    @staticmethod
    def effect_visible(tool: str, args: dict[str, Any], read: Any) -> bool:
        """Whether the result of ``tool``'s verify read shows that the write took effect.

        Domains override this for their write tools; the default knows nothing and says no.
        """
        return False
