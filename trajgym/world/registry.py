"""The registry of domains, imported lazily by name."""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from trajgym.errors import UnknownDomainError
from trajgym.world.base import Domain

DOMAINS: dict[str, str] = {
    "customer_support": "trajgym.world.customer_support:DOMAIN",
    "workflow": "trajgym.world.workflow:DOMAIN",
    "tool_use": "trajgym.world.tool_use:DOMAIN",
}


def get_domain(name: str) -> Domain[Any, Any]:
    """The :class:`Domain` called ``name``; a clear error with a suggestion otherwise."""
    target = DOMAINS.get(name)
    if target is None:
        close = difflib.get_close_matches(name, DOMAINS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise UnknownDomainError(
            f"unknown domain '{name}'{hint} (known: {', '.join(sorted(DOMAINS))})"
        )
    module, attr = target.split(":")
    domain: Domain[Any, Any] = getattr(importlib.import_module(module), attr)
    return domain
