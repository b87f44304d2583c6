"""Trajectories: the schema, and the append-only JSONL store."""

from trajgym.trajectory.schema import TRAJECTORY_VERSION, Trajectory
from trajgym.trajectory.store import TrajectoryWriter, iter_episodes, read, strip_wall

__all__ = ["TRAJECTORY_VERSION", "Trajectory", "TrajectoryWriter", "iter_episodes", "read", "strip_wall"]
