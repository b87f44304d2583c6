"""Gymnasium's and PettingZoo's own checkers over every registered env and every scenario."""

from __future__ import annotations

import importlib
import warnings

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test, seed_test

import trajgym
from trajgym.envs.registration import ENVS
from trajgym.scenario.catalog import builtin_scenarios

pytestmark = pytest.mark.slow

# (PettingZoo module, scenario id) for every registered env and every scenario of its domain
PZ_CASES = [
    (module, sid)
    for _entry, kwargs, module in ENVS.values()
    for sid in sorted(builtin_scenarios(str(kwargs["domain"])))
]


def _domain_scenarios(env_id: str) -> list[str]:
    domain = str(ENVS[env_id][1]["domain"])
    return sorted(builtin_scenarios(domain))


@pytest.fixture(autouse=True)
def _quiet() -> None:
    warnings.filterwarnings("ignore", message=".*(NumPy array|should be gymnasium|<descriptor>|render fps).*")


@pytest.mark.parametrize(("module", "scenario"), PZ_CASES)
def test_pettingzoo_api(module: str, scenario: str) -> None:
    mod = importlib.import_module(module)
    api_test(mod.env(scenario=scenario), num_cycles=60)
    parallel_api_test(mod.parallel_env(scenario=scenario), num_cycles=60)


@pytest.mark.parametrize(("module", "scenario"), PZ_CASES)
def test_pettingzoo_seed(module: str, scenario: str) -> None:
    mod = importlib.import_module(module)
    seed_test(lambda: mod.env(scenario=scenario), num_cycles=40)
    parallel_seed_test(lambda: mod.parallel_env(scenario=scenario), num_cycles=40)


@pytest.mark.parametrize(
    ("env_id", "scenario"), [(e, s) for e in ENVS for s in _domain_scenarios(e)]
)
def test_gymnasium_check_env(env_id: str, scenario: str) -> None:
    env = gym.make(env_id, scenario=scenario)
    check_env(env.unwrapped, skip_render_check=False)
    env.close()


@pytest.mark.parametrize("env_id", list(ENVS))
def test_async_vector_env(env_id: str) -> None:
    # Text observations go through pickling: gymnasium 1.4's shared-memory path for Text spaces
    # reads back only the first character of the charset (see README, "Using the envs").
    envs = gym.vector.AsyncVectorEnv([lambda: gym.make(env_id)] * 2, shared_memory=False)
    try:
        obs, _ = envs.reset(seed=3)
        assert len(obs["messages"]) == 2
        actions = tuple(trajgym.say("Could you tell me your email?") for _ in range(2))
        obs, rewards, term, trunc, _ = envs.step(actions)
        assert len(rewards) == 2 and not any(term) and not any(trunc)
        assert all('"name":"customer"' in m or '"role":"tool"' in m for m in obs["messages"])
    finally:
        envs.close()


def test_every_registered_env_has_a_pettingzoo_module_and_scenarios() -> None:
    for env_id, (_entry, kwargs, module) in ENVS.items():
        assert env_id.startswith("trajgym/") and env_id.rsplit("-v", 1)[1].isdigit()
        mod = importlib.import_module(module)
        assert kwargs["domain"] == mod.DOMAIN and kwargs["scenario"] == mod.DEFAULT_SCENARIO
        assert kwargs["scenario"] in builtin_scenarios(str(kwargs["domain"]))
