"""The project's own data path, measured two ways (run through `benchmarks/data_graph.py`):

- `run_project`: what each data asset body does — `core.stages.run_stage` over Parquet with the
  real filter functions and config defaults, `NearDuplicateIndex` for dedup, the content-hash split
  (`split_parquet`) — without Dagster around it;
- `run_dagster`: `dg.materialize` of the real filter, dedup and split assets on a SQLite-backed
  Dagster instance, reading the same raw_pairs Parquet and tokenizer folder from the artifact root.
"""

from __future__ import annotations

import time
from pathlib import Path

from llama_sft_dagster.assets.data_chain import DATA_STAGES, LAST_STAGE, STAGE_NAMES
from llama_sft_dagster.config.data import DedupConfig, LanguageConfig, SplitConfig
from llama_sft_dagster.core.data import filters
from llama_sft_dagster.core.data.split import split_parquet
from llama_sft_dagster.core.data.stages import columns, run_stage
from llama_sft_dagster.core.data.storage import read_parquet

DATA_ASSETS = [*STAGE_NAMES, "train_pairs", "validation_pairs"]


def run_project(root: Path, backend: str, meter) -> None:
    """`root` is an artifact root holding raw_pairs/data.parquet and base_model/model (tokenizer)."""
    sp = SplitConfig()
    for stage in DATA_STAGES:  # the declared chain, in order, with each stage's config defaults
        config = stage.config(backend=backend) if stage.config is DedupConfig else stage.config()
        with meter.stage(stage.name) as rec:
            t0 = time.perf_counter()
            decide = stage.decide(config, root / "base_model" / "model")  # timed: the asset builds it too
            setup_s, spent = time.perf_counter() - t0, [0.0]

            def timed(batch, decide=decide, spent=spent):  # the stage's logic without Parquet I/O and accounting
                t1 = time.perf_counter()
                try:
                    return decide(batch)
                finally:
                    spent[0] += time.perf_counter() - t1

            out = run_stage(stage.name, root / stage.upstream / "data.parquet", root / stage.name, timed)
            rec.update(
                rows_out=out.counts.rows_out,
                setup_seconds=round(setup_s, 3),
                decide_seconds=round(spent[0], 3),
                **getattr(decide, "extra_metadata", dict)(),
            )

    with meter.stage("split") as rec:
        sides = split_parquet(
            root / LAST_STAGE / "data.parquet",
            root / "train_pairs" / "data.parquet",
            root / "validation_pairs" / "data.parquet",
            sp.validation_fraction,
            sp.seed,
        )
        rec["rows_out"] = sum(side.rows for side in sides.values())


def lingua_floor(root: Path, meter) -> None:
    """Time lingua's parallel call alone on the language stage's distinct input texts: the part of the
    language stage no change to the project can remove (not counted in the total)."""
    lang = LanguageConfig()
    upstream = next(s.upstream for s in DATA_STAGES if s.config is LanguageConfig)
    table = read_parquet(root / upstream / "data.parquet", columns=["instruction", "response"])
    texts = list(dict.fromkeys(f"{i} {r}".replace("\n", " ") for i, r in zip(*columns(table))))
    detector = filters.language_detector(tuple(lang.languages))
    t0 = time.perf_counter()
    detector.detect_languages_in_parallel_of(texts)
    meter.floors = {"lingua_parallel_seconds": round(time.perf_counter() - t0, 3), "lingua_texts": len(texts)}


def run_dagster(root: Path, backend: str, meter) -> None:
    """`dg.materialize` of the data assets and their accounting checks on a SQLite instance created
    beforehand (a deployment's instance exists before its runs). Also notes the run's own span and
    each step's seconds from the instance's run stats."""
    import dagster as dg

    from llama_sft_dagster.assets.checks import accounting_checks
    from llama_sft_dagster.definitions import all_assets, build_resources
    from llama_sft_dagster.resources.artifacts import ArtifactStore

    checks = [c for c in accounting_checks if any(k.asset_key.path[-1] in DATA_ASSETS for k in c.check_keys)]
    with dg.DagsterInstance.local_temp() as instance:
        resources = build_resources() | {"artifacts": ArtifactStore(root=str(root))}
        with meter.stage("dagster_materialize") as rec:
            result = dg.materialize(
                [*all_assets, *checks],
                selection=DATA_ASSETS,
                instance=instance,
                resources=resources,
                run_config={"ops": {LAST_STAGE: {"config": {"backend": backend}}}},
            )
        stats = instance.get_run_stats(result.run_id)
        rec["success"] = result.success
        rec["run_seconds"] = round(stats.end_time - stats.start_time, 3)
        rec["step_seconds"] = {
            s.step_key: round(s.end_time - s.start_time, 3) for s in instance.get_run_step_stats(result.run_id)
        }
        rec["rows_out"] = sum(
            read_parquet(root / n / "data.parquet", columns=["pair_id"]).num_rows
            for n in ("train_pairs", "validation_pairs")
        )
