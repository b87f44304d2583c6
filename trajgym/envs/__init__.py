"""Environments: the episode engine and its PettingZoo (AEC, Parallel) and Gymnasium views."""

from trajgym.envs.actions import ActionError, call, calls, parse_action, say
from trajgym.envs.core import Episode
from trajgym.envs.registration import ENVS, register_envs

__all__ = ["ENVS", "ActionError", "Episode", "call", "calls", "parse_action", "register_envs", "say"]
