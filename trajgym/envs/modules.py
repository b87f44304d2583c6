"""The functions of a PettingZoo-style env module (``env``, ``raw_env``, ``parallel_env``) for a domain."""

from __future__ import annotations

from collections.abc import Callable

from pettingzoo.utils import wrappers

from trajgym.envs.aec import TrajgymAECEnv
from trajgym.envs.parallel import TrajgymParallelEnv


def module_functions(domain: str, default: str) -> tuple[
    Callable[..., TrajgymAECEnv], Callable[..., wrappers.OrderEnforcingWrapper], Callable[..., TrajgymParallelEnv]
]:
    """``raw_env``, ``env`` and ``parallel_env`` for ``domain``, with ``default`` as the scenario."""

    def raw_env(scenario: str = default, render_mode: str | None = None) -> TrajgymAECEnv:
        """The AEC env without wrappers. ``scenario``: a built-in id or a path."""
        return TrajgymAECEnv(scenario, domain=domain, render_mode=render_mode)

    def env(scenario: str = default, render_mode: str | None = None) -> wrappers.OrderEnforcingWrapper:
        """The AEC env, wrapped to enforce PettingZoo's call order."""
        return wrappers.OrderEnforcingWrapper(raw_env(scenario, render_mode))

    def parallel_env(scenario: str = default, render_mode: str | None = None) -> TrajgymParallelEnv:
        """The Parallel env."""
        return TrajgymParallelEnv(scenario, domain=domain, render_mode=render_mode)

    return raw_env, env, parallel_env
