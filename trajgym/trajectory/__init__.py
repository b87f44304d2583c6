"""Trajectories: the schema, and the append-only JSONL store."""

from trajgym.trajectory.schema import TRAJECTORY_VERSION, Trajectory
from trajgym.trajectory.store import (
    TrajectoryWriter,
    UnitKey,
    iter_episodes,
    latest_per_unit,
    read,
    repair_torn_tail,
    strip_wall,
    unit_key,
)

__all__ = ["TRAJECTORY_VERSION", "Trajectory", "TrajectoryWriter", "UnitKey", "iter_episodes", "latest_per_unit", "read",
           "repair_torn_tail", "strip_wall", "unit_key"]
