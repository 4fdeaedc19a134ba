"""Accounting checks: every stage's rows in = rows kept + rows dropped (with a reason), from the files.

The checks read the Parquet files themselves rather than the metadata the asset reported, so a
stage that wrote fewer rows than it claimed fails here. Blocking: unbalanced data must not flow on.
"""

from collections import Counter

import dagster as dg
import pyarrow.parquet as pq

from llama_sft_dagster.assets.data_chain import DATA_STAGES, LAST_STAGE
from llama_sft_dagster.assets.source_table import SOURCES
from llama_sft_dagster.core.data.accounting import check_balance
from llama_sft_dagster.core.data.storage import row_count as _rows
from llama_sft_dagster.resources.artifacts import ArtifactStore


def _result(passed: bool, text: str, metadata: dict) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=passed, description=text, metadata=metadata)


def stage_balance(artifacts: ArtifactStore, stage: str, upstream: str) -> dg.AssetCheckResult:
    rejects = pq.read_table(artifacts.path(stage, "rejects.parquet"), columns=["reason"])
    dropped = Counter(rejects.column("reason").to_pylist())
    rows_in, rows_out = _rows(artifacts.path(upstream)), _rows(artifacts.path(stage))
    passed, text = check_balance(rows_in, rows_out, dropped)
    return _result(
        passed,
        text,
        {"rows_in": rows_in, "rows_out": rows_out, **{f"dropped_{r}": n for r, n in sorted(dropped.items())}},
    )


def split_balance(artifacts: ArtifactStore) -> dg.AssetCheckResult:
    rows_in = _rows(artifacts.path(LAST_STAGE))
    train, validation = _rows(artifacts.path("train_pairs")), _rows(artifacts.path("validation_pairs"))
    passed, text = check_balance(rows_in, train + validation, {})
    return _result(passed, text, {"rows_in": rows_in, "train_rows": train, "validation_rows": validation})


def pairs_balance(artifacts: ArtifactStore) -> dg.AssetCheckResult:
    """Each source's raw rows/turns = its pairs x units per pair (a turn pair uses two turns) + rejects, summed."""
    sources = Counter(pq.read_table(artifacts.path("raw_pairs"), columns=["source"]).column("source").to_pylist())
    rejects = pq.read_table(artifacts.path("raw_pairs", "rejects.parquet"), columns=["reason"])
    dropped = Counter(rejects.column("reason").to_pylist())
    rows_in = sum(_rows(artifacts.path(s.raw_asset)) for s in SOURCES)
    rows_out = sum(s.pairs.units_per_pair * sources.get(s.name, 0) for s in SOURCES)
    passed, text = check_balance(rows_in, rows_out, dropped)
    return _result(
        passed,
        f"in raw rows/turns: {text}",
        {"rows_in": rows_in, "rows_out": rows_out, **{f"dropped_{r}": n for r, n in sorted(dropped.items())}},
    )


def _stage_check(stage: str, upstream: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=stage,
        name="rows_accounted_for",
        blocking=True,
        description=f"rows of {upstream} = rows kept by {stage} + rows in its rejects file",
    )
    def _check(artifacts: ArtifactStore) -> dg.AssetCheckResult:
        return stage_balance(artifacts, stage, upstream)

    return _check


@dg.asset_check(
    asset="train_pairs",
    name="rows_accounted_for",
    blocking=True,
    description=f"rows of {LAST_STAGE} = train rows + validation rows",
)
def split_rows_accounted_for(artifacts: ArtifactStore) -> dg.AssetCheckResult:
    return split_balance(artifacts)


@dg.asset_check(
    asset="raw_pairs",
    name="rows_accounted_for",
    blocking=True,
    description=" + ".join(f"{s.name} {s.pairs.unit}" for s in SOURCES)
    + " = "
    + " + ".join(f"{s.pairs.units_per_pair} x {s.name} pairs" for s in SOURCES)
    + " + rejected rows/turns",
)
def raw_pairs_rows_accounted_for(artifacts: ArtifactStore) -> dg.AssetCheckResult:
    return pairs_balance(artifacts)


accounting_checks = [_stage_check(s.name, s.upstream) for s in DATA_STAGES] + [
    raw_pairs_rows_accounted_for,
    split_rows_accounted_for,
]
