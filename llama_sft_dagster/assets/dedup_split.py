"""Dedup and split group: MinHash-LSH near-duplicate removal, then the stable 95/5 split."""

from collections import Counter

import dagster as dg
import pyarrow.parquet as pq

from llama_sft_dagster.assets._metadata import count_table_md, stage_result
from llama_sft_dagster.config.data import DedupConfig, SplitConfig, code_version_of
from llama_sft_dagster.core.data.dedup import NearDuplicateIndex
from llama_sft_dagster.core.data.split import split_parquet
from llama_sft_dagster.core.data.stages import columns, run_stage
from llama_sft_dagster.resources.artifacts import ArtifactStore


@dg.asset(group_name="dedup_split", kinds={"parquet"}, deps=["parroting_filtered"], code_version=code_version_of("1", DedupConfig),
          description="Drops near-duplicates (datasketch MinHashLSH, threshold 0.8, 128 permutations, word 5-grams), keeping the first of each cluster in input order.")
def deduplicated_pairs(config: DedupConfig, artifacts: ArtifactStore) -> dg.MaterializeResult:
    index = NearDuplicateIndex(config.threshold, config.num_perm, config.shingle_size, config.seed, config.backend)

    def decide(batch):
        return index.add_batch(batch.column("pair_id").to_pylist(), *columns(batch))

    out = run_stage("deduplicated_pairs", artifacts.upstream("parroting_filtered", "deduplicated_pairs"), artifacts.asset_dir("deduplicated_pairs"), decide)
    return stage_result(out.kept_path, out.counts, {"rejects_path": dg.MetadataValue.path(str(out.rejects_path))})


class EmptySplitError(ValueError):
    """Every row was filtered out before the split."""


@dg.multi_asset(
    group_name="dedup_split",
    specs=[
        dg.AssetSpec("train_pairs", deps=["deduplicated_pairs"], kinds={"parquet"}, code_version=code_version_of("1", SplitConfig),
                     description="95% of the deduplicated pairs, by a seeded hash of each pair's content."),
        dg.AssetSpec("validation_pairs", deps=["deduplicated_pairs"], kinds={"parquet"}, code_version=code_version_of("1", SplitConfig),
                     description="5% of the deduplicated pairs, by a seeded hash of each pair's content."),
    ],
)
def split_pairs(config: SplitConfig, artifacts: ArtifactStore):
    source = artifacts.upstream("deduplicated_pairs", "train_pairs")
    rows_in = pq.ParquetFile(source).metadata.num_rows
    if rows_in == 0:
        raise EmptySplitError(f"no pairs left to split: every row was filtered out ({stage_drop_summary(artifacts)})")
    paths = {"train": artifacts.asset_dir("train_pairs") / "data.parquet",
             "validation": artifacts.asset_dir("validation_pairs") / "data.parquet"}
    sides = split_parquet(source, paths["train"], paths["validation"], config.validation_fraction, config.seed)
    shared = {
        "rows_in": rows_in, "train_rows": sides["train"].rows, "validation_rows": sides["validation"].rows,
        "per_source": dg.MetadataValue.md(count_table_md({n: s.per_source for n, s in sides.items()}, "source")),
        "per_intent": dg.MetadataValue.md(count_table_md({n: s.per_intent for n, s in sides.items()}, "intent")),
    }
    for name, path in paths.items():
        yield stage_result(path, asset_key=f"{name}_pairs", extra=shared)


def stage_drop_summary(artifacts: ArtifactStore) -> str:
    """'stage: in -> out (reason n, ...)' for every stage whose files exist, for the empty-split error."""
    parts = []
    for stage in ("raw_pairs", "word_count_filtered", "token_limit_filtered", "english_filtered",
                  "parroting_filtered", "deduplicated_pairs"):
        data, rejects = artifacts.path(stage), artifacts.path(stage, "rejects.parquet")
        if not data.exists():
            continue
        reasons = Counter(pq.read_table(rejects, columns=["reason"]).column("reason").to_pylist()) if rejects.exists() else {}
        detail = ", ".join(f"{r} {n}" for r, n in sorted(reasons.items()))
        parts.append(f"{stage}: {pq.ParquetFile(data).metadata.num_rows} kept ({detail or 'nothing dropped'})")
    return "; ".join(parts)
