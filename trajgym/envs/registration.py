"""Gymnasium ids of the trajgym envs, registered on ``import trajgym``."""

from __future__ import annotations

import gymnasium as gym

from trajgym.scenario.catalog import DEFAULT_SCENARIO

NAMESPACE = "trajgym"

# id -> (entry point, default kwargs, PettingZoo module)
ENVS: dict[str, tuple[str, dict[str, object], str]] = {
    f"{NAMESPACE}/CustomerSupport-v0": (
        "trajgym.rollout.gym_env:TrajgymGymEnv",
        {"scenario": DEFAULT_SCENARIO, "learner": "support", "domain": "customer_support"},
        "trajgym.envs.customer_support_v0",
    ),
    f"{NAMESPACE}/Workflow-v0": (
        "trajgym.rollout.gym_env:TrajgymGymEnv",
        {"scenario": "employee_onboarding", "learner": "support", "domain": "workflow"},
        "trajgym.envs.workflow_v0",
    ),
    f"{NAMESPACE}/ToolUse-v0": (
        "trajgym.rollout.gym_env:TrajgymGymEnv",
        {"scenario": "clean_csv", "learner": "support", "domain": "tool_use"},
        "trajgym.envs.tool_use_v0",
    ),
}


def register_envs() -> None:
    """Register every trajgym env with Gymnasium (idempotent)."""
    for env_id, (entry_point, kwargs, _module) in ENVS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point, kwargs=dict(kwargs))
