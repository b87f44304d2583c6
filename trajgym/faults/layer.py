"""The fault layer: sits between every caller and every tool, and injects declared failures.

Each fault fires deterministically (the nth call of a tool, a window of turns) and/or with a
probability drawn from its own RNG stream under the episode seed, so the same seed injects the
same faults. Every injected fault is returned to the caller as a record, so the trajectory can
tell recovery from luck.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trajgym.scenario.schema import ToolFault
from trajgym.seeding import rng
from trajgym.world.tools import ToolKit, ToolResult

_ERRORS = {
    "service_unavailable": (503, "the {service} service is unavailable, try again later"),
    "internal_error": (500, "internal error in the {service} service"),
    "not_found": (404, "not found"),
    "timeout": (504, "the {service} service did not answer within {ms} ms"),
    "rate_limit": (429, "too many requests to the {service} service; retry after {turns} turns"),
    "outage": (503, "the {service} service is down for maintenance"),
    "permission_denied": (403, "permission denied"),
    "disk_full": (507, "no space left on device"),
    "command_not_found": (127, "command not found"),
    "network_error": (502, "network error: connection reset by peer"),
}
ERROR_KINDS = ("service_unavailable", "internal_error", "not_found", "outage", "permission_denied",
               "disk_full", "command_not_found", "network_error")


@dataclass
class FaultRecord:
    """One injected fault, as stored in the trajectory."""

    index: int
    kind: str
    tool: str | None
    turn: int
    call: int
    applied: bool = False
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "kind": self.kind, "tool": self.tool, "turn": self.turn,
                "call": self.call, "applied": self.applied, "detail": self.detail}


class FaultLayer:
    """Wraps a ToolKit. ``call`` runs a tool, or fails it, as the scenario's faults say."""

    def __init__(self, faults: list[ToolFault], toolkit: ToolKit, seed: int,
                 stale_state: Callable[[], Any] | None = None) -> None:
        self.toolkit = toolkit
        self.specs = toolkit.specs()
        self._faults = [(i, f) for i, f in enumerate(faults)]
        self._rngs: dict[int, np.random.Generator] = {i: rng(seed, "fault", i) for i, _ in self._faults}
        self._calls: dict[str, int] = {}
        self._rate_limited: dict[tuple[int, str], int] = {}
        self._stale_state = stale_state
        self.stale_toolkit: ToolKit | None = None

    def _fires(self, index: int, fault: ToolFault, tool: str, args: dict[str, Any], *, call: int,
               turn: int) -> bool:
        if "*" not in fault.tools() and tool not in fault.tools():
            return False
        if fault.nth_call is not None and call not in fault.calls():
            return False
        if fault.turns is not None and not fault.turns[0] <= turn <= fault.turns[1]:
            return False
        if fault.kind == "stale_read" and self.specs[tool].kind != "read":
            return False
        if fault.args and any(args.get(k) != v for k, v in fault.args.items()):
            return False
        return fault.probability is None or bool(self._rngs[index].random() < fault.probability)

    def call(self, tool: str, args: dict[str, Any], turn: int) -> tuple[ToolResult, list[FaultRecord]]:
        """Call ``tool`` at ``turn``, injecting whatever faults fire. ``args`` are the call's
        arguments as :meth:`ToolKit.validate` returned them."""
        if tool not in self.specs:
            return self.toolkit.call(tool, args), []
        call = self._calls[tool] = self._calls.get(tool, 0) + 1
        records: list[FaultRecord] = []
        latency = 0
        chosen: tuple[int, ToolFault] | None = None
        for index, fault in self._faults:
            until = self._rate_limited.get((index, tool))
            if until is not None and turn <= until:
                records.append(FaultRecord(index, "rate_limit", tool, turn, call, detail={"window_until": until}))
                return self._error(fault, "rate_limit", tool, args), records
            if not self._fires(index, fault, tool, args, call=call, turn=turn):
                continue
            if fault.kind == "latency":
                latency += fault.latency_ms
                records.append(FaultRecord(index, "latency", tool, turn, call, applied=self.specs[tool].kind == "write",
                                           detail={"latency_ms": fault.latency_ms}))
            elif chosen is None:
                chosen = (index, fault)
        if chosen is None:
            result = self.toolkit.invoke(tool, args)
        else:
            index, fault = chosen
            result, record = self._inject(index, fault, tool, args, turn=turn, call=call)
            records.append(record)
        if latency:
            result.meta["latency_ms"] = latency
        return result, records

    def _error(self, fault: ToolFault, kind: str, tool: str, args: dict[str, Any]) -> ToolResult:
        status, template = _ERRORS[kind]
        service = self.toolkit.service_name(tool, args)
        message = fault.message or template.format(service=service, ms=fault.latency_ms or 30000,
                                                   turns=fault.retry_after)
        extra: dict[str, Any] = {"status": status}
        if kind == "rate_limit":
            extra["retry_after_turns"] = fault.retry_after
        return ToolResult.error(kind if kind != "outage" else "service_unavailable", message, **extra)

    def _inject(self, index: int, fault: ToolFault, tool: str, args: dict[str, Any], *, turn: int,
                call: int) -> tuple[ToolResult, FaultRecord]:
        kind = fault.kind
        is_write = self.specs[tool].kind == "write"
        record = FaultRecord(index, kind, tool, turn, call)
        if kind in ERROR_KINDS:
            return self._error(fault, kind, tool, args), record
        if kind == "rate_limit":
            self._rate_limited[(index, tool)] = turn + fault.retry_after - 1
            record.detail = {"retry_after_turns": fault.retry_after}
            return self._error(fault, kind, tool, args), record
        if kind == "timeout":
            if is_write and fault.applied:
                real = self.toolkit.invoke(tool, args)
                record.applied = real.ok
                record.detail = {"effect_applied": real.ok}
            result = self._error(fault, kind, tool, args)
            result.applied = record.applied
            return result, record
        if kind == "stale_read":
            if self.stale_toolkit is None and self._stale_state is not None:
                self.stale_toolkit = type(self.toolkit)(self._stale_state())
            kit = self.stale_toolkit or self.toolkit
            result = kit.invoke(tool, args)
            if result.ok and isinstance(result.content, dict):
                result.content = {**result.content, "_meta": {"source": "cache", "stale": True}}
            return result, record
        result = self.toolkit.invoke(tool, args)
        record.applied = result.applied
        if not result.ok:
            return result, record
        if kind == "malformed":
            text = json.dumps(result.content)
            result.content = text[: max(1, len(text) // 2)]
            record.detail = {"truncated_at": len(result.content)}
        elif kind == "partial":
            result.content = _partial(result.content, self._rngs[index])
        return result, record


def _partial(content: Any, gen: np.random.Generator) -> Any:
    if isinstance(content, dict):
        keys = sorted(content)
        keep = {k for k in keys if gen.random() < 0.5}
        out = {k: content[k] for k in keys if k in keep}
        out["_meta"] = {"partial": True, "missing": sorted(set(keys) - keep)}
        return out
    if isinstance(content, list):
        return content[: len(content) // 2]
    return content
