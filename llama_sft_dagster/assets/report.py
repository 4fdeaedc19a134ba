"""The run report: the last asset of the job, one page that tells the story of the run of the whole graph.

    dagster asset materialize -m llama_sft_dagster.definitions --select run_report

Tables (Dagster table metadata, shown in place on the asset page): the row funnel per stage with its top
drop reasons, rows per source and intent, every loss with its definition (the glossary), the base-vs-tuned
evaluation, the champion decision and every check of the graph. Links: MLflow (runs table, training run,
registered model) and TensorBoard. Plots: an inline loss sketch, the full charts one click away ("[Show
Markdown]"). The whole report is also written as `run_report.md`.
"""

import json
from collections import Counter

import dagster as dg
import pyarrow.parquet as pq

from llama_sft_dagster.assets._metadata import rows_markdown, table_value
from llama_sft_dagster.assets._versioned import versioned_asset
from llama_sft_dagster.assets.data_chain import DATA_STAGES, LAST_STAGE
from llama_sft_dagster.assets.source_table import SOURCES
from llama_sft_dagster.launch.train import REPORT_FILE
from llama_sft_dagster.resources.artifacts import ArtifactStore

SFT_SPLITS = ("train", "validation")


def _rows(path) -> int:
    return pq.ParquetFile(path).metadata.num_rows


def _reasons(path) -> Counter:
    return Counter(pq.read_table(path, columns=["reason"]).column(0).to_pylist()) if path.exists() else Counter()


def stage_rows(artifacts: ArtifactStore) -> list:
    """StageRows for every stage, raw sources to sft_dataset, from the files the stages wrote."""
    from llama_sft_dagster.core.report.funnel import StageRows

    raw_in = sum(_rows(artifacts.path(s.raw_asset)) for s in SOURCES)
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


def funnel_rows(artifacts: ArtifactStore) -> list[dict]:
    """The row funnel as table rows: stage (with its unit unless pairs), rows in and out, top drop reasons (the
    report, the model card)."""
    from llama_sft_dagster.core.report.funnel import top_reasons

    # the unit in the stage's label where it is not pairs: a column of its own would widen the table past the
    # asset page's value column at 1600 px, and most of its cells would say "pairs"
    def label(s) -> str:
        units = f"{s.unit_in} -> {s.unit}" if s.unit_in else s.unit
        return s.stage if units == "pairs" else f"{s.stage} ({units})"

    return [
        {"stage": label(s), "in": s.rows_in, "out": s.rows_out, "top drop reasons": top_reasons(s.dropped)}
        for s in stage_rows(artifacts)
    ]


def count_rows(counts: dict[str, Counter], key_name: str) -> list[dict]:
    """Rows of counts per key, one column per name (e.g. train/validation per intent)."""
    keys = sorted(set().union(*counts.values()), key=lambda k: (k is None, str(k)))
    return [{key_name: str(k), **{n: c.get(k, 0) for n, c in counts.items()}} for k in keys]


def per_turn_depth(artifacts: ArtifactStore) -> list[dict]:
    """Pairs per turn depth (assistant replies before the pair in its dialogue; 0 for Bitext rows), per split."""
    counts = {
        name: Counter(pq.read_table(artifacts.path(f"{name}_pairs"), columns=["turn_depth"]).column(0).to_pylist())
        for name in SFT_SPLITS
    }
    return count_rows(counts, "turn depth")


def source_funnel(artifacts: ArtifactStore) -> list[dict]:
    """Rows per stage and source (a row per stage, a column per source, so the table stays narrow however many
    stages there are): each source's raw rows/turns, then its pairs in each stage's file."""
    stages = {"raw rows/turns": Counter({s.name: _rows(artifacts.path(s.raw_asset)) for s in SOURCES})}
    for stage in ["raw_pairs", *(s.name for s in DATA_STAGES), "train_pairs", "validation_pairs"]:
        stages[stage] = Counter(pq.read_table(artifacts.path(stage), columns=["source"]).column(0).to_pylist())
    return [{"stage": stage, **{s.name: counts.get(s.name, 0) for s in SOURCES}} for stage, counts in stages.items()]


