"""The tool-use world's state: the files of a workspace, the task's check, its result."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Check(Strict):
    """How the task is checked after the episode, in the same sandbox (exactly one of the two)."""

    python: str | None = None
    shell: str | None = None
    timeout_s: float = Field(default=20.0, gt=0)

    @model_validator(mode="after")
    def _one_kind(self) -> Check:
        if (self.python is None) == (self.shell is None):
            raise ValueError("a check has exactly one of 'python' or 'shell'")
        return self


class CheckResult(Strict):
    passed: bool
    exit_code: int | None
    output: str


class SandboxSpec(Strict):
    """Which sandbox runs the agent's commands, and its limits."""

    backend: Literal["bwrap", "docker"] = "bwrap"
    timeout_s: float = Field(default=10.0, gt=0, le=120)
    memory_mb: int = Field(default=512, ge=64)


class ToolUseState(Strict):
    """``files`` is the workspace at the start (path -> text); ``final_files`` and ``check_result``
    are filled in when the episode ends."""

    today: dt.date
    task: str
    files: dict[str, str] = Field(default_factory=dict)
    check: Check
    sandbox: SandboxSpec = Field(default_factory=SandboxSpec)
    final_files: dict[str, str] = Field(default_factory=dict)
    check_result: CheckResult | None = None
