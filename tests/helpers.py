"""Helpers shared by the tests (importable as ``helpers``: pytest puts tests/ on sys.path)."""

from __future__ import annotations

from typing import Any

import yaml

from trajgym.scenario.catalog import builtin_scenarios
from trajgym.world.loader import ScenarioTemplate, parse

BUILTIN = builtin_scenarios()
BUILTIN_IDS = sorted(BUILTIN)
EXAMPLE = BUILTIN["refund_damaged_item"]


def example_data() -> dict[str, Any]:
    """The default scenario's YAML as a dict, to derive variants from in tests."""
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    return data


def scenario_from(data: dict[str, Any], name: str = "variant.yaml") -> ScenarioTemplate:
    """Validate a scenario given as a dict."""
    return parse(yaml.safe_dump(data, sort_keys=False), name)
