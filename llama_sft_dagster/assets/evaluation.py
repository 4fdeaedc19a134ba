"""Evaluation group: adapter_evaluation (base vs tuned, per intent/category/domain, with generation
samples) -> champion_model (MLflow registry alias `champion`, moved only to a better model).

    dagster asset materialize -m llama_sft_dagster.definitions --select 'adapter_evaluation+'
"""

import json
from pathlib import Path

import dagster as dg
import pyarrow as pa

from llama_sft_dagster.assets._metadata import table_value
from llama_sft_dagster.assets._versioned import versioned_asset
from llama_sft_dagster.assets.model_paths import FORMAT_FILE, RUN_FILE, base_model_dir
from llama_sft_dagster.assets.source_table import HELD_OUT_SOURCE as held_out_source
from llama_sft_dagster.assets.training import LINEAGE_FILE
from llama_sft_dagster.config.evaluation import ChampionConfig, EvaluationConfig
from llama_sft_dagster.core.data.storage import read_parquet, write_parquet
from llama_sft_dagster.core.report.losses import GLOSSARY, SETS
from llama_sft_dagster.core.report.tidy import round_float, tidy
from llama_sft_dagster.housekeeping.pool_guard import GpuPoolGuard
from llama_sft_dagster.resources.artifacts import ArtifactStore
from llama_sft_dagster.resources.data_sources import MultiwozSource
from llama_sft_dagster.resources.gpu import GpuResource
from llama_sft_dagster.resources.tracking import MlflowTracking

SUMMARY_FILE = "evaluation.json"
DECISION_FILE = "decision.json"  # champion_model's last decision, for run_report
MODELS = ("base", "tuned")


def evaluation_set(artifacts: ArtifactStore, held_out, config: EvaluationConfig) -> tuple[dict, list, dict]:
    """(sft format, rows: validation split + held-out dev/test MultiWOZ pairs, counts)."""
    import pyarrow.parquet as pq

    from llama_sft_dagster.core.evaluation.evaluate import held_out_rows, validation_rows
    from llama_sft_dagster.core.training.masking import spread
    from llama_sft_dagster.core.training.tokenized import TOKEN_COLUMNS

    fmt = json.loads(artifacts.upstream("sft_dataset", "adapter_evaluation", FORMAT_FILE).read_text())
    path = artifacts.upstream("sft_dataset", "adapter_evaluation", "validation.parquet")
    # the text columns: scoring templates and tokenizes each model's way (not the stored trainer token ids)
    text = [c for c in pq.read_schema(path).names if c not in TOKEN_COLUMNS]
    sft_rows = read_parquet(path, columns=text).to_pylist()
    rows = validation_rows(sft_rows, read_parquet(artifacts.upstream("validation_pairs", "adapter_evaluation")))
    in_split = len(rows)
    if config.validation_max_rows:
        rows = [rows[i] for i in spread(range(in_split), config.validation_max_rows)]
    source = (held_out_source.name, held_out_source.pairs)
    held_out, counts = held_out_rows(held_out.load_held_out(), config.held_out_max_pairs, fmt["system_prompt"], source)
    return fmt, rows + held_out, {"validation_rows": len(rows), "validation_rows_in_split": in_split, **counts}


def _log_to_mlflow(tracking: MlflowTracking, context, config: EvaluationConfig, summary: dict, table, plot) -> str:
    """One MLflow run `adapter_evaluation` tagged with the training run's id; returns its id ('' if unreachable)."""
    import mlflow

    tags = {"sft.training_run_id": summary["training_mlflow_run_id"], "sft.merged_model": summary["tuned_model"]}
    with tracking.start_run(
        "adapter_evaluation", params=config.model_dump(), dagster_run_id=context.run.run_id, tags=tags
    ) as run:
        if run is None:
            return ""
        # the glossary's names (core/report/losses.py), per group after the dot: validation_loss_tuned.intent.x
        mlflow.log_metrics(
            {
                f"{SETS[r['set']]}_{m}.{r['group'].replace(':', '.')}": r[f"{m}_loss"]
                for r in table
                if r["set"] in SETS
                for m in MODELS
            }
        )
        mlflow.log_metrics({k: v for k, v in summary.items() if k.split("_loss_")[0] + "_loss" in GLOSSARY})
        if plot is not None:
            mlflow.log_artifact(str(plot))
        return run.info.run_id


