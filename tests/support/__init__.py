"""Helpers shared by the test tiers (unit/, graph/, e2e/): paths, resources, prepared states.

Tests import them as `from support.<module> import ...` (pytest puts tests/ on sys.path, see pyproject).
"""
