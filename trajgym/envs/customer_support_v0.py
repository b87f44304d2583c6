"""The customer-support desk, PettingZoo style.

>>> from trajgym.envs import customer_support_v0
>>> env = customer_support_v0.env(scenario="refund_damaged_item")
>>> par = customer_support_v0.parallel_env(scenario="refund_damaged_item")
"""

from __future__ import annotations

from pettingzoo.utils import wrappers

from trajgym.envs.aec import TrajgymAECEnv
from trajgym.envs.parallel import TrajgymParallelEnv
from trajgym.scenario.catalog import DEFAULT_SCENARIO

DOMAIN = "customer_support"


def raw_env(scenario: str = DEFAULT_SCENARIO, render_mode: str | None = None) -> TrajgymAECEnv:
    """The AEC env without wrappers."""
    return TrajgymAECEnv(scenario, domain=DOMAIN, render_mode=render_mode)


def env(scenario: str = DEFAULT_SCENARIO, render_mode: str | None = None) -> wrappers.OrderEnforcingWrapper:
    """The AEC env, wrapped to enforce PettingZoo's call order."""
    return wrappers.OrderEnforcingWrapper(raw_env(scenario, render_mode))


def parallel_env(scenario: str = DEFAULT_SCENARIO, render_mode: str | None = None) -> TrajgymParallelEnv:
    """The Parallel env."""
    return TrajgymParallelEnv(scenario, domain=DOMAIN, render_mode=render_mode)
