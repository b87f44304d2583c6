"""Scorers: judge, rank and filter trajectories read from trajectory files.

See :mod:`trajgym.scorers.base` for the scorer contract and the registry.
Importing this package registers the built-in scorers.
"""

from trajgym.scorers import blame as blame  # registers 'simulator'
from trajgym.scorers.base import (
    BLAMES,
    SCORERS,
    Blame,
    Finding,
    Scorer,
    ScorerError,
    ScoreResult,
    ScoringContext,
    get_scorer,
    register,
)

__all__ = ["BLAMES", "SCORERS", "Blame", "Finding", "ScoreResult", "Scorer", "ScorerError", "ScoringContext",
           "get_scorer", "register"]
