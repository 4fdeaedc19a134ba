"""Run a row-dropping stage over a Parquet file in batches, writing kept rows and rejects.

One function serves every filter and the dedup stage, so they all count rows the same way:
`rows_in == rows_out + sum(dropped_<reason>)` holds by construction and is re-checked by asset checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from llama_sft_dagster.core.data.accounting import StageCounts, partition
from llama_sft_dagster.core.data.filters import Decisions
from llama_sft_dagster.core.data.schema import PAIR_SCHEMA, REJECT_SCHEMA
from llama_sft_dagster.core.data.storage import ParquetBatchWriter, iter_parquet_batches

# Rows per batch: large enough for the batch calls of the tokenizer, lingua and MinHash to pay off,
# small enough that memory stays bounded at a million rows.
DEFAULT_BATCH_ROWS = 20_000

Decide = Callable[[pa.Table], Decisions]


@dataclass
class StageOutput:
    kept_path: Path
    rejects_path: Path
    counts: StageCounts


def run_stage(
    stage: str, in_path: Path, out_dir: Path, decide: Decide, batch_rows: int = DEFAULT_BATCH_ROWS
) -> StageOutput:
    """Apply `decide` to each batch of `in_path`; write `data.parquet` and `rejects.parquet` in `out_dir`."""
    out_dir = Path(out_dir)
    kept_writer = ParquetBatchWriter(out_dir / "data.parquet", PAIR_SCHEMA)
    reject_writer = ParquetBatchWriter(out_dir / "rejects.parquet", REJECT_SCHEMA)
    counts = StageCounts()
    try:
        for batch in iter_parquet_batches(in_path, batch_rows):
            batch = batch.select(PAIR_SCHEMA.names).cast(PAIR_SCHEMA)
            decisions = decide(batch)
            kept, rejected, batch_counts = partition(batch, decisions.reasons, stage, decisions.details)
            kept_writer.write(kept)
            reject_writer.write(rejected.cast(REJECT_SCHEMA))
            counts.add(batch_counts)
    except BaseException as exc:
        kept_writer.abort(exc)
        reject_writer.abort(exc)
        raise
    return StageOutput(kept_writer.close(), reject_writer.close(), counts)


def columns(batch: pa.Table) -> tuple[list[str], list[str]]:
    return batch.column("instruction").to_pylist(), batch.column("response").to_pylist()
