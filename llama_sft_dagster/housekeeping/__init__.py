"""Dagster instance housekeeping: stale planning for the stale-only command and schedule, dead-run cleanup."""