@versioned_asset(
    group_name="evaluation",
    kinds={"pytorch", "parquet"},
    pool="gpu",
    deps=["merged_model", "sft_dataset", "validation_pairs", "base_model", held_out_source.source_asset],
    description="Base vs tuned (merged) model on the validation split and on held-out MultiWOZ dev/test "
    "dialogues: reply-token loss, perplexity, next-token accuracy per intent, category, domain and overall; "
    "greedy generation samples per intent and domain.",
)
def adapter_evaluation(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    artifacts: ArtifactStore,
    multiwoz: MultiwozSource,
    gpu: GpuResource,
    pool_guard: GpuPoolGuard,
    tracking: MlflowTracking,
) -> dg.MaterializeResult:
    from llama_sft_dagster.core.evaluation import evaluate as ev
    from llama_sft_dagster.core.evaluation import metrics, plots
    from llama_sft_dagster.core.evaluation import samples as smp

    fmt, rows, counts = evaluation_set(artifacts, multiwoz, config)
    picked = smp.pick_samples(rows, config.samples_per_group, config.sample_seed)
    tuned = artifacts.upstream("merged_model", "adapter_evaluation", "model")
    plan, out = gpu.plan(context.log), artifacts.new_version("adapter_evaluation", context.run.run_id)
    with gpu.exclusive(plan, f"adapter_evaluation of run {context.run.run_id}", context.log):
        scored, samples = ev.base_vs_tuned(
            base_model_dir(artifacts),
            tuned,
            plan,
            rows,
            picked,
            max_length=fmt["max_length"],
            batch_size=config.per_device_eval_batch_size,
            max_new_tokens=config.max_new_tokens,
        )
    table = metrics.compare(ev.model_scores(scored, "base"), ev.model_scores(scored, "tuned"))
    for name, data in (("rows", rows), ("scores", scored), ("metrics", table), ("samples", samples)):
        write_parquet(pa.Table.from_pylist(data), out / f"{name}.parquet")
    summary = evaluation_summary(artifacts, tuned, scored, table, counts)
    plot = plots.plot_group_losses(table, out / "per_intent_loss.png")
    summary["mlflow_run_id"] = _log_to_mlflow(tracking, context, config, summary, table, plot)
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    removed = artifacts.publish("adapter_evaluation", out)
    return dg.MaterializeResult(metadata=evaluation_metadata(summary, table, samples, plot, out, removed))


def evaluation_summary(artifacts: ArtifactStore, tuned: Path, scored: list, table: list, counts: dict) -> dict:
    """evaluation.json: the models compared, the training run, every loss of the glossary (unrounded), counts."""
    from llama_sft_dagster.core.evaluation import evaluate as ev
    from llama_sft_dagster.core.evaluation import metrics
    from llama_sft_dagster.core.report.losses import evaluation_losses

    adapter = Path(json.loads(artifacts.path("merged_model", LINEAGE_FILE).read_text())["adapter"])
    run_file = adapter.parent / RUN_FILE
    pooled = {m: metrics.pooled_loss(ev.model_scores(scored, m)) for m in ("base", "tuned")}
    accuracy = {
        f"{r['set']}_accuracy_{m}": r[f"{m}_accuracy"] for r in table if r["group"] == "overall" for m in MODELS
    }
    training_run = json.loads(run_file.read_text()).get("mlflow_run_id", "") if run_file.exists() else ""
    return {
        "tuned_model": str(tuned),
        "adapter": str(adapter),
        "training_mlflow_run_id": training_run,
        **evaluation_losses(table, pooled),
        **accuracy,
        **counts,
    }


def evaluation_metadata(summary: dict, table: list, samples: list, plot, out: Path, removed: list) -> dict:
    """The asset page: the losses (4 significant digits), the comparison and the samples as tables, the plot."""
    from llama_sft_dagster.core.evaluation import metrics
    from llama_sft_dagster.core.evaluation.samples import samples_rows
    from llama_sft_dagster.core.training.plots import png_markdown

    worse = metrics.worse_groups(table)
    return {
        **tidy({k: v for k, v in summary.items() if k not in ("tuned_model", "adapter")}),
        "groups_tuned_worse": len(worse),
        "metrics": table_value(metrics.table_rows(table)),
        "samples": table_value(samples_rows(samples)),
        **({"per_intent_plot": dg.MetadataValue.md(png_markdown(plot, "per-intent loss"))} if plot else {}),
        "path": dg.MetadataValue.path(str(out)),
        "version": out.name,
        "versions_removed": ", ".join(removed),
    }


def _summary(artifacts: ArtifactStore, consumer: str = "adapter_evaluation") -> dict:
    return json.loads(artifacts.upstream("adapter_evaluation", consumer, SUMMARY_FILE).read_text())


@dg.asset_check(
    asset=adapter_evaluation,
    blocking=True,
    description="evaluation_loss_tuned < evaluation_loss_base: the tuned model's loss over all evaluation rows "
    "(validation + held-out) is below the base model's. "
    "Blocking: champion_model (the registry promotion) does not run after a failure.",
)
def adapter_evaluation_beats_base(artifacts: ArtifactStore) -> dg.AssetCheckResult:
    s = _summary(artifacts)
    return dg.AssetCheckResult(
        passed=s["evaluation_loss_tuned"] < s["evaluation_loss_base"],
        metadata=tidy({k: s[k] for k in ("evaluation_loss_base", "evaluation_loss_tuned")}),
    )


