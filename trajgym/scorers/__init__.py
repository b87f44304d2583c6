"""Scorers: judge, rank and filter trajectories read from trajectory files.

See :mod:`trajgym.scorers.base` for the scorer contract and the registry.
Importing this package registers the built-in scorers: the rule-based ``outcome``, ``milestones``,
``minefields``, ``policy``, ``recovery`` and ``efficiency``, and ``simulator``.
"""

from trajgym.scorers import blame as blame  # registers 'simulator'
from trajgym.scorers import llm_judge as llm_judge  # registers 'llm_judge'
from trajgym.scorers import reward_model as reward_model  # registers 'reward_model'
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
from trajgym.scorers.efficiency import EfficiencyScorer
from trajgym.scorers.milestones import MilestonesScorer, MinefieldsScorer
from trajgym.scorers.outcome import OutcomeScorer
from trajgym.scorers.policy import PolicyScorer
from trajgym.scorers.recovery import RecoveryScorer

__all__ = ["BLAMES", "SCORERS", "Blame", "EfficiencyScorer", "Finding", "MilestonesScorer", "MinefieldsScorer",
           "OutcomeScorer", "PolicyScorer", "RecoveryScorer", "ScoreResult", "Scorer", "ScorerError",
           "ScoringContext", "get_scorer", "register"]
