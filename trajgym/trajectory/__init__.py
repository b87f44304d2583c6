"""The data products: what every stage writes and the later ones read, typed, in one place.

- :mod:`~trajgym.trajectory.schema`: a trajectory line (schema 2), with its typed model turns;
  :mod:`~trajgym.trajectory.v1` reads schema 1 lines, upgraded in memory.
- :mod:`~trajgym.trajectory.store`: the append-only JSONL writer and the trajectory readers.
- :mod:`~trajgym.trajectory.units`: work units keyed by policy, and the one rule for the line that
  counts per unit.
- :mod:`~trajgym.trajectory.scored`: a scored record (``trajgym score`` output) and its reader.
- :mod:`~trajgym.trajectory.filtered`: a filter chain's output and its dropped-episodes sidecar.
- :mod:`~trajgym.trajectory.chat`: an episode rendered as chat messages.
- :mod:`~trajgym.trajectory.tokens`: a role's token sequence rebuilt, with the mask of what the
  model generated.

It imports no stage: scorers, filters, report and trainers import from it.
"""

from trajgym.trajectory.schema import INFRA_ERROR, TRAJECTORY_VERSION, Generation, Trajectory
from trajgym.trajectory.scored import ScoredTrajectory, iter_scored
from trajgym.trajectory.store import (
    TrajectoryWriter,
    iter_episodes,
    latest_per_unit,
    read,
    read_heads,
    repair_torn_tail,
    strip_wall,
)
from trajgym.trajectory.tokens import RoleTokens, role_tokens
from trajgym.trajectory.units import UnitKey, policy_id, unit_key

__all__ = ["INFRA_ERROR", "TRAJECTORY_VERSION", "Generation", "RoleTokens", "ScoredTrajectory", "Trajectory",
           "TrajectoryWriter", "UnitKey", "iter_episodes", "iter_scored", "latest_per_unit", "policy_id", "read",
           "read_heads", "repair_torn_tail", "role_tokens", "strip_wall", "unit_key"]