@dg.asset_check(
    asset=adapter_evaluation,
    description="WARN listing every intent, category and domain (validation "
    "and held-out) where the tuned model's loss is above the base model's.",
)
def adapter_evaluation_no_worse_group(artifacts: ArtifactStore) -> dg.AssetCheckResult:
    from llama_sft_dagster.core.evaluation.metrics import worse_groups

    worse = worse_groups(read_parquet(artifacts.path("adapter_evaluation", "metrics.parquet")).to_pylist())
    return dg.AssetCheckResult(
        passed=not worse,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"worse_groups": len(worse), "groups": ", ".join(worse) or "none"},
    )


def _champion_loss(
    champion, rows: list, fmt: dict, config: EvaluationConfig, gpu: GpuResource, context
) -> float | None:
    """Pooled loss of the current champion on the challenger's evaluation rows (None: no champion to compare)."""
    from llama_sft_dagster.core.evaluation.evaluate import score_model
    from llama_sft_dagster.core.evaluation.metrics import pooled_loss

    if champion is None:
        return None
    source = Path(champion.source)
    if not (source / "config.json").exists():
        context.log.warning(
            f"champion v{champion.version}'s files are gone ({source}): it cannot be compared, "
            "so the challenger is judged against its base model only"
        )
        return None
    plan = gpu.plan(context.log)
    with gpu.exclusive(plan, f"champion_model of run {context.run.run_id}", context.log):
        scores = score_model(
            source, plan, rows, max_length=fmt["max_length"], batch_size=config.per_device_eval_batch_size
        )
    return pooled_loss(scores)


@versioned_asset(
    group_name="evaluation",
    kinds={"mlflow"},
    deps=["adapter_evaluation"],
    pool="gpu",
    description="Registers the evaluated merged model in the MLflow model registry and moves the alias "
    "`champion` to it only when its reply-token loss beats the current champion's on the same rows.",
)
def champion_model(
    context: dg.AssetExecutionContext,
    config: ChampionConfig,
    artifacts: ArtifactStore,
    gpu: GpuResource,
    pool_guard: GpuPoolGuard,
    tracking: MlflowTracking,
) -> dg.MaterializeResult:
    from llama_sft_dagster.assets.model_card import publish_card
    from llama_sft_dagster.resources.model_registry import RegisteredModel

    s = _summary(artifacts, "champion_model")
    challenger = Path(s["tuned_model"])
    registry = RegisteredModel(tracking.resolved_uri(), config.registered_model_name)
    version, decision, champion_loss = register_and_decide(registry, s, config, gpu, context, artifacts)
    card = publish_card(context, artifacts, registry, version, decision.reason)  # README.md + MLflow
    if decision.promote:
        registry.promote(version.version)
        for folder in (challenger.parent, Path(s["adapter"]).parent):  # merged model and its adapter version
            artifacts.mark_promoted(folder, f"{config.registered_model_name} v{version.version}")
    current = registry.champion()
    context.log.info(f"champion_model: {decision.reason}; champion is v{current.version if current else '-'}")
    (artifacts.asset_dir("champion_model") / DECISION_FILE).write_text(
        json.dumps({"promoted": decision.promote, "reason": decision.reason, "version": int(version.version)})
    )
    registry_url = registry.version_url(version.version, tracking.ui_url)
    return dg.MaterializeResult(
        metadata={
            "promoted": decision.promote,
            "reason": decision.reason,
            "challenger_version": int(version.version),
            "champion_version": int(current.version) if current else 0,
            "evaluation_loss_challenger": round_float(s["evaluation_loss_tuned"]),
            "evaluation_loss_champion_before": round_float(champion_loss) if champion_loss is not None else "none",
            "registry": dg.MetadataValue.url(registry_url),
            "champion_path": dg.MetadataValue.path(current.source if current else ""),
            "model_card": dg.MetadataValue.path(str(card)),
        }
    )


def register_and_decide(registry, s: dict, config: ChampionConfig, gpu: GpuResource, context, artifacts):
    """(the challenger's model version, the decision, the champion's loss on the same rows or None). A version
    already registered for this folder is reused; the version hangs on the training run (its MLflow page lists it)."""
    from llama_sft_dagster.core.evaluation.promotion import decide

    challenger, champion = Path(s["tuned_model"]), registry.champion()
    rows = read_parquet(artifacts.path("adapter_evaluation", "rows.parquet")).to_pylist()
    fmt = json.loads(artifacts.path("sft_dataset", FORMAT_FILE).read_text())
    same = champion is not None and Path(champion.source) == challenger
    champion_loss = None if same else _champion_loss(champion, rows, fmt, EvaluationConfig(), gpu, context)
    decision = decide(s["evaluation_loss_tuned"], s["evaluation_loss_base"], champion_loss, config.min_improvement)
    if same:
        return champion, type(decision)(False, f"v{champion.version} is this model and already champion"), None
    tags = {
        "evaluation_loss_tuned": s["evaluation_loss_tuned"],
        "evaluation_loss_base": s["evaluation_loss_base"],
        "evaluation_loss_champion": champion_loss,
        "decision": decision.reason,
        "evaluation_run_id": s.get("mlflow_run_id", ""),
    }
    version = registry.register(str(challenger), tags, run_id=s.get("training_mlflow_run_id") or s.get("mlflow_run_id"))
    return version, decision, champion_loss
