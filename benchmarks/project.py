"""The project's own data path, measured two ways (run through `benchmarks/data_graph.py`):

- `run_project`: what each data asset body does — `core.stages.run_stage` over Parquet with the real
  filter functions and config defaults, `NearDuplicateIndex` for dedup, the content-hash split written
  as two Parquet files — without Dagster around it;
- `run_dagster`: `dg.materialize` of the real filter, dedup and split assets on a SQLite-backed
  Dagster instance, reading the same raw_pairs Parquet and tokenizer folder from the artifact root.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from llama_sft_dagster.assets.data_chain import DATA_STAGES, LAST_STAGE, STAGE_NAMES
from llama_sft_dagster.config.data import DedupConfig, SplitConfig
from llama_sft_dagster.core.data.split import is_validation
from llama_sft_dagster.core.data.stages import columns, run_stage
from llama_sft_dagster.core.data.storage import read_parquet, write_parquet

DATA_ASSETS = [*STAGE_NAMES, "train_pairs", "validation_pairs"]


def run_project(root: Path, backend: str, meter) -> None:
    """`root` is an artifact root holding raw_pairs/data.parquet and base_model/model (tokenizer)."""
    sp = SplitConfig()
    for stage in DATA_STAGES:  # the declared chain, in order, with each stage's config defaults
        config = stage.config(backend=backend) if stage.config is DedupConfig else stage.config()
        with meter.stage(stage.name) as rec:
            decide = stage.decide(config, root / "base_model" / "model")  # timed: the asset builds it too
            out = run_stage(stage.name, root / stage.upstream / "data.parquet", root / stage.name, decide)
            rec["rows_out"] = out.counts.rows_out

    with meter.stage("split") as rec:
        table = read_parquet(root / LAST_STAGE / "data.parquet")
        mask = pa.array(is_validation(*columns(table), sp.validation_fraction, sp.seed))
        write_parquet(table.filter(pc.invert(mask)), root / "train_pairs" / "data.parquet")
        write_parquet(table.filter(mask), root / "validation_pairs" / "data.parquet")
        rec["rows_out"] = table.num_rows


def run_dagster(root: Path, backend: str, meter) -> None:
    import dagster as dg

    from llama_sft_dagster.definitions import all_assets, build_resources
    from llama_sft_dagster.resources.artifacts import ArtifactStore

    with meter.stage("dagster_materialize") as rec, dg.DagsterInstance.local_temp() as instance:
        result = dg.materialize(
            all_assets, selection=DATA_ASSETS, instance=instance,
            resources=build_resources() | {"artifacts": ArtifactStore(root=str(root))},
            run_config={"ops": {LAST_STAGE: {"config": {"backend": backend}}}},
        )
        rec["success"] = result.success
        rec["rows_out"] = sum(read_parquet(root / n / "data.parquet", columns=["pair_id"]).num_rows
                              for n in ("train_pairs", "validation_pairs"))