def per_source_and_intent(artifacts: ArtifactStore) -> tuple[list[dict], list[dict]]:
    """Pairs per source and per intent, one column per split."""
    counts = {name: pq.read_table(artifacts.path(f"{name}_pairs"), columns=["source", "intent"]) for name in SFT_SPLITS}

    def per(column: str) -> list[dict]:
        return count_rows({n: Counter(t.column(column).to_pylist()) for n, t in counts.items()}, column)

    return per("source"), per("intent")


def check_results(context: dg.AssetExecutionContext) -> list[dict]:
    """check, severity, result and run of the latest evaluation of every check of the graph."""
    from llama_sft_dagster.assets import checks, evaluation, training

    # the project's checks by their definitions (a run of selected assets, dg.materialize, has no repository)
    definitions = [*checks.accounting_checks, *dg.load_asset_checks_from_modules([training, evaluation])]
    specs = {s.key: s for c in definitions for s in c.check_specs}
    keys = sorted(specs, key=lambda k: k.to_user_string())
    latest = context.instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    rows = []
    for key in keys:
        record = latest.get(key)
        event = record.event.dagster_event if record and record.event else None
        result = getattr(event.event_specific_data, "passed", None) if event else None
        severity = getattr(getattr(event.event_specific_data, "severity", None), "value", "") if event else ""
        status = "not run" if result is None else "passed" if result else ("WARN" if severity == "WARN" else "FAILED")
        run = "this run" if record and record.run_id == context.run.run_id else (record.run_id[:8] if record else "-")
        # the check's name alone: each starts with its asset's name (asset:name would be one unbreakable word,
        # too wide for the asset page's value column at 1600 px)
        rows.append({"check": key.name, "result": status, "run": run})
    return rows


def loss_rows(report: dict, evaluation: dict) -> list[dict]:
    """Every loss of the run under its glossary name, base and tuned side by side, with its definition."""
    from llama_sft_dagster.core.report.losses import GLOSSARY, sig4

    s = report["summary"]

    def fmt(v) -> str:
        return "" if v is None else f"{sig4(v):g}"

    trained = {
        "train_loss": f"{fmt(s.get('first_train_loss'))} (first) -> {fmt(s.get('final_train_loss'))} (final)",
        "eval_loss": f"best {fmt(s.get('best_eval_loss'))} at step {s.get('best_eval_step')}, "
        f"final {fmt(s.get('final_eval_loss'))}",
    }
    rows = [{"loss": n, "base model": "", "tuned model": v, "definition": GLOSSARY[n]} for n, v in trained.items()]
    for name in ("validation_loss", "held_out_loss", "evaluation_loss"):
        base, tuned = evaluation.get(f"{name}_base"), evaluation.get(f"{name}_tuned")
        rows.append({"loss": name, "base model": fmt(base), "tuned model": fmt(tuned), "definition": GLOSSARY[name]})
    return rows


def report_sections(context: dg.AssetExecutionContext, artifacts: ArtifactStore, report: dict) -> dict:
    """{section: rows} of the report, in reading order."""
    from llama_sft_dagster.assets.evaluation import DECISION_FILE, SUMMARY_FILE
    from llama_sft_dagster.core.evaluation.metrics import table_rows

    evaluation = json.loads(artifacts.upstream("adapter_evaluation", "run_report", SUMMARY_FILE).read_text())
    decision = json.loads(artifacts.upstream("champion_model", "run_report", DECISION_FILE).read_text())
    metrics = pq.read_table(artifacts.path("adapter_evaluation", "metrics.parquet")).to_pylist()
    per_source, per_intent = per_source_and_intent(artifacts)
    return {
        "funnel": funnel_rows(artifacts),
        "rows_per_source": per_source,
        "rows_per_stage": source_funnel(artifacts),
        "rows_per_turn_depth": per_turn_depth(artifacts),
        "losses": loss_rows(report, evaluation),
        # losses only (accuracy is on adapter_evaluation's page): seven columns do not fit beside the keys
        "evaluation": [
            {k: r[k] for k in ("set", "group", "rows", "loss_base", "loss_tuned")}
            for r in table_rows(metrics, kinds=("overall", "source", "category"))
        ],
        # one field per row: the reason is a sentence, which wraps in a column of its own
        "champion": [
            {"field": "registered version", "value": str(decision["version"])},
            {"field": "promoted", "value": "yes" if decision["promoted"] else "no"},
            {"field": "reason", "value": decision["reason"]},
        ],
        "checks": check_results(context),
        "rows_per_intent": per_intent,
        # how the run was computed: micro-batch x accumulation, checkpointing, kernels (gpu resource, batch planner)
        "batch_plan": [{"batch plan": report.get("batch_plan") or "not recorded"}],
    }


