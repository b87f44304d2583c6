"""Scorer configs: which scorers run, with which options, and their weights in the total.

A scorer config is a YAML file::

    scorers:
      outcome: {weight: 2}
      milestones: 1                 # short for {weight: 1}
      policy: {weight: 1}
      efficiency: {weight: 0.5}
      llm_judge:
        weight: 1
        options: {base_url: "http://127.0.0.1:8000/v1", model: smollm2}
    success_from: outcome           # the scorer whose 'passed' is the episode's success

Unknown keys, unknown scorers and options a scorer does not take are errors located in the file.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from trajgym.configfile import load_config
from trajgym.errors import ConfigFileError, Problem, TrajgymError
from trajgym.scenario.yamlfile import LocatedData
from trajgym.scorers.base import SCORERS, Scorer, ScorerError, get_scorer

DEFAULT_SCORERS: dict[str, float] = {"outcome": 2.0, "milestones": 1.0, "policy": 1.0, "minefields": 1.0, "recovery": 1.0,
                                     "efficiency": 0.5, "simulator": 0.0}
"""The rule-based scorers run when no config is given, with their weights."""


class ScorerEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weight: float = Field(1.0, ge=0.0, description="weight in the total; 0 = reported, not counted")
    options: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the scorer")


class ScoringConfig(BaseModel):
    """A scorer config, as written in YAML."""

    model_config = ConfigDict(extra="forbid")

    scorers: dict[str, ScorerEntry] = Field(min_length=1, description="scorer name -> weight and options")
    success_from: str = Field("outcome", description="the scorer whose 'passed' verdict is the episode's success")

    @field_validator("scorers", mode="before")
    @classmethod
    def _short(cls, value: Any) -> Any:
        """``outcome: 2`` is short for ``outcome: {weight: 2}``; ``outcome:`` for weight 1."""
        if isinstance(value, dict):
            return {k: {"weight": v} if isinstance(v, int | float) and not isinstance(v, bool)
                    else ({} if v is None else v) for k, v in value.items()}
        return value

    def digest(self) -> str:
        """A short hash of the config: scored files record which config made them."""
        return hashlib.sha256(json.dumps(self.model_dump(), sort_keys=True).encode()).hexdigest()[:12]


def default_config() -> ScoringConfig:
    return ScoringConfig.model_validate({"scorers": DEFAULT_SCORERS})


class ScorerConfigError(ConfigFileError):
    """A scorer config file is broken; every problem is located in the file."""


@dataclass
class ActiveScorer:
    """A built scorer with its weight."""

    name: str
    scorer: Scorer
    weight: float


def _option_problem(cls: type[Scorer], options: dict[str, Any]) -> str | None:
    """Why ``cls(**options)`` would fail on the option names, or None."""
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    known = [n for n, p in params.items() if n != "self" and p.kind is not inspect.Parameter.VAR_POSITIONAL]
    unknown = [k for k in options if k not in known]
    if unknown:
        return (f"scorer '{cls.name}' has no option {', '.join(repr(u) for u in unknown)} "
                f"(its options: {', '.join(known) or 'none'})")
    return None


def build_scorers(config: ScoringConfig, located: LocatedData | None = None) -> list[ActiveScorer]:
    """Instantiate the config's scorers. Problems are located in the config file when there is one."""
    import trajgym.scorers  # noqa: F401 - registers the built-in scorers

    problems: list[str | Problem] = []

    def fail(path: tuple[Any, ...], message: str, key: bool = False) -> None:
        problems.append(located.problem(path, message, key=key) if located is not None else message)

    active: list[ActiveScorer] = []
    for name, entry in config.scorers.items():
        try:
            cls = get_scorer(name)
        except ScorerError as exc:
            fail(("scorers", name), str(exc), key=True)
            continue
        why = _option_problem(cls, entry.options)
        if why is not None:
            fail(("scorers", name, "options"), why)
            continue
        try:
            scorer = cls(**entry.options)
        except (TypeError, ValueError, TrajgymError) as exc:
            fail(("scorers", name, "options"), f"scorer '{name}': {exc}")
            continue
        active.append(ActiveScorer(name, scorer, entry.weight))
    if config.success_from not in config.scorers and not problems:
        fail(("success_from",), f"success_from names '{config.success_from}', which is not among the scorers "
                                f"({', '.join(config.scorers)})")
    if problems:
        if located is not None:
            raise ScorerConfigError([p for p in problems if isinstance(p, Problem)])
        raise ScorerError("; ".join(str(p) for p in problems))
    return active


def load_scoring_config(path: str | Path | None) -> tuple[ScoringConfig, list[ActiveScorer]]:
    """The config in ``path`` (the default rule-based scorers when None) and its built scorers."""
    if path is None:
        config = default_config()
        return config, build_scorers(config)
    config, located = load_config(path, ScoringConfig, what="scorer config", error=ScorerConfigError,
                                  example="scorers: {outcome: {weight: 2}, policy: 1}")
    return config, build_scorers(config, located)


def known_scorers() -> list[str]:
    import trajgym.scorers  # noqa: F401

    return sorted(SCORERS)
