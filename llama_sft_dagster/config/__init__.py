"""Typed config: data stages (data.py), training (training.py), profiles and state folders (profiles.py)."""
