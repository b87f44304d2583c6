"""Combining scores into one total, ranking the trials of a scenario variation, and pass^k.

    >>> combine({"outcome": 1.0, "efficiency": 0.5}, {"outcome": 2.0, "efficiency": 1.0}, veto=False)
    0.8333333333333334
    >>> ranks([0.9, 0.2, 0.9, 0.5])
    [1, 4, 1, 3]
    >>> pass_hat_k(successes=2, trials=4, k=2)
    0.16666666666666666
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from math import comb


def combine(scores: Mapping[str, float | None], weights: Mapping[str, float], *, veto: bool) -> float:
    """The weighted mean of the scores that apply (None = not applicable); 0 when any scorer vetoed.

    Scorers with weight 0 are reported but not counted; with no weight left the total is 0.
    """
    if veto:
        return 0.0
    num = den = 0.0
    for name, value in scores.items():
        weight = weights.get(name, 0.0)
        if value is None or weight <= 0:
            continue
        num += weight * value
        den += weight
    return num / den if den > 0 else 0.0


def ranks(totals: list[float]) -> list[int]:
    """Competition ranks, best first: equal totals share a rank (1, 1, 3, ...)."""
    order = sorted(totals, reverse=True)
    first: dict[float, int] = {}
    for i, value in enumerate(order, 1):
        first.setdefault(value, i)
    return [first[t] for t in totals]


def pass_hat_k(successes: int, trials: int, k: int) -> float:
    """pass^k of one variation: the chance that k trials drawn without replacement all succeed,
    C(successes, k) / C(trials, k) (tau-bench's estimator). ``k`` must not exceed ``trials``."""
    if not 1 <= k <= trials:
        raise ValueError(f"pass^k needs 1 <= k <= trials (k={k}, trials={trials})")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes ({successes}) must be between 0 and trials ({trials})")
    return comb(successes, k) / comb(trials, k)


def pass_hat_k_by_scenario(outcomes: Iterable[tuple[str, str, bool]]) -> dict[str, dict[int, float]]:
    """pass^k per scenario from (scenario_id, group, success) triples: for each k up to the fewest
    trials of the scenario's variations, the mean over its variations of :func:`pass_hat_k`."""
    groups: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for scenario, group, success in outcomes:
        groups[scenario][group].append(success)
    out: dict[str, dict[int, float]] = {}
    for scenario, variations in sorted(groups.items()):
        kmax = min(len(v) for v in variations.values())
        out[scenario] = {
            k: sum(pass_hat_k(sum(v), len(v), k) for v in variations.values()) / len(variations)
            for k in range(1, kmax + 1)
        }
    return out
