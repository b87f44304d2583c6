"""The error hierarchy: scenario files and config files are both input files with located problems."""

from __future__ import annotations

import pytest

from trajgym.errors import ConfigFileError, LocatedError, Problem, ScenarioError, TrajgymError
from trajgym.filters.errors import FilterConfigError
from trajgym.rollout.jobfile import JobFileError
from trajgym.scorers.config import ScorerConfigError


@pytest.mark.parametrize("error", [JobFileError, ScorerConfigError, FilterConfigError])
def test_config_file_errors_are_not_scenario_errors(error: type[LocatedError]) -> None:
    assert issubclass(error, ConfigFileError) and issubclass(error, LocatedError)
    assert not issubclass(error, ScenarioError)


def test_located_errors_carry_their_problems_in_file_order() -> None:
    problems = [Problem("a.yaml", 3, 1, "second"), Problem("a.yaml", 1, 5, "first")]
    for error in (ScenarioError(problems), ConfigFileError(problems)):
        assert isinstance(error, TrajgymError)
        assert [p.message for p in error.problems] == ["first", "second"]
        assert str(error) == "a.yaml:1:5: first\na.yaml:3:1: second"
