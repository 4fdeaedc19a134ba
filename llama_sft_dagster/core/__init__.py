"""Dagster-free logic of every stage: plain functions over lists, Arrow tables and files.

Nothing in this package imports dagster, so each stage is testable on a Python list. Heavy libraries
(torch, transformers, trl, lingua) are imported inside the functions that need them.

- sources/: reading Bitext and MultiWOZ, their content versions, raw-input errors
- data/: the pair schema, storage, accounting, the stage runner, filters, dedup, split
- training/: base model, chat format, masking, device plan, trainer, monitoring, plots, merge
- demo/: the generated demo inputs
- versions.py: every content hash (data versions, run fingerprints, code versions)
"""
