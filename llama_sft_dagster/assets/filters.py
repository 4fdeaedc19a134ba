"""The row-dropping stages (the seed's four filters, then near-duplicate removal), one asset each,
generated from the declared chain (assets/data_chain.py).

Each asset streams its input in batches and writes `data.parquet` (kept) and `rejects.parquet` (dropped
rows with stage, reason and detail), and reports rows_in / rows_out / dropped_<reason>.
"""

import dagster as dg

from llama_sft_dagster.assets._metadata import stage_result
from llama_sft_dagster.assets.data_chain import DATA_STAGES, DataStage
from llama_sft_dagster.assets.model_paths import BASE_TOKENIZER_ASSET, base_tokenizer_dir
from llama_sft_dagster.core.data.stages import run_stage
from llama_sft_dagster.core.versions import code_version
from llama_sft_dagster.resources.artifacts import ArtifactStore


def run_data_stage(stage: DataStage, config: dg.Config, artifacts: ArtifactStore) -> dg.MaterializeResult:
    """Load the upstream file, decide every row with the stage's logic, write kept rows and rejects."""
    if stage.needs_tokenizer:
        artifacts.upstream(BASE_TOKENIZER_ASSET, stage.name, "tokenizer/tokenizer_config.json")
    decide = stage.decide(config, base_tokenizer_dir(artifacts))
    out = run_stage(stage.name, artifacts.upstream(stage.upstream, stage.name), artifacts.asset_dir(stage.name), decide)
    extra = getattr(decide, "extra_metadata", dict)()  # figures a stage knows once it has run
    return stage_result(
        out.kept_path, out.counts, {"rejects_path": dg.MetadataValue.path(str(out.rejects_path)), **extra}
    )


def stage_asset(stage: DataStage) -> dg.AssetsDefinition:
    def materialize(config, artifacts: ArtifactStore) -> dg.MaterializeResult:
        return run_data_stage(stage, config, artifacts)

    materialize.__annotations__["config"] = stage.config  # Dagster reads the config schema from the annotation
    deps = [stage.upstream, *([BASE_TOKENIZER_ASSET] if stage.needs_tokenizer else [])]
    return dg.asset(
        name=stage.name,
        group_name=stage.group,
        kinds={"parquet"},
        deps=deps,
        code_version=code_version(run_data_stage, stage.decide, configs=[stage.config]),
        description=stage.describe(),
    )(materialize)


data_stage_assets = [stage_asset(s) for s in DATA_STAGES]
