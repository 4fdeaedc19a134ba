"""The run report: one asset page that tells the story of the last run of the whole graph.

    dagster asset materialize -m llama_sft_dagster.definitions --select run_report

Sections (each a metadata entry; short ones show in place on the asset page, the Dagster UI hides
Markdown longer than 1,000 characters behind "[Show Markdown]"): the row funnel per stage with its top
drop reasons, rows per source, losses, the masking / merge / accounting check results, the MLflow run
(URL), an inline loss curve, and the full plots. The whole report is also written as `run_report.md`.
"""

from collections import Counter

import dagster as dg
import pyarrow.parquet as pq

from llama_sft_dagster.assets._metadata import count_table_md
from llama_sft_dagster.assets._versioned import versioned_asset
from llama_sft_dagster.assets.data_chain import DATA_STAGES, LAST_STAGE
from llama_sft_dagster.resources.artifacts import ArtifactStore

SFT_SPLITS = ("train", "validation")


def _rows(path) -> int:
    return pq.ParquetFile(path).metadata.num_rows


def _reasons(path) -> Counter:
    return Counter(pq.read_table(path, columns=["reason"]).column(0).to_pylist()) if path.exists() else Counter()


def stage_rows(artifacts: ArtifactStore) -> list:
    """StageRows for every stage, raw sources to sft_dataset, from the files the stages wrote."""
    from llama_sft_dagster.core.report.funnel import StageRows

    raw_in = _rows(artifacts.path("bitext_raw")) + _rows(artifacts.path("multiwoz_raw"))
    stages = [
        StageRows(
            "raw_pairs",
            raw_in,
            _rows(artifacts.path("raw_pairs")),
            _reasons(artifacts.path("raw_pairs", "rejects.parquet")),
            "pairs",
            "rows+turns",
        )
    ]
    for stage in DATA_STAGES:
        stages.append(
            StageRows(
                stage.name,
                _rows(artifacts.path(stage.upstream)),
                _rows(artifacts.path(stage.name)),
                _reasons(artifacts.path(stage.name, "rejects.parquet")),
            )
        )
    split = _rows(artifacts.path("train_pairs")) + _rows(artifacts.path("validation_pairs"))
    stages.append(StageRows("train+validation", _rows(artifacts.path(LAST_STAGE)), split))
    sft_out = sum(_rows(artifacts.path("sft_dataset", f"{s}.parquet")) for s in SFT_SPLITS)
    stages.append(
        StageRows("sft_dataset", split, sft_out, _reasons(artifacts.path("sft_dataset", "rejects.parquet")), "samples")
    )
    return stages


def per_source_and_intent(artifacts: ArtifactStore) -> tuple[str, str]:
    counts = {name: pq.read_table(artifacts.path(f"{name}_pairs"), columns=["source", "intent"]) for name in SFT_SPLITS}
    per_source = {n: Counter(t.column("source").to_pylist()) for n, t in counts.items()}
    per_intent = {n: Counter(t.column("intent").to_pylist()) for n, t in counts.items()}
    return count_table_md(per_source, "source (pairs)"), count_table_md(per_intent, "intent (pairs)")


def check_results(context: dg.AssetExecutionContext) -> str:
    """| check | result | run | of the latest evaluation of every check of the graph."""
    from llama_sft_dagster.assets import checks, training

    # the project's checks by their definitions (a run of selected assets, dg.materialize, has no repository)
    definitions = [*checks.accounting_checks, *dg.load_asset_checks_from_modules([training])]
    keys = sorted({k for c in definitions for k in c.check_keys}, key=lambda k: k.to_user_string())
    latest = context.instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    lines = ["| check | result | run |", "|---|---|---|"]
    for key in keys:
        record = latest.get(key)
        evaluation = (
            record.event.dagster_event.event_specific_data
            if record and record.event and record.event.dagster_event
            else None
        )
        result = ("passed" if evaluation.passed else "FAILED") if hasattr(evaluation, "passed") else "not run"
        run = "this run" if record and record.run_id == context.run.run_id else (record.run_id[:8] if record else "-")
        lines.append(f"| {key.asset_key.to_user_string()}:{key.name} | {result} | {run} |")
    return "\n".join(lines)


def losses_md(report: dict) -> str:
    from llama_sft_dagster.core.report.tidy import tidy

    s = report["summary"]
    rows = tidy(
        {
            "first train loss": s.get("first_train_loss"),
            "final train loss": s.get("final_train_loss"),
            "best eval loss": s.get("best_eval_loss"),
            "at step": s.get("best_eval_step"),
            "final eval loss": s.get("final_eval_loss"),
            "optimizer steps": s.get("global_steps"),
            "token efficiency (supervised / all positions, every batch)": report.get("token_efficiency"),
        }
    )
    return "\n".join(["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows.items())])


@versioned_asset(
    group_name="training",
    kinds={"markdown"},
    deps=["merged_model"],
    description="One page for the whole run: row funnel with drop reasons, rows per source and intent, losses, "
    "check results, the MLflow run and the plots (inline loss curve).",
)
def run_report(context: dg.AssetExecutionContext, artifacts: ArtifactStore) -> dg.MaterializeResult:
    import json

    from llama_sft_dagster.core.report.funnel import funnel_markdown
    from llama_sft_dagster.core.report.sparkline import inline_markdown, loss_sketch_png
    from llama_sft_dagster.core.training.plots import png_markdown

    report = json.loads(artifacts.upstream("train_adapter", "run_report", "report.json").read_text())
    stages = stage_rows(artifacts)
    per_source, per_intent = per_source_and_intent(artifacts)
    sections = {
        "funnel": funnel_markdown(stages),
        "rows_per_source": per_source,
        "losses": losses_md(report),
        "checks": check_results(context),
        "rows_per_intent": per_intent,
        "batch_plan": report.get("batch_plan") or "not recorded",  # how the run was computed (gpu resource)
    }
    sketch = (
        inline_markdown(loss_sketch_png(report["losses"]["train"], report["losses"]["eval"]), "loss curve")
        if report["losses"]["train"]
        else None
    )
    plots = {f"{k}_plot": png_markdown(p, k) for k, p in report["plots"].items()}
    out = artifacts.asset_dir("run_report") / "run_report.md"
    out.write_text("\n\n".join(f"## {k}\n\n{v}" for k, v in {**sections, **plots}.items()) + "\n")
    links = {"mlflow_run": dg.MetadataValue.url(report["mlflow_url"])} if report.get("mlflow_url") else {}
    md = {k: dg.MetadataValue.md(v) for k, v in sections.items()}
    return dg.MaterializeResult(
        metadata={
            "funnel": md.pop("funnel"),
            **({"loss_curve": dg.MetadataValue.md(sketch)} if sketch else {}),
            **links,
            **md,
            **{k: dg.MetadataValue.md(v) for k, v in plots.items()},
            "pairs_kept": stages[-2].rows_out,
            "samples_trained_on": stages[-1].rows_out,
            "tensorboard_run": dg.MetadataValue.path(report["tensorboard_run"]),
            "path": dg.MetadataValue.path(str(out)),
        }
    )
