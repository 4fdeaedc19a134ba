"""Data stages as plain functions: pair schema, Parquet storage, row accounting, the stage runner, filters,
dedup, split."""
