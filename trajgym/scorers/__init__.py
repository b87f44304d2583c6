"""Scorers: judge, rank and filter trajectories read from trajectory files.

See :mod:`trajgym.scorers.base` for the scorer contract and the registry.
Importing this package registers the built-in scorers: the rule-based ``outcome``, ``milestones``,
``minefields``, ``policy``, ``recovery`` and ``efficiency``, ``simulator``, and the model-based
``llm_judge`` and ``reward_model`` (whose torch and transformers load only when it scores).
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
from trajgym.scorers.efficiency import EfficiencyScorer
from trajgym.scorers.llm_judge import LLMJudge
from trajgym.scorers.milestones import MilestonesScorer, MinefieldsScorer
from trajgym.scorers.outcome import OutcomeScorer
from trajgym.scorers.policy import PolicyScorer
from trajgym.scorers.recovery import RecoveryScorer
from trajgym.scorers.reward_model import RewardModel

__all__ = ["BLAMES", "SCORERS", "Blame", "EfficiencyScorer", "Finding", "LLMJudge", "MilestonesScorer",
           "MinefieldsScorer", "OutcomeScorer", "PolicyScorer", "RecoveryScorer", "RewardModel", "ScoreResult",
           "Scorer", "ScorerError", "ScoringContext", "get_scorer", "register"]
