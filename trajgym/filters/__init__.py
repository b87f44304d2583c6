"""Quality filters: turn a scored file into a training set.

Data flows scorers -> filters -> trainers: a filter chain (:mod:`trajgym.filters.config`, declared in
YAML) drops episodes by score, success, blame and copies (exact and near duplicates of the decision
chain, :mod:`trajgym.filters.dedup`); :mod:`trajgym.filters.diversity` measures how varied a set of
episodes is, and :mod:`trajgym.filters.collapse` watches those figures (with persona coverage, success
on the rarest scenarios and phrase repetition) from one generation of a self-training loop to the next.
Embeddings (near duplicates, embedding spread) need the ``embed`` extra.
"""

from trajgym.filters.chain import STEPS, Dropped, FilterResult, StepReport, apply_chain, filter_file
from trajgym.filters.collapse import CollapseThresholds, collapse_figures, collapse_warnings
from trajgym.filters.config import DedupStep, FilterChain, FilterStep, load_filter_chain
from trajgym.filters.decisions import (
    action_names,
    chain_hash,
    chain_text,
    decision_lines,
    normalize,
)
from trajgym.filters.dedup import DEFAULT_NEAR, Duplicate, Scope, exact_duplicates, near_duplicates
from trajgym.filters.diversity import (
    diversity,
    diversity_by_scenario,
    embedding_spread,
    entropy,
    ngram_entropy,
)
from trajgym.filters.embed import Embedder
from trajgym.filters.errors import FilterConfigError, FilterError

__all__ = [
    "DEFAULT_NEAR", "STEPS", "CollapseThresholds", "DedupStep", "Dropped", "Duplicate", "Embedder", "FilterChain", "FilterConfigError",
    "FilterError", "FilterResult", "FilterStep", "Scope", "StepReport", "action_names", "apply_chain", "chain_hash",
    "chain_text", "collapse_figures", "collapse_warnings", "decision_lines", "diversity", "diversity_by_scenario", "embedding_spread", "entropy",
    "exact_duplicates", "filter_file", "load_filter_chain", "near_duplicates", "ngram_entropy", "normalize",
]
