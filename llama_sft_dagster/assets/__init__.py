"""Dagster assets: each body loads its inputs, calls `core` logic, writes files, returns metadata."""
