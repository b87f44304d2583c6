"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import BUILTIN

from trajgym.scenario.loader import ScenarioTemplate, load


@pytest.fixture(scope="session")
def templates() -> dict[str, ScenarioTemplate]:
    return {sid: load(path) for sid, path in BUILTIN.items()}


@pytest.fixture
def artifacts_dir() -> Path:
    out = Path(__file__).resolve().parent.parent / "test-artifacts"
    out.mkdir(exist_ok=True)
    return out
