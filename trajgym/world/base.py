"""What a domain provides: a state model, a ToolKit, a written policy and its checkable rules.

A new domain is a folder of tools plus YAML: it builds one :class:`Domain` and registers it in
:data:`trajgym.world.registry.DOMAINS`. Nothing else in trajgym changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from trajgym.world.tools import ToolKit, ToolResult

S = TypeVar("S", bound=BaseModel)
P = TypeVar("P", bound=BaseModel)


@dataclass(frozen=True)
class Violation:
    """A broken policy rule, found before the call that broke it ran."""

    rule: str
    message: str


class PolicyChecker(Generic[S, P]):
    """Checks a domain's policy rules as the episode runs. Tools never enforce them.

    ``before_call`` sees the world as it is just before a tool runs; ``after_call`` sees the
    result, so the checker can remember e.g. which customers proved their identity.
    """

    def __init__(self, params: P) -> None:
        self.params = params

    def rules(self) -> list[str]:
        """The names of the rules this checker checks with its parameters (scorers skip a
        trajectory whose policy has none)."""
        return []

    def before_call(self, role: str, tool: str, args: dict[str, Any], state: S) -> list[Violation]:
        return []

    def after_call(self, role: str, tool: str, args: dict[str, Any], result: ToolResult, state: S) -> None:
        return None


@dataclass(frozen=True)
class Domain(Generic[S, P]):
    """A task world."""

    name: str
    state_model: type[S]
    toolkit: type[ToolKit]
    policy_text: str
    policy_params: type[P]
    checker: type[PolicyChecker[S, P]]
    role_instructions: dict[str, str]
    live_state: bool = True
    """Whether the state model is the world while an episode runs, so re-running a trajectory's
    applied tool calls on a fresh state rebuilds every intermediate world. False where the world
    lives elsewhere (a sandbox) and the state only records it when the episode ends."""

    def entity_problems(self, state: S) -> list[tuple[tuple[str | int, ...], str]]:
        """References to entities that do not exist, as (path in ``world``, message)."""
        check = getattr(state, "entity_problems", None)
        return list(check()) if callable(check) else []
