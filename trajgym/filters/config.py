"""Filter chains: which episodes of a scored file make it into the training set, declared in YAML.

A filter chain file is a list of steps, applied in order, each naming one filter::

    filters:
      - drop_excluded: true                  # episodes kept out of scoring (infra_error)
      - no_blame: [simulator, infrastructure] # failures that were not the agent's doing
      - min_score: 0.7                       # the weighted total
      - min_scores: {policy: 1.0}            # a scorer's own score (where it applies)
      - success: true                        # the outcome's verdict
      - dedup: {near: 0.9, scope: group}     # exact copies, then near copies (embeddings)
      - top_k_per_group: 1                   # the best of each scenario variation

Unknown keys, a step naming no filter or two, and values of the wrong kind are errors located as
``file:line:col``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from trajgym.configfile import load_config
from trajgym.filters.decisions import DEFAULT_ROLES
from trajgym.filters.dedup import Scope
from trajgym.filters.errors import FilterConfigError
from trajgym.scorers.base import Blame

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DedupStep(_Strict):
    """Options of a ``dedup`` step: exact copies first, then (with ``near``) near copies."""

    exact: bool = Field(True, description="drop episodes whose normalized decision chain equals a better one's")
    near: float | None = Field(None, gt=0.0, le=1.0, description="cosine similarity of decision-chain embeddings "
                               "at or above which episodes are near copies, e.g. 0.9; none: exact copies only")
    scope: Scope = Field("group", description="compare within a scenario variation (group), a scenario, or the "
                         "whole dataset")
    roles: list[str] = Field(default_factory=lambda: list(DEFAULT_ROLES), min_length=1,
                             description="whose decisions make the chain")


class FilterStep(_Strict):
    """One step of a chain: exactly one of these keys."""

    drop_excluded: bool | None = Field(None, description="true: drop episodes kept out of scoring (infra_error)")
    no_blame: list[Blame] | None = Field(None, min_length=1, description="drop failures blamed on these")
    min_score: Fraction | None = Field(None, description="the least total an episode may have (unscored ones go)")
    min_scores: dict[str, Fraction] | None = Field(
        None, min_length=1, description="scorer -> the least score it may give; episodes it does not apply to pass")
    success: bool | None = Field(None, description="keep only successes (true) or only failures (false)")
    dedup: DedupStep | None = Field(None, description="drop exact and near copies, keeping the best of each")
    top_k_per_group: int | None = Field(None, ge=1, description="keep the k best episodes of each scenario variation")

    @model_validator(mode="before")
    @classmethod
    def _bare_dedup(cls, data: Any) -> Any:
        """``- dedup:`` with no options means exact copies only, within each group."""
        if isinstance(data, dict) and "dedup" in data and data["dedup"] is None:
            return {**data, "dedup": {}}
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> FilterStep:
        names = sorted(self.model_fields_set)
        if len(names) != 1:
            listed = ", ".join(type(self).model_fields)
            got = f"{' and '.join(names)}: split them into steps of their own" if names else "none"
            raise ValueError(f"a step names exactly one filter ({listed}); this one names {got}")
        if getattr(self, names[0]) is None:
            raise ValueError(f"'{names[0]}' needs a value: {type(self).model_fields[names[0]].description}")
        return self

    @property
    def name(self) -> str:
        return next(iter(self.model_fields_set))

    @property
    def value(self) -> Any:
        return getattr(self, self.name)

    def describe(self) -> str:
        """The step as a short line, e.g. ``dedup near 0.9 (group)``."""
        value = self.value
        if isinstance(value, DedupStep):
            parts = (["exact"] if value.exact else []) + ([f"near {value.near:g}"] if value.near is not None else [])
            return f"dedup {' + '.join(parts) or 'nothing'} ({value.scope})"
        if isinstance(value, list):
            return f"{self.name} {', '.join(value)}"
        if isinstance(value, dict):
            return f"{self.name} " + ", ".join(f"{k} {v:g}" for k, v in value.items())
        if isinstance(value, bool):
            return f"{self.name} {'true' if value else 'false'}"
        return f"{self.name} {value:g}" if isinstance(value, float) else f"{self.name} {value}"


class FilterChain(_Strict):
    """A filter chain file (see the module docstring)."""

    filters: list[FilterStep] = Field(min_length=1, description="the steps, applied in order")


EXAMPLE = "filters: [{min_score: 0.7}, {dedup: {near: 0.9}}]"


def load_filter_chain(path: str | Path) -> FilterChain:
    """Read and check a filter chain file; raises :class:`FilterConfigError` with located problems."""
    chain, _ = load_config(path, FilterChain, what="filter chain file", example=EXAMPLE, error=FilterConfigError)
    return chain
