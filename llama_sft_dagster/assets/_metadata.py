"""Metadata helpers shared by the data assets: previews, counts, content versions."""

from collections import Counter
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from llama_sft_dagster.core.data.accounting import StageCounts
from llama_sft_dagster.core.versions import table_version

PREVIEW_ROWS = 5
PREVIEW_CHARS = 80


def _cell(value) -> str:
    text = "" if value is None else str(value)
    text = text.replace("\n", " ").replace("|", "\\|")
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def markdown_preview(table: pa.Table, columns: list[str], rows: int = PREVIEW_ROWS) -> str:
    head = table.slice(0, rows).select(columns).to_pylist()
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r[c]) for c in columns) + " |" for r in head]
    return "\n".join(lines)


def count_table_md(counts: dict[str, Counter], key_name: str) -> str:
    """Markdown table of counts per key for several named columns (e.g. train/validation per intent)."""
    names = list(counts)
    keys = sorted(set().union(*[c.keys() for c in counts.values()]), key=lambda k: (k is None, str(k)))
    lines = [f"| {key_name} | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines += [f"| {k} | " + " | ".join(str(counts[n].get(k, 0)) for n in names) + " |" for k in keys]
    return "\n".join(lines)


SAMPLES_PER_REASON = 2


def drop_samples(
    kept_path: Path, rejects_path: Path, reasons: set[str], per_reason: int = SAMPLES_PER_REASON
) -> dg.MetadataValue:
    """A table of the first dropped rows per reason (near/exact duplicates with the kept twin below each)."""
    import pyarrow.compute as pc

    from llama_sft_dagster.core.report.funnel import sample_drops, samples_table

    rows, seen = [], Counter()
    cols = ["pair_id", "instruction", "response", "reason", "detail"]
    for batch in pq.ParquetFile(rejects_path).iter_batches(batch_size=4096, columns=cols):
        for row in batch.to_pylist():  # stop reading once every reason has its samples (rejects can be large)
            if seen[row["reason"]] < per_reason:
                seen[row["reason"]] += 1
                rows.append(row)
        if all(seen[r] >= per_reason for r in reasons):
            break
    twin_ids = [r["detail"].split("=", 1)[1] for r in rows if (r["detail"] or "").startswith("duplicate_of=")]
    kept = {}
    if twin_ids:
        table = pq.read_table(kept_path, columns=["pair_id", "instruction", "response"])
        kept = {r["pair_id"]: r for r in table.filter(pc.is_in(table["pair_id"], pa.array(twin_ids))).to_pylist()}
    return table_value(samples_table(sample_drops(rows, per_reason, kept)))


def stage_result(
    path: Path, counts: StageCounts | None = None, extra: dict | None = None, asset_key: str | None = None
) -> dg.MaterializeResult:
    """Result of a data asset: accounting, preview, path, and a content-derived data version."""
    parquet = pq.ParquetFile(path)
    preview = parquet.read_row_group(0) if parquet.num_row_groups else pa.table({})
    metadata: dict = {"path": dg.MetadataValue.path(str(path)), "dagster/row_count": parquet.metadata.num_rows}
    if counts is not None:
        metadata.update(counts.as_metadata())
        rejects = path.parent / "rejects.parquet"
        if counts.dropped and rejects.exists():
            metadata["samples_of_dropped_rows"] = drop_samples(path, rejects, set(counts.dropped))
    if preview.num_rows:
        cols = [c for c in ("pair_id", "instruction", "response", "intent") if c in preview.column_names]
        metadata["preview"] = dg.MetadataValue.md(markdown_preview(preview, cols or preview.column_names[:4]))
    metadata.update(extra or {})
    return dg.MaterializeResult(
        asset_key=asset_key, metadata=metadata, data_version=dg.DataVersion(table_version(path))
    )


def table_value(rows: list[dict], columns: list[str] | None = None) -> dg.MetadataValue:
    """Rows as Dagster table metadata (shown as a table on the asset page, not behind "[Show Markdown]");
    floats rounded to 4 significant digits."""
    from llama_sft_dagster.core.report.tidy import round_float

    columns = columns or list(rows[0]) if rows else (columns or [])
    kinds = {bool: "bool", int: "int", float: "float"}
    first = rows[0] if rows else {}
    schema = dg.TableSchema(columns=[dg.TableColumn(c, kinds.get(type(first.get(c)), "string")) for c in columns])
    records = [
        dg.TableRecord({c: round_float(r[c]) if isinstance(r.get(c), float) else r.get(c) for c in columns})
        for r in rows
    ]
    return dg.MetadataValue.table(records=records, schema=schema)


def rows_markdown(rows: list[dict]) -> str:
    """The same rows as a Markdown table (for files such as run_report.md)."""
    if not rows:
        return "(none)"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "")).replace("|", "\\|") for c in columns) + " |" for r in rows]
    return "\n".join(lines)
