"""One place that turns per-row drop reasons into kept rows, rejected rows and counts.

A filter only says, for each row, `None` (keep) or a short reason string (drop). Everything else —
the rejects table, the `dropped_<reason>` counts, the `rows_in == rows_out + sum(dropped)` identity —
comes from here, so no stage can lose a row without it being counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from llama_sft_dagster.core.data.arrays import string_array


@dataclass
class StageCounts:
    """Running row accounting of one stage (summed over batches)."""

    rows_in: int = 0
    rows_out: int = 0
    dropped: Counter = field(default_factory=Counter)

    def add(self, other: StageCounts) -> None:
        self.rows_in += other.rows_in
        self.rows_out += other.rows_out
        self.dropped.update(other.dropped)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def balanced(self) -> bool:
        return self.rows_in == self.rows_out + self.dropped_total

    def as_metadata(self) -> dict[str, int]:
        out = {"rows_in": self.rows_in, "rows_out": self.rows_out, "dropped_total": self.dropped_total}
        out.update({f"dropped_{reason}": n for reason, n in sorted(self.dropped.items())})
        return out


def partition(
    table: pa.Table,
    reasons: Sequence[str | None],
    stage: str,
    details: Sequence[str | None] | None = None,
) -> tuple[pa.Table, pa.Table, StageCounts]:
    """Split `table` by `reasons` (one per row; None keeps the row).

    `details` optionally carries per-row evidence for the reason (kept only on rejected rows).
    Returns (kept rows, rejected rows with `stage`, `reason` and `detail` columns, counts).
    """
    if len(reasons) != table.num_rows:
        raise ValueError(f"stage {stage!r}: {len(reasons)} decisions for {table.num_rows} rows")
    reason_col = string_array(reasons)
    keep_mask = reason_col.is_null()  # Arrow masks and takes: no per-row Python beyond the reasons list
    drop_mask = pc.invert(keep_mask)
    kept, rejected = table.filter(keep_mask), table.filter(drop_mask)
    n_drop = rejected.num_rows
    drop_reasons = reason_col.filter(drop_mask)
    rejected = rejected.append_column("stage", string_array([stage] * n_drop))
    rejected = rejected.append_column("reason", drop_reasons)
    detail_col = string_array(details).filter(drop_mask) if details is not None else pa.nulls(n_drop, pa.string())
    rejected = rejected.append_column("detail", detail_col)
    counts = StageCounts(rows_in=table.num_rows, rows_out=kept.num_rows, dropped=Counter(drop_reasons.to_pylist()))
    return kept, rejected, counts


def check_balance(rows_in: int, rows_out: int, dropped: dict[str, int]) -> tuple[bool, str]:
    """The accounting identity of a stage, with a sentence that says where it breaks."""
    total = sum(dropped.values())
    if rows_in == rows_out + total:
        return True, f"{rows_in} in = {rows_out} kept + {total} dropped"
    return (
        False,
        f"{rows_in} in != {rows_out} kept + {total} dropped: {rows_in - rows_out - total} rows unaccounted for",
    )
