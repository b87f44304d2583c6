"""Scenario language: schema, loading with located errors, variables, the built-in catalogue."""

from trajgym.scenario.catalog import builtin_dir, builtin_scenarios, resolve
from trajgym.scenario.loader import ScenarioInstance, ScenarioTemplate, load, parse
from trajgym.scenario.schema import SCHEMA_VERSION, Scenario

__all__ = [
    "SCHEMA_VERSION",
    "Scenario",
    "ScenarioInstance",
    "ScenarioTemplate",
    "builtin_dir",
    "builtin_scenarios",
    "load",
    "parse",
    "resolve",
]
