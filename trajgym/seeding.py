"""Stable seeds. Never Python's salted ``hash()``: the same inputs give the same seed everywhere."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

SEED_BITS = 63


def stable_seed(*parts: object) -> int:
    """Derive a 63-bit seed from any printable parts, stable across processes and machines.

    >>> stable_seed("scenario", 3) == stable_seed("scenario", 3)
    True
    """
    text = "\x1f".join(repr(p) if not isinstance(p, str) else p for p in parts)
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> (64 - SEED_BITS)


def seeds_after(first: object, *parts: object) -> Callable[[object], int]:
    """``stable_seed(first, *parts, last)`` as a function of ``last``, the other parts hashed once
    (a model agent derives a seed per request from its episode's parts and the turn).

    >>> seeds_after("sampling", 7)(3) == stable_seed("sampling", 7, 3)
    True
    """
    head = "\x1f".join(repr(p) if not isinstance(p, str) else p for p in (first, *parts)) + "\x1f"
    hasher = hashlib.blake2b(head.encode("utf-8"), digest_size=8)

    def seed(last: object) -> int:
        h = hasher.copy()
        h.update((last if isinstance(last, str) else repr(last)).encode("utf-8"))
        return int.from_bytes(h.digest(), "big") >> (64 - SEED_BITS)

    return seed


def rng(*parts: object) -> np.random.Generator:
    """A numpy Generator seeded from ``stable_seed(*parts)``."""
    return np.random.default_rng(stable_seed(*parts))
