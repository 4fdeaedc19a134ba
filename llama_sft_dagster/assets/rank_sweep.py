"""Rank sweep: one adapter per LoRA rank on identical data, seeds and step budget (train_adapter's code
path and `gpu` pool), then one report table and plot. Not part of sft_pipeline (partitioned); its own job:

    dagster asset materialize -m llama_sft_dagster.definitions --select lora_rank_sweep --partition 16
    dagster asset materialize -m llama_sft_dagster.definitions --select rank_sweep_report
    make sweep RANKS="8 16 32 64 128"      # both, for every rank (the UI: job rank_sweep, pick partitions)
"""

import json

import dagster as dg

from llama_sft_dagster.assets._versioned import versioned_asset
from llama_sft_dagster.assets.adapter_training import plain_values, train_adapter_into
from llama_sft_dagster.assets.model_paths import FORMAT_FILE, base_model_dir
from llama_sft_dagster.config.evaluation import SWEEP_RANKS, RankSweepConfig
from llama_sft_dagster.config.training import TrainConfig
from llama_sft_dagster.core.data.storage import read_parquet
from llama_sft_dagster.housekeeping.pool_guard import GpuPoolGuard
from llama_sft_dagster.resources.artifacts import ArtifactStore
from llama_sft_dagster.resources.gpu import GpuResource
from llama_sft_dagster.resources.tracking import MlflowTracking

RANKS = dg.StaticPartitionsDefinition(list(SWEEP_RANKS))
SWEEP_FILE = "sweep.json"


def rank_config(config: RankSweepConfig, r: int) -> TrainConfig:
    """train_adapter's config at rank r, alpha = alpha_per_rank * r (validated like any TrainConfig)."""
    fields = config.model_dump(exclude={"alpha_per_rank"})
    return TrainConfig(**{**fields, "lora_r": r, "lora_alpha": round(config.alpha_per_rank * r)})


def _adapter_figures(artifacts: ArtifactStore, gpu: GpuResource, adapter, hp: TrainConfig, context) -> dict:
    """Per-intent loss spread on the validation split and effective-rank utilisation of one adapter."""
    from safetensors.torch import load_file

    from llama_sft_dagster.core.evaluation import rank_sweep
    from llama_sft_dagster.core.evaluation.evaluate import score_adapter, validation_rows
    from llama_sft_dagster.core.evaluation.metrics import aggregate

    fmt = json.loads(artifacts.path("sft_dataset", FORMAT_FILE).read_text())
    rows = validation_rows(
        read_parquet(artifacts.path("sft_dataset", "validation.parquet")).to_pylist(),
        read_parquet(artifacts.upstream("validation_pairs", "lora_rank_sweep")),
    )
    plan = gpu.plan(context.log)
    with gpu.exclusive(plan, f"lora_rank_sweep scoring of run {context.run.run_id}", context.log):
        scores = score_adapter(
            base_model_dir(artifacts),
            adapter,
            plan,
            rows,
            max_length=fmt["max_length"],
            batch_size=hp.per_device_eval_batch_size,
        )
    groups = aggregate([{**r, **s} for r, s in zip(rows, scores, strict=True)])
    intents = [m["loss"] for (_, g), m in groups.items() if g.startswith("intent:")]
    return {
        "validation_loss": groups[("validation", "overall")]["loss"],
        **rank_sweep.spread(intents),
        **rank_sweep.rank_utilisation(load_file(str(adapter / "adapter_model.safetensors")), hp.lora_r, hp.lora_alpha),
    }


@versioned_asset(
    group_name="rank_sweep",
    kinds={"pytorch", "peft"},
    partitions_def=RANKS,
    pool="gpu",
    tags={"sft/sweep": "adapter"},
    deps=["sft_dataset", "base_model", "validation_pairs"],
    description="One LoRA adapter per rank r (partition), alpha = 2r, same data, seed and steps as "
    "each other; eval loss, per-intent spread, trainable parameters, time, peak memory and effective-rank "
    "use.",
)
def lora_rank_sweep(
    context: dg.AssetExecutionContext,
    config: RankSweepConfig,
    artifacts: ArtifactStore,
    gpu: GpuResource,
    pool_guard: GpuPoolGuard,
    tracking: MlflowTracking,
) -> dg.MaterializeResult:
    hp = rank_config(config, int(context.partition_key))
    out = artifacts.asset_dir(f"lora_rank_sweep/r{hp.lora_r}")
    metadata = train_adapter_into(
        context, hp, artifacts, gpu, tracking, out, run_name=f"lora_rank_sweep_r{hp.lora_r}", consumer="lora_rank_sweep"
    )
    figures = _adapter_figures(artifacts, gpu, out / "adapter", hp, context)
    row = {
        "lora_r": hp.lora_r,
        "lora_alpha": hp.lora_alpha,
        "max_steps": hp.max_steps,
        "seed": hp.seed,
        **{
            k: plain_values(metadata).get(k)
            for k in (
                "best_eval_loss",
                "trainable_params",
                "train_runtime_s",
                "peak_memory_gb",
                "global_steps",
                "mlflow_run_id",
            )
        },
        **figures,
    }
    (out / SWEEP_FILE).write_text(json.dumps(row, indent=2))
    return dg.MaterializeResult(metadata={**metadata, **figures})


@versioned_asset(
    group_name="rank_sweep",
    kinds={"markdown"},
    tags={"sft/sweep": "report"},
    deps=[lora_rank_sweep],
    description="The rank sweep in one table and plot: eval loss, per-intent spread, trainable "
    "parameters, time, peak memory and effective-rank utilisation (entropy rank / r) per materialized "
    "rank.",
)
def rank_sweep_report(context: dg.AssetExecutionContext, artifacts: ArtifactStore) -> dg.MaterializeResult:
    from llama_sft_dagster.core.evaluation.plots import plot_rank_sweep
    from llama_sft_dagster.core.evaluation.rank_sweep import sweep_markdown
    from llama_sft_dagster.core.training.plots import png_markdown

    files = [artifacts.path("lora_rank_sweep", f"r{r}/{SWEEP_FILE}") for r in SWEEP_RANKS]
    rows = [json.loads(f.read_text()) for f in files if f.exists()]
    if not rows:
        raise dg.Failure(
            "no rank of lora_rank_sweep is materialized yet: materialize some partitions first "
            "(dagster asset materialize --select lora_rank_sweep --partition 16)"
        )
    missing = [r for r, f in zip(SWEEP_RANKS, files, strict=True) if not f.exists()]
    out = artifacts.asset_dir("rank_sweep_report")
    table = sweep_markdown(rows)
    (out / "report.md").write_text(table + "\n")
    plot = plot_rank_sweep(rows, out / "rank_sweep.png")
    context.log.info(f"rank sweep over r={[r['lora_r'] for r in rows]}; missing: {missing or 'none'}")
    plots = {"plot": dg.MetadataValue.md(png_markdown(plot, "rank sweep"))} if plot else {}
    return dg.MaterializeResult(
        metadata={
            "ranks": len(rows),
            "missing_ranks": ", ".join(missing) or "none",
            "table": dg.MetadataValue.md(table),
            "path": dg.MetadataValue.path(str(out)),
            **plots,
        }
    )
