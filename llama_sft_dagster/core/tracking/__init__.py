"""Tracking logic without Dagster: MLflow metrics that survive a tracking-server outage (spool.py)."""
