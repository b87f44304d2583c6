"""What a scorer is: a small class that reads one trajectory and returns a :class:`ScoreResult`.

Scorers work on trajectory files only (``trajgym.trajectory``), never on a live episode, so a
dataset can be scored again later with new scorers. A scorer that needs the scenario (the
reference solution, the goal, the policy parameters) gets it from :class:`ScoringContext`, which
loads the scenario file the trajectory names and draws the same variables from its seed.

A scorer returns ``None`` when it does not apply to a trajectory (no milestones declared, no fault
injected, ...); the combined score then ignores it. A scorer never catches its own exceptions to
score 0: a bug must fail loudly.

Example::

    >>> from trajgym.scorers.base import Scorer, ScoreResult, register
    >>> @register
    ... class Short(Scorer):
    ...     '''1.0 for an episode of at most ``max_turns`` turns.'''
    ...     name = "short_demo"
    ...     def __init__(self, max_turns: int = 10) -> None:
    ...         self.max_turns = max_turns
    ...     def score(self, traj, ctx):
    ...         ok = len(traj.steps) <= self.max_turns
    ...         return ScoreResult(score=1.0 if ok else 0.0, passed=ok)
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from trajgym.errors import TrajgymError
from trajgym.registry import Unknown, lookup
from trajgym.scenario.catalog import resolve_ref
from trajgym.trajectory.schema import Trajectory
from trajgym.trajectory.scored import BLAMES, Blame, Finding, ScoreResult
from trajgym.world.loader import ScenarioInstance, ScenarioTemplate, load

__all__ = ["BLAMES", "Blame", "Finding", "ScoreResult", "Scorer", "ScorerError", "ScoringContext", "get_scorer", "register"]


class ScorerError(TrajgymError):
    """A scorer was configured or used badly (unknown name, bad option, scenario file missing)."""


class Scorer(abc.ABC):
    """Base of every scorer. Subclasses set ``name`` and implement :meth:`score` (or :meth:`ascore`
    for scorers that wait on a model server; the pipeline runs those concurrently).

    Options come from the scorer's YAML entry as keyword arguments of ``__init__``: unknown
    options are errors, never silently ignored.
    """

    name: ClassVar[str]
    is_async: ClassVar[bool] = False
    forkable: ClassVar[bool] = False
    """True when a forked worker process can run a copy of this scorer: it holds no model, server
    connection, thread or open file. Only runs whose scorers are all forkable use worker processes."""

    def score(self, traj: Trajectory, ctx: ScoringContext) -> ScoreResult | None:
        raise NotImplementedError(f"scorer {self.name} implements ascore, not score")

    async def ascore(self, traj: Trajectory, ctx: ScoringContext) -> ScoreResult | None:
        return self.score(traj, ctx)

    def config(self) -> dict[str, Any]:
        """The options this scorer runs with, recorded next to its scores."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Free resources (HTTP sessions, models) after a scoring run."""


SCORERS: dict[str, type[Scorer]] = {}
"""The scorer registry: name -> class. Built-in scorers register on ``import trajgym.scorers``."""

T = TypeVar("T", bound=type[Scorer])
log = logging.getLogger(__name__)


def register(cls: T) -> T:
    """Class decorator: add a scorer to :data:`SCORERS` under its ``name``."""
    name = cls.__dict__.get("name")
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__qualname__} needs a class attribute 'name'")
    if name in SCORERS and SCORERS[name] is not cls:
        raise TypeError(f"two scorers named '{name}': {SCORERS[name].__qualname__} and {cls.__qualname__}")
    SCORERS[name] = cls
    return cls


def get_scorer(name: str) -> type[Scorer]:
    """The scorer class called ``name``, or an error that lists the known ones."""
    return lookup(SCORERS, name, what="scorer", error=ScorerError, message=_unknown)


def _unknown(u: Unknown) -> str:
    hint = f" Did you mean '{u.close}'?" if u.close else ""
    return f"unknown scorer '{u.name}'.{hint} Known scorers: {', '.join(u.known)}"


@dataclass
class ScoringContext:
    """Scenario files and instances for the trajectories being scored, loaded once and cached.

    ``scenario_dirs`` are searched (by file name) when a trajectory's ``scenario_path`` does not
    exist here, e.g. trajectories made on another machine.
    """

    scenario_dirs: list[Path] = field(default_factory=list)
    _templates: dict[str, ScenarioTemplate] = field(default_factory=dict, repr=False)
    _instances: dict[tuple[str, int], ScenarioInstance] = field(default_factory=dict, repr=False)
    cache: dict[str, Any] = field(default_factory=dict, repr=False)
    """Free-form per-run cache for scorers (e.g. reference replays keyed by variation)."""

    def _find(self, scenario_path: str, episode_id: str) -> Path:
        path = resolve_ref(scenario_path)  # builtin:<domain>/<file> wherever trajgym is installed
        if path.is_file():
            return path
        for folder in self.scenario_dirs:
            hits = sorted(Path(folder).rglob(path.name))
            if hits:
                return hits[0]
        raise ScorerError(
            f"episode {episode_id}: scenario file {scenario_path} not found; pass the folder that "
            "holds it with --scenarios DIR"
        )

    def template(self, traj: Trajectory) -> ScenarioTemplate:
        """The scenario template the trajectory was played on."""
        return self.template_of(traj.scenario_path, traj.scenario_hash, traj.episode_id)

    def template_of(self, scenario_path: str, scenario_hash: str, episode_id: str) -> ScenarioTemplate:
        """:meth:`template` from the trajectory's ``scenario_path``, ``scenario_hash`` and ``episode_id``."""
        if scenario_path not in self._templates:
            template = load(self._find(scenario_path, episode_id))
            if template.content_hash != scenario_hash:
                log.warning("scenario %s changed since episode %s was played (hash %s, now %s): scores that "
                            "replay it may not match what the agent saw", template.path, episode_id,
                            scenario_hash, template.content_hash)
            self._templates[scenario_path] = template
        return self._templates[scenario_path]

    def instance(self, traj: Trajectory) -> ScenarioInstance:
        """The scenario instance of the trajectory's seed: same variables, same initial world.

        Shared between scorers: never mutate it; use ``instance.fresh_state()`` for a world to change.
        """
        key = (traj.scenario_path, traj.seed)
        if key not in self._instances:
            self._instances[key] = self.template(traj).instantiate(traj.seed)
        return self._instances[key]

    def memo(self, key: str, make: Callable[[], Any]) -> Any:
        """``cache[key]``, computed once with ``make()``."""
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]
