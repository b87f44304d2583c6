"""The registry of domains, imported lazily by name."""

from __future__ import annotations

from typing import Any

from trajgym.errors import UnknownDomainError
from trajgym.registry import lookup, resolve
from trajgym.world.base import Domain

DOMAINS: dict[str, str] = {
    "customer_support": "trajgym.world.customer_support:DOMAIN",
    "workflow": "trajgym.world.workflow:DOMAIN",
    "tool_use": "trajgym.world.tool_use:DOMAIN",
}


def get_domain(name: str) -> Domain[Any, Any]:
    """The :class:`Domain` called ``name``; a clear error with a suggestion otherwise."""
    domain: Domain[Any, Any] = resolve(lookup(DOMAINS, name, what="domain", error=UnknownDomainError))
    return domain
