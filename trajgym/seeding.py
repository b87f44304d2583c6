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
    return _seed(hashlib.blake2b(_text(parts).encode("utf-8"), digest_size=8))


def _text(parts: tuple[object, ...]) -> str:
    """What a seed hashes: the parts, strings as they are and others as their ``repr``, joined by \\x1f."""
    return "\x1f".join(p if isinstance(p, str) else repr(p) for p in parts)


def _seed(hasher: hashlib.blake2b) -> int:
    return int.from_bytes(hasher.digest(), "big") >> (64 - SEED_BITS)


def seeds_after(first: object, *parts: object) -> Callable[[object], int]:
    """``stable_seed(first, *parts, last)`` as a function of ``last``, the other parts hashed once
    (a model agent derives a seed per request from its episode's parts and the turn).

    >>> seeds_after("sampling", 7)(3) == stable_seed("sampling", 7, 3)
    True
    """
    hasher = hashlib.blake2b((_text((first, *parts)) + "\x1f").encode("utf-8"), digest_size=8)

    def seed(last: object) -> int:
        h = hasher.copy()
        h.update(_text((last,)).encode("utf-8"))
        return _seed(h)

    return seed


def rng(*parts: object) -> np.random.Generator:
    """A numpy Generator seeded from ``stable_seed(*parts)``."""
    return np.random.default_rng(stable_seed(*parts))
