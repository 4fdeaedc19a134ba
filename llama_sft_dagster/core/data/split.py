"""Train/validation split decided per sample by a seeded hash of its content.

Stable as data grows: a sample's side depends only on its own text and the seed, so adding raw rows
never moves an existing sample to the other side (a shuffled 95/5 cut would).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


def validation_score(instruction: str, response: str, seed: int) -> float:
    """A uniform number in [0, 1) derived from the sample's content and the seed."""
    digest = hashlib.blake2b(f"{seed}\x00{instruction}\x00{response}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def is_validation(
    instructions: Sequence[str], responses: Sequence[str], validation_fraction: float, seed: int
) -> list[bool]:
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be between 0 and 1, got {validation_fraction}")
    return [validation_score(i, r, seed) < validation_fraction for i, r in zip(instructions, responses)]


@dataclass
class SplitSide:
    rows: int = 0
    per_source: Counter = field(default_factory=Counter)
    per_intent: Counter = field(default_factory=Counter)


def split_parquet(
    in_path: Path,
    train_path: Path,
    validation_path: Path,
    validation_fraction: float,
    seed: int,
    batch_rows: int = 50_000,
) -> dict[str, SplitSide]:
    """Stream `in_path` into train and validation Parquet files (each appears atomically).

    Batched, so memory stays bounded at a million rows; returns rows and per-source/intent counts.
    """
    import pyarrow.compute as pc

    from llama_sft_dagster.core.data.arrays import bool_array
    from llama_sft_dagster.core.data.schema import PAIR_SCHEMA
    from llama_sft_dagster.core.data.storage import ParquetBatchWriter, iter_parquet_batches

    writers = {
        "train": ParquetBatchWriter(train_path, PAIR_SCHEMA),
        "validation": ParquetBatchWriter(validation_path, PAIR_SCHEMA),
    }
    sides = {name: SplitSide() for name in writers}
    try:
        for batch in iter_parquet_batches(in_path, batch_rows):
            batch = batch.select(PAIR_SCHEMA.names).cast(PAIR_SCHEMA)
            to_validation = bool_array(
                is_validation(
                    batch.column("instruction").to_pylist(),
                    batch.column("response").to_pylist(),
                    validation_fraction,
                    seed,
                )
            )
            for name, part in (
                ("train", batch.filter(pc.invert(to_validation))),
                ("validation", batch.filter(to_validation)),
            ):
                writers[name].write(part)
                sides[name].rows += part.num_rows
                sides[name].per_source.update(part.column("source").to_pylist())
                sides[name].per_intent.update(part.column("intent").to_pylist())
    except BaseException as exc:
        for w in writers.values():
            w.abort(exc)
        raise
    for w in writers.values():
        w.close()
    return sides
