"""Dagster-free logic of every stage: plain functions over lists, Arrow tables and files.

Nothing in this package imports dagster, so each stage is testable on a Python list.
Heavy libraries (torch, transformers, trl, lingua) are imported inside the functions that need them.
"""
