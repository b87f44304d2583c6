"""Scenario language: schema, reading with located errors, variables, the built-in catalogue.

It knows no domain. Loading a file with its domain, into a template that builds seeded instances,
is one layer up: :func:`trajgym.world.loader.load` (also ``trajgym.load``).
"""

from trajgym.scenario.catalog import builtin_dir, builtin_scenarios, resolve
from trajgym.scenario.loader import read_spec
from trajgym.scenario.schema import SCHEMA_VERSION, Scenario

__all__ = [
    "SCHEMA_VERSION",
    "Scenario",
    "builtin_dir",
    "builtin_scenarios",
    "read_spec",
    "resolve",
]
