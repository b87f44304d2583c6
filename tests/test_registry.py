"""One lookup for every registry: the "did you mean" message, the registry's own error, lazy entries."""

from __future__ import annotations

import pytest

from trajgym.errors import TrajgymError, UnknownDomainError
from trajgym.registry import Unknown, lookup, resolve, suggest


def test_suggest_finds_the_close_name_or_none() -> None:
    assert suggest("polcy", ["outcome", "policy"]) == "policy"
    assert suggest("zzz", ["outcome", "policy"]) is None
    assert suggest("bwrp", {"bwrap": 1, "docker": 2}) == "bwrap"
    assert suggest("dock", ["docker"], cutoff=0.9) is None


def test_an_unknown_name_says_what_it_was_the_close_one_and_all_known() -> None:
    registry = {"random": 2, "oracle": 1}
    assert lookup(registry, "oracle", what="agent") == 1
    with pytest.raises(TrajgymError) as info:
        lookup(registry, "oracel", what="agent")
    assert str(info.value) == "unknown agent 'oracel'; did you mean 'oracle'? (known: oracle, random)"
    with pytest.raises(UnknownDomainError, match=r"^unknown domain 'x' \(known: oracle, random\)$"):
        lookup(registry, "x", what="domain", error=UnknownDomainError)


def test_a_registry_keeps_its_own_message() -> None:
    def message(u: Unknown) -> str:
        return f"no {u.what} {u.name!r}; close: {u.close}; all: {'/'.join(u.known)}"

    with pytest.raises(TrajgymError, match=r"^no backend 'bwrp'; close: bwrap; all: bwrap/docker$"):
        lookup({"docker": "", "bwrap": ""}, "bwrp", what="backend", message=message)


def test_lazy_entries_are_imported_when_resolved() -> None:
    assert resolve("trajgym.errors:UnknownDomainError") is UnknownDomainError
    assert resolve(lookup({"customer_support": "trajgym.world.customer_support:DOMAIN"}, "customer_support",
                          what="domain")).name == "customer_support"


def test_the_module_examples_hold() -> None:
    import doctest

    import trajgym.registry

    assert doctest.testmod(trajgym.registry).failed == 0
