"""The collapse monitor: figures of one generation's episodes that fall when a policy trained on its own
data collapses, and the warnings that say which fell, by how much, since when.

A model trained again and again on what it generated loses its tails first: rare behaviours, rare
customers and rare scenarios vanish, its episodes grow alike and repeat the same phrases, long before
the average score moves. :func:`collapse_figures` measures, over a generation's scored episodes:

- the diversity of the decision chains (:func:`trajgym.filters.diversity.diversity`):
  ``distinct_chain_share``, ``action_<n>gram_entropy_bits``, and ``embedding_spread`` with an embedder;
- persona coverage: per customer trait (mood, language, expertise), ``persona_<trait>_values`` (distinct
  values played) and ``persona_<trait>_entropy_bits``;
- ``rare_scenario_success``: success over the episodes of the rarest scenarios (the ``rare`` ids a
  caller names, such as the scenarios with the fewest kept episodes in the training data; by default
  the ``rare_share`` of scenarios with the fewest episodes here), and ``success`` over all;
- ``phrase_repetition``: how much the learner's messages repeat across episodes, ``1 - distinct / total``
  over the word 4-grams of each episode's messages (each counted once per episode): 0 when no two episodes
  share a phrase, ``1 - 1/E`` when all E episodes say the same thing.

:func:`collapse_warnings` compares a generation's figures with a reference generation's (the first, or
the best so far) and returns one message per figure that fell past its threshold: a relative drop of a
figure where more is better, an absolute rise of ``phrase_repetition``.

    >>> collapse_warnings({"distinct_chain_share": 0.8}, {"distinct_chain_share": 0.4}, since="generation 0")
    ['distinct_chain_share fell 50% since generation 0 (0.8 -> 0.4)']
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

from trajgym.filters.diversity import Episodes, diversity, entropy, trajectory_of
from trajgym.filters.embed import Embedder
from trajgym.rollout.runner import PERSONA_TRAITS
from trajgym.trajectory.schema import Trajectory
from trajgym.trajectory.scored import ScoredTrajectory

PHRASE_N = 4
"""Words per phrase of ``phrase_repetition``."""
_WORD = re.compile(r"\w+", re.UNICODE)


class CollapseThresholds(BaseModel):
    """When a figure's change since the reference generation warns."""

    model_config = ConfigDict(extra="forbid")

    max_drop: float = Field(default=0.2, ge=0.0, le=1.0, description=(
        "the relative drop, (reference - now) / reference, of a figure where more is better that warns"))
    max_repetition_rise: float = Field(default=0.15, ge=0.0, le=1.0, description=(
        "the absolute rise of phrase_repetition that warns"))
    min_reference: float = Field(default=1e-9, ge=0.0, description=(
        "figures whose reference is at most this are not compared (nothing to fall from)"))


REPETITION = "phrase_repetition"
"""The one figure where more is worse."""


def phrase_repetition(messages_per_episode: Sequence[Sequence[str]], n: int = PHRASE_N) -> float:
    """``1 - distinct / total`` over the word n-grams of each episode's messages, each n-gram counted once
    per episode (0 with no n-grams)."""
    per_episode: list[set[tuple[str, ...]]] = []
    for messages in messages_per_episode:
        grams: set[tuple[str, ...]] = set()
        for message in messages:
            words = _WORD.findall(message.lower())
            grams.update(tuple(words[i: i + n]) for i in range(len(words) - n + 1))
        per_episode.append(grams)
    total = sum(len(g) for g in per_episode)
    if total == 0:
        return 0.0
    return 1.0 - len(set().union(*per_episode)) / total


def learner_messages(traj: Trajectory, roles: Sequence[str]) -> list[str]:
    """What ``roles`` said in an episode, in order."""
    return [s.message for s in traj.steps if s.role in roles and s.message]


def persona_counts(trajs: Sequence[Trajectory]) -> dict[str, Counter[str]]:
    """Customer personas played, counted per trait (episodes without a persona count nowhere)."""
    counts: dict[str, Counter[str]] = {t: Counter() for t in PERSONA_TRAITS}
    for traj in trajs:
        for agent in traj.agents:
            if agent.role == "customer" and agent.persona:
                for trait in PERSONA_TRAITS:
                    if agent.persona.get(trait) is not None:
                        counts[trait][str(agent.persona[trait])] += 1
    return counts


def rarest(trajs: Sequence[Trajectory], share: float) -> list[str]:
    """The ``share`` of scenarios with the fewest episodes (at least one scenario; ties by id)."""
    counts = Counter(t.scenario_id for t in trajs)
    ordered = sorted(counts, key=lambda sid: (counts[sid], sid))
    return ordered[: max(1, round(share * len(ordered)))] if ordered else []


def collapse_figures(episodes: Episodes, *, embedder: Embedder | None = None, roles: Sequence[str] = ("support",),
                     rare: Sequence[str] | None = None, rare_share: float = 0.25) -> dict[str, float]:
    """The collapse monitor's figures of one generation's ``episodes`` (see the module docstring).
    Success figures need scored records (a bare trajectory counts its outcome's ``success``); episodes
    excluded from scoring (infrastructure errors) count in none of the success figures."""
    trajs = [trajectory_of(e) for e in episodes]
    out = {k: v for k, v in diversity(episodes, embedder=embedder, roles=roles).items()
           if k != "distinct_decision_chains"}
    for trait, counts in persona_counts(trajs).items():
        if counts:
            out[f"persona_{trait}_values"] = float(len(counts))
            out[f"persona_{trait}_entropy_bits"] = entropy(counts)
    verdicts = [(trajectory_of(e).scenario_id, _success(e)) for e in episodes]
    judged = [(sid, ok) for sid, ok in verdicts if ok is not None]
    if judged:
        out["success"] = sum(ok for _, ok in judged) / len(judged)
        tail = set(rare) if rare is not None else set(rarest(trajs, rare_share))
        in_tail = [ok for sid, ok in judged if sid in tail]
        if in_tail:
            out["rare_scenario_success"] = sum(in_tail) / len(in_tail)
    out[REPETITION] = phrase_repetition([learner_messages(t, roles) for t in trajs])
    return out


def _success(episode: Trajectory | ScoredTrajectory) -> bool | None:
    if isinstance(episode, ScoredTrajectory):
        return None if episode.excluded else episode.success
    return episode.outcome.success


def collapse_warnings(reference: Mapping[str, float], current: Mapping[str, float], *, since: str = "the reference",
                      thresholds: CollapseThresholds | None = None) -> list[str]:
    """One message per figure of ``current`` that fell (or, for ``phrase_repetition``, rose) past its
    threshold against ``reference``; figures missing from either side are not compared."""
    th = thresholds or CollapseThresholds()
    warnings = []
    for key in sorted(set(reference) & set(current)):
        ref, now = float(reference[key]), float(current[key])
        if key == REPETITION:
            if now - ref > th.max_repetition_rise:
                warnings.append(f"{key} rose {now - ref:.2f} since {since} ({ref:.3g} -> {now:.3g})")
        elif key != "episodes" and ref > th.min_reference and (ref - now) / ref > th.max_drop:
            warnings.append(f"{key} fell {(ref - now) / ref:.0%} since {since} ({ref:.3g} -> {now:.3g})")
    return warnings
