"""trajgym: turn simulated work into training data for AI agents.

>>> import gymnasium as gym, trajgym
>>> env = gym.make("trajgym/CustomerSupport-v0", scenario="refund_damaged_item")
"""

from trajgym._version import __version__
from trajgym.envs.actions import call, say
from trajgym.envs.core import Episode
from trajgym.envs.registration import register_envs
from trajgym.errors import ScenarioError, TrajgymError
from trajgym.scenario import builtin_scenarios
from trajgym.trajectory import Trajectory, TrajectoryWriter, iter_episodes, read
from trajgym.world.loader import ScenarioTemplate, load

register_envs()

__all__ = [
    "Episode",
    "ScenarioError",
    "ScenarioTemplate",
    "Trajectory",
    "TrajectoryWriter",
    "TrajgymError",
    "__version__",
    "builtin_scenarios",
    "call",
    "iter_episodes",
    "load",
    "read",
    "say",
]
