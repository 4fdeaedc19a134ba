"""Evaluation of a fine-tune against its base model: per-row scores (scoring.py), grouped metrics and
tables (metrics.py), the fixed generation samples (samples.py) and the champion decision (promotion.py)."""
