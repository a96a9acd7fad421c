"""Evaluation: predictions, scoring, statistics, the grid, the sweep, the paper's tables."""
from . import caption_metrics  # noqa: F401  (registers the caption task's scorer with scoring.py)
