"""Simple diversity figures of a set of trajectories: how many distinct decision chains the agent
took, and how varied its actions are (Shannon entropy of action n-grams).

A decision chain is the sequence of the agent's actions in one episode, each reduced to a token:
the name of each tool it called, ``say`` for a message, ``malformed`` for an action that could not
be read. Arguments and wording are left out, so two episodes that took the same path with
different words count as one chain.

NOTE(merge): the quality filters bring their own diversity figures (embedding spread); the report
takes any function of this signature (:data:`trajgym.report.aggregate.DiversityFn`).

Example::

    >>> entropy_bits(["a", "b", "a", "b"])
    1.0
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence

from trajgym.trajectory.schema import Trajectory

NGRAMS = (1, 2, 3)


def decision_chain(traj: Trajectory, role: str = "support") -> tuple[str, ...]:
    """The tokens of ``role``'s actions in order: tool names, ``say``, ``malformed``."""
    tokens: list[str] = []
    for step in traj.steps:
        if step.role != role:
            continue
        if step.error:
            tokens.append("malformed")
        tokens.extend(tc.name for tc in step.tool_calls)
        if step.message is not None:
            tokens.append("say")
    return tuple(tokens)


def ngrams(chain: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """The n-grams of one chain (none when it is shorter than ``n``)."""
    return [tuple(chain[i:i + n]) for i in range(len(chain) - n + 1)]


def entropy_bits(items: Iterable[Hashable]) -> float:
    """Shannon entropy, in bits, of the empirical distribution of ``items`` (0 for none)."""
    counts = Counter(items)
    total = sum(counts.values())
    return sum(c / total * math.log2(total / c) for c in counts.values()) if total else 0.0


def simple_diversity(trajectories: Sequence[Trajectory], role: str = "support") -> dict[str, float]:
    """Distinct decision chains (count and share of episodes) and action n-gram entropies.

    >>> simple_diversity([])["distinct_decision_chains"]
    0
    """
    chains = [decision_chain(t, role) for t in trajectories]
    distinct = len(set(chains))
    figures: dict[str, float] = {
        "episodes": len(chains),
        "distinct_decision_chains": distinct,
        "distinct_chain_share": distinct / len(chains) if chains else 0.0,
    }
    for n in NGRAMS:
        figures[f"action_{n}gram_entropy_bits"] = entropy_bits(g for c in chains for g in ngrams(c, n))
    return figures