LINK_LABELS = {
    "mlflow_experiment": "MLflow runs",
    "mlflow_run": "training run",
    "registry": "registered model",
    "tensorboard": "TensorBoard",
}


def links(report: dict, context: dg.AssetExecutionContext) -> dict[str, str]:
    """URLs of the MLflow runs table, training run and registered model, and of TensorBoard on this run."""
    latest = {
        name: context.instance.get_latest_materialization_event(dg.AssetKey(name))
        for name in ("train_adapter", "champion_model")
    }
    urls = {}
    for event in latest.values():
        md = event.asset_materialization.metadata if event and event.asset_materialization else {}
        for key in LINK_LABELS:
            if key in md:
                urls[key] = md[key].value
    if "mlflow_run" not in urls and report.get("mlflow_url"):
        urls["mlflow_run"] = report["mlflow_url"]
    return urls


def links_markdown(urls: dict[str, str]) -> str:
    """The links as one line of labelled Markdown links: shown in place on the asset page (under Dagster's
    1,000-character limit for Markdown), where a bare URL would be one long word widening the page past 1600 px
    (an MLflow run URL ends in a 62-character run id and view with no place to break)."""
    return " · ".join(f"[{LINK_LABELS[k]}]({url})" for k, url in urls.items())


@versioned_asset(
    group_name="report",
    kinds={"markdown"},
    deps=["champion_model", "adapter_evaluation", "merged_model"],
    description="The last step: one page for the whole run. Tables of the row funnel with drop reasons, rows "
    "per source and intent, every loss with its definition (the glossary), the base-vs-tuned evaluation, the "
    "champion decision and every check; links to MLflow (runs, training run, registered model) and "
    "TensorBoard; plots one click away.",
)
def run_report(context: dg.AssetExecutionContext, artifacts: ArtifactStore) -> dg.MaterializeResult:
    from llama_sft_dagster.core.report.losses import glossary_markdown
    from llama_sft_dagster.core.report.sparkline import inline_markdown, loss_sketch_png
    from llama_sft_dagster.core.training.plots import png_markdown

    report = json.loads(artifacts.upstream("train_adapter", "run_report", REPORT_FILE).read_text())
    sections = report_sections(context, artifacts, report)
    losses = report["losses"]
    sketch = (
        inline_markdown(loss_sketch_png(losses["train"], losses["eval"]), "loss curve") if losses["train"] else None
    )
    plots = {f"{k}_plot": png_markdown(p, k) for k, p in report["plots"].items()}
    urls = links(report, context)
    out = artifacts.asset_dir("run_report") / "run_report.md"
    text = {**{k: rows_markdown(v) for k, v in sections.items()}, "glossary": glossary_markdown(), **plots}
    text["links"] = "\n".join(f"- {LINK_LABELS[k]}: {url}" for k, url in urls.items())
    out.write_text("\n\n".join(f"## {k}\n\n{v}" for k, v in text.items()) + "\n")
    checks = sections["checks"]
    return dg.MaterializeResult(
        metadata={
            **{k: table_value(v) for k, v in sections.items()},
            "checks_passed": f"{sum(c['result'] == 'passed' for c in checks)} of {len(checks)}",
            **({"links": dg.MetadataValue.md(links_markdown(urls))} if urls else {}),
            **({"loss_curve": dg.MetadataValue.md(sketch)} if sketch else {}),
            **{k: dg.MetadataValue.md(v) for k, v in plots.items()},
            "pairs_kept": sections["funnel"][-2]["out"],
            "samples_trained_on": sections["funnel"][-1]["out"],
            "path": dg.MetadataValue.path(str(out)),
        }
    )
