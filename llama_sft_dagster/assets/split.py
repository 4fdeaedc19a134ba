"""The stable 95/5 train/validation split of the last data stage's pairs."""

from collections import Counter

import dagster as dg
import pyarrow.parquet as pq

from llama_sft_dagster.assets._metadata import count_table_md, stage_result
from llama_sft_dagster.assets.data_chain import FIRST_INPUT, LAST_STAGE, STAGE_NAMES
from llama_sft_dagster.config.data import SplitConfig
from llama_sft_dagster.core.data.split import split_parquet
from llama_sft_dagster.core.data.storage import row_count
from llama_sft_dagster.core.versions import code_version
from llama_sft_dagster.resources.artifacts import ArtifactStore

SIDES = {"train": "train_pairs", "validation": "validation_pairs"}


class EmptySplitError(ValueError):
    """Every row was filtered out before the split."""


def _split_pairs(config: SplitConfig, artifacts: ArtifactStore):
    source = artifacts.upstream(LAST_STAGE, "train_pairs")
    rows_in = row_count(source)
    if rows_in == 0:
        raise EmptySplitError(f"no pairs left to split: every row was filtered out ({stage_drop_summary(artifacts)})")
    paths = {side: artifacts.asset_dir(asset) / "data.parquet" for side, asset in SIDES.items()}
    sides = split_parquet(source, paths["train"], paths["validation"], config.validation_fraction, config.seed)
    shared = {
        "rows_in": rows_in,
        "train_rows": sides["train"].rows,
        "validation_rows": sides["validation"].rows,
        "per_source": dg.MetadataValue.md(count_table_md({n: s.per_source for n, s in sides.items()}, "source")),
        "per_intent": dg.MetadataValue.md(count_table_md({n: s.per_intent for n, s in sides.items()}, "intent")),
    }
    for side, path in paths.items():
        yield stage_result(path, asset_key=SIDES[side], extra=shared)


def _spec(side: str, version: str) -> dg.AssetSpec:
    share = SplitConfig().validation_fraction if side == "validation" else 1 - SplitConfig().validation_fraction
    return dg.AssetSpec(
        SIDES[side],
        deps=[LAST_STAGE],
        kinds={"parquet"},
        code_version=version,
        description=f"{share:.0%} (default) of the {LAST_STAGE}, by a seeded hash of each pair's content.",
    )


_VERSION = code_version(_split_pairs, configs=[SplitConfig])
split_pairs = dg.multi_asset(
    name="split_pairs", group_name="dedup_split", specs=[_spec(side, _VERSION) for side in SIDES]
)(_split_pairs)


def stage_drop_summary(artifacts: ArtifactStore) -> str:
    """'stage: n kept (reason n, ...)' for every stage whose files exist, for the empty-split error."""
    parts = []
    for stage in (FIRST_INPUT, *STAGE_NAMES):
        data, rejects = artifacts.path(stage), artifacts.path(stage, "rejects.parquet")
        if not data.exists():
            continue
        reasons = (
            Counter(pq.read_table(rejects, columns=["reason"]).column("reason").to_pylist()) if rejects.exists() else {}
        )
        detail = ", ".join(f"{r} {n}" for r, n in sorted(reasons.items()))
        parts.append(f"{stage}: {row_count(data)} kept ({detail or 'nothing dropped'})")
    return "; ".join(parts)
