"""Training group: sft_dataset (templated rows + masking checks) -> train_adapter (LoRA SFT) -> merged_model.

    dagster asset materialize -m llama_sft_dagster.definitions --select 'sft_dataset*'
"""

import json
from pathlib import Path

import dagster as dg

from llama_sft_dagster.assets.model_paths import base_model_dir
from llama_sft_dagster.assets._versioned import versioned_asset
from llama_sft_dagster.config.training import MergeCheckConfig, SftDatasetConfig, TrainConfig
from llama_sft_dagster.core.report.tidy import tidy
from llama_sft_dagster.core.data.storage import read_parquet, write_parquet
from llama_sft_dagster.core.versions import fingerprint, folder_version, table_version
from llama_sft_dagster.resources.artifacts import ArtifactStore
from llama_sft_dagster.housekeeping.pool_guard import GpuPoolGuard
from llama_sft_dagster.resources.gpu import GpuResource
from llama_sft_dagster.resources.tracking import MlflowTracking

SPLITS = {"train": "train_pairs", "validation": "validation_pairs"}
FORMAT_FILE = "format.json"  # the sft_dataset settings train_adapter and the checks must share


def load_sft(artifacts: ArtifactStore, consumer: str) -> tuple[dict, list[dict], list[dict]]:
    """(format settings, train rows, validation rows) as written by sft_dataset."""
    fmt = json.loads(artifacts.upstream("sft_dataset", consumer, FORMAT_FILE).read_text())
    cols = ["prompt", "completion"] if fmt["dataset_format"] == "prompt_completion" else ["messages"]
    rows = [read_parquet(artifacts.upstream("sft_dataset", consumer, f"{s}.parquet"), columns=cols).to_pylist()
            for s in SPLITS]
    return fmt, rows[0], rows[1]


class EmptySftSplitError(ValueError):
    """A split of sft_dataset has no rows: training could not start (or evaluate) on it."""


def empty_split_message(split: str, upstream: str, counts, max_length: int) -> str:
    if counts.rows_in == 0:
        return (f"sft_dataset: {upstream} has 0 rows, so there is no {split} data; add data or change "
                "SplitConfig.validation_fraction (see the metadata of train_pairs / validation_pairs)")
    return (f"sft_dataset: all {counts.rows_in} {split} rows were dropped ({dict(counts.dropped)}): every templated "
            f"sample is longer than max_length={max_length}; raise max_length or set filter_on_templated_length=False")


@versioned_asset(group_name="training", kinds={"parquet"}, deps=[*SPLITS.values(), "base_model"],
          description="Train/validation pairs as chat rows (seed system prompt, Llama-3 template): conversational "
          "prompt/completion for completion-only loss, with each row's templated token count.")
def sft_dataset(context: dg.AssetExecutionContext, config: SftDatasetConfig, artifacts: ArtifactStore) -> dg.MaterializeResult:
    from transformers import AutoTokenizer

    from llama_sft_dagster.core.training.chat_format import sft_table
    from llama_sft_dagster.core.training.masking import length_report

    tokenizer = AutoTokenizer.from_pretrained(artifacts.upstream("base_model", "sft_dataset", "model"))
    out, metadata, rejects = artifacts.asset_dir("sft_dataset"), {}, []
    for split, upstream in SPLITS.items():
        table, rej, counts, lengths = sft_table(read_parquet(artifacts.upstream(upstream, "sft_dataset")), tokenizer, config.dataset_format,
                                                config.max_length, config.filter_on_templated_length, config.system_prompt)
        if table.num_rows == 0:  # the trainer needs both: it trains on one and evaluates (eval_strategy=steps) on the other
            raise EmptySftSplitError(empty_split_message(split, upstream, counts, config.max_length))
        write_parquet(table, out / f"{split}.parquet")
        rejects.append(rej)
        metadata.update({f"{split}_{k}": v for k, v in {**counts.as_metadata(), **length_report(lengths, config.max_length)}.items()})
    import pyarrow as pa

    write_parquet(pa.concat_tables(rejects), out / "rejects.parquet")
    (out / FORMAT_FILE).write_text(json.dumps(config.model_dump(), indent=2))
    version = fingerprint({s: table_version(out / f"{s}.parquet") for s in SPLITS}, config.model_dump())
    context.log.info(f"sft_dataset: {metadata['train_rows_out']} train, {metadata['validation_rows_out']} validation rows")
    return dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(str(out)), **metadata},
                                data_version=dg.DataVersion(version))


@dg.asset_check(asset=sft_dataset, blocking=True,
                description="On the trainer's real processed dataset and collator: every label outside the assistant "
                "reply is -100, every reply token and its <|eot_id|> is supervised. Reports token efficiency and padding share.")
def sft_dataset_label_masking(context: dg.AssetCheckExecutionContext, artifacts: ArtifactStore,
                              gpu: GpuResource, pool_guard: GpuPoolGuard) -> dg.AssetCheckResult:
    import tempfile

    from llama_sft_dagster.core.training.masking import verify_trainer_masking
    from llama_sft_dagster.core.training.trainer import setup

    fmt, train_rows, eval_rows = load_sft(artifacts, "sft_dataset")
    hp, plan = TrainConfig(), gpu.plan()
    # the trainer places the base model on the device: hold it, as train_adapter does
    with tempfile.TemporaryDirectory() as tmp, gpu.exclusive(plan, f"masking check of run {context.run.run_id}", context.log):
        trainer = setup(base_model_dir(artifacts), train_rows, eval_rows, hp.trainer_kwargs(), hp.lora_kwargs(), fmt,
                        plan, tmp)
        reports = {s: verify_trainer_masking(trainer, max_batches=8, split=s) for s in ("train", "eval")}
    # named for the sample it measures: the first 8 batches of each split (train_adapter reports the whole run's)
    sampled = {"token_efficiency", "padding_share"}
    metadata = tidy({f"{s}_{k}{'_first_8_batches' if k in sampled else ''}": v
                     for s, r in reports.items() for k, v in r.metrics().items()})
    problems = [e for r in reports.values() for e in r.examples]
    if problems:
        metadata["first_problems"] = dg.MetadataValue.md("\n".join(f"- {p}" for p in problems[:5]))
    return dg.AssetCheckResult(passed=all(r.ok for r in reports.values()), metadata=metadata)


@dg.asset_check(asset=sft_dataset, description="WARN when templated train samples exceed max_length (the trainer "
                "would truncate them silently; set filter_on_templated_length to drop them with a reason instead).")
def sft_dataset_templated_length(artifacts: ArtifactStore) -> dg.AssetCheckResult:
    from llama_sft_dagster.core.training.masking import length_report

    fmt = json.loads(artifacts.path("sft_dataset", FORMAT_FILE).read_text())
    lengths = read_parquet(artifacts.path("sft_dataset", "train.parquet"), columns=["templated_tokens"]).column(0).to_pylist()
    report = length_report(lengths, fmt["max_length"])
    return dg.AssetCheckResult(passed=report["over_max_length"] == 0, severity=dg.AssetCheckSeverity.WARN, metadata=report)


REPORT_FILE = "report.json"  # what run_report reads: losses, plots, MLflow run, TensorBoard folder
MLFLOW_UI_URL = "http://127.0.0.1:5000"  # `make mlflow`; the report links runs there


def _plots(trainer, monitor, out) -> dict[str, Path]:
    from llama_sft_dagster.core.training import plots

    made = {"loss": plots.plot_losses(trainer.state.log_history, out / "plots" / "loss.png"),
            "grad_norm": plots.plot_grad_norms(monitor.history, out / "plots" / "grad_norm.png"),
            "effective_rank": plots.plot_effective_rank(monitor.history, out / "plots" / "effective_rank.png")}
    return {k: p for k, p in made.items() if p is not None}


def _tuned_params(config: TrainConfig, fmt: dict, data_version: str, base_version: str) -> dict:
    """MLflow params: what a user tunes (training, LoRA, sample format) and the data/base versions."""
    return {"train": config.model_dump(), "sft_dataset": {k: fmt[k] for k in ("dataset_format", "max_length",
            "filter_on_templated_length")}, "data": {"train_version": data_version, "base_model_version": base_version}}


SECONDARY_STATS = ("train_loss_mean", "train_steps_per_second", "train_samples_per_second", "total_flos", "total_params",
                   "trainable_percent", "train_samples", "validation_samples")


def _adapter_metadata(stats: dict, plan, monitor, plots: dict, extra: dict) -> dict:
    from llama_sft_dagster.core.report.sparkline import inline_markdown, loss_sketch_png
    from llama_sft_dagster.core.training.plots import png_markdown

    device = {k if k.startswith("device") else f"device_{k}": v for k, v in plan.metadata().items()}
    tokens = {k.split("/", 1)[1]: v for k, v in monitor.total.metrics().items()}  # over every training batch
    sketch = inline_markdown(loss_sketch_png(stats["losses"]["train"], stats["losses"]["eval"]), "loss") \
        if stats["losses"]["train"] else None
    md = {f"{k}_plot": dg.MetadataValue.md(png_markdown(p, k)) for k, p in plots.items()}
    # the asset's Plots tab charts every number across runs: the secondary ones go in one small table
    summary = tidy(stats["summary"])
    details = {k: summary.pop(k) for k in SECONDARY_STATS if k in summary}
    table = "\n".join(["| | |", "|---|---|", *(f"| {k} | {v:,} |" for k, v in details.items())])
    return {**tidy({**summary, **device, **tokens, **extra}), "training_details": dg.MetadataValue.md(table),
            **({"loss_curve": dg.MetadataValue.md(sketch)} if sketch else {}), **md}


@versioned_asset(group_name="training", kinds={"pytorch", "peft"}, deps=["sft_dataset", "base_model"], pool="gpu",
          description="LoRA adapter (safetensors) of the best checkpoint by eval_loss: TRL SFTTrainer, completion-only "
          "loss, seed hyperparameters (full) or a short CPU run (demo). Resumes an interrupted run of the same config.")
def train_adapter(context: dg.AssetExecutionContext, config: TrainConfig, artifacts: ArtifactStore, gpu: GpuResource,
                  pool_guard: GpuPoolGuard,
                  tracking: MlflowTracking) -> dg.MaterializeResult:
    from llama_sft_dagster.core.training import progress, trainer as training
    from llama_sft_dagster.core.training.masking import verify_trainer_masking
    from llama_sft_dagster.core.training.monitoring import TrainingMonitor

    fmt, train_rows, eval_rows = load_sft(artifacts, "train_adapter")
    plan, out = gpu.plan(context.log), artifacts.asset_dir("train_adapter")
    data_version = fingerprint({s: table_version(artifacts.path("sft_dataset", f"{s}.parquet")) for s in SPLITS}, fmt)
    base_version = folder_version(base_model_dir(artifacts))
    run_fp = fingerprint(config.model_dump(), fmt, plan.metadata(), {"data": data_version, "base": base_version})
    tb_dir = progress.tensorboard_run_dir(out / "tensorboard", context.run.run_id, config.lora_r,
                                          config.learning_rate, config.max_steps)
    # the pool `gpu` queues the step; the device lock makes it exclusive (see GpuResource.exclusive)
    with gpu.exclusive(plan, f"train_adapter of run {context.run.run_id}", context.log) as lock_wait_s, \
            tracking.start_run("train_adapter", params=_tuned_params(config, fmt, data_version, base_version),
                               dagster_run_id=context.run.run_id, train_data_version=data_version,
                               tags={f"device.{k}": str(v) for k, v in plan.metadata().items()}) as run:
        monitor = TrainingMonitor(tb_dir, log_every=config.monitor_log_every,
                                  deep_every=config.monitor_deep_every, use_mlflow=run is not None)
        trainer = training.setup(base_model_dir(artifacts), train_rows, eval_rows, config.trainer_kwargs(),
                                 config.lora_kwargs(), fmt, plan, out / "checkpoints", ["tensorboard"], monitor)
        progress.route_tensorboard(trainer, tb_dir)
        trainer.add_callback(progress.TrainerLogsToMlflow())
        trainer.add_callback(progress.ProgressLine(context.log.info, config.progress_every,
                                                   lambda: monitor.total.positions))
        mask = verify_trainer_masking(trainer, max_batches=4)
        if not mask.ok:
            raise dg.Failure("label masking is wrong on the training batches", metadata={"examples": "; ".join(mask.examples)})
        gpu.reset_peak_memory()
        try:
            result, resumed_from = training.fit(trainer, out / "checkpoints", run_fp)
        finally:
            monitor.close()
        adapter = training.save_best_adapter(trainer, out / "adapter")
        stats, plots = _write_report(out, trainer, result, monitor, run, tracking, tb_dir)
        tracking.log_artifacts(plots.values(), "plots")
        tracking.log_artifacts([adapter / "adapter_config.json"], "adapter")
    extra = {"peak_memory_gb": gpu.peak_memory_gb(), "device_lock_wait_s": lock_wait_s, "resumed_from": resumed_from,
             "mlflow_run": dg.MetadataValue.url(stats["mlflow_url"]) if stats["mlflow_url"] else None,
             "mlflow_run_id": run.info.run_id if run else None,
             "mlflow": None if run else "not tracked: the store was unreachable (see the run log)",
             "tensorboard_run": dg.MetadataValue.path(str(tb_dir)),
             "path": dg.MetadataValue.path(str(adapter))}
    s = stats["summary"]
    context.log.info(f"train_adapter: loss {s.get('first_train_loss')} -> {s.get('final_train_loss')}, "
                     f"best eval_loss {s.get('best_eval_loss')} at step {s.get('best_eval_step')}")
    return dg.MaterializeResult(metadata=_adapter_metadata(stats, plan, monitor, plots, extra),
                                data_version=dg.DataVersion(folder_version(adapter)))


def _write_report(out: Path, trainer, result, monitor, run, tracking: MlflowTracking, tb_dir: Path):
    """report.json for run_report (summary, loss curves, plots, MLflow URL); returns (it, plot paths)."""
    from llama_sft_dagster.core.training.trainer import summary

    history = trainer.state.log_history
    plots = _plots(trainer, monitor, out)
    stats = {"summary": summary(trainer, result),
             "losses": {"train": [(h["step"], h["loss"]) for h in history if "loss" in h],
                        "eval": [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]},
             "token_efficiency": monitor.total.metrics().get("monitor/token_efficiency"),
             "plots": {k: str(p) for k, p in plots.items()}, "tensorboard_run": str(tb_dir),
             "mlflow_run_id": run.info.run_id if run else None, "mlflow_url": tracking.run_url(run, MLFLOW_UI_URL)}
    (out / REPORT_FILE).write_text(json.dumps(stats, indent=2))
    if run is not None and stats["token_efficiency"] is not None:
        import mlflow

        mlflow.log_metric("monitor/token_efficiency_whole_run", stats["token_efficiency"])
    return stats, plots


@versioned_asset(group_name="training", kinds={"safetensors"}, deps=["train_adapter"],
          description="Base model with the adapter merged in (CPU, PeftModel.merge_and_unload), safetensors + tokenizer.")
def merged_model(context: dg.AssetExecutionContext, artifacts: ArtifactStore) -> dg.MaterializeResult:
    from llama_sft_dagster.core.training.merge import base_identity, merge_lora

    adapter = artifacts.upstream("train_adapter", "merged_model", "adapter")
    out = merge_lora(adapter, artifacts.asset_dir("merged_model") / "model")
    base, revision = base_identity(adapter)
    context.log.info(f"merged {adapter} into {base} -> {out}")
    metadata = tidy({"path": dg.MetadataValue.path(str(out)), "base": base, "revision": revision})
    return dg.MaterializeResult(metadata=metadata,
                                data_version=dg.DataVersion(folder_version(out)))


# blocking: run_report (downstream) reads its result, and a merge that disagrees must not be reported as done
@dg.asset_check(asset=merged_model, blocking=True, description="Merged and adapter model logits agree on probe prompts "
                "(<= 1e-4 in fp32; in bf16 <= 1% of the largest logit) and differ from the base model's.")
def merged_model_logits(config: MergeCheckConfig, artifacts: ArtifactStore) -> dg.AssetCheckResult:
    from transformers import AutoTokenizer

    from llama_sft_dagster.core.training.merge import probe_logits

    merged = artifacts.path("merged_model", "model")
    _, _, eval_rows = load_sft(artifacts, "merged_model")
    tok = AutoTokenizer.from_pretrained(merged)
    prompts = [tok.apply_chat_template(r["prompt"] if "prompt" in r else r["messages"][:-1], tokenize=False,
                                       add_generation_prompt=True) for r in eval_rows[: config.probes]]
    r = probe_logits(artifacts.path("train_adapter", "adapter"), merged, prompts, config.probe_dtype)
    # fp32: summation-order differences only (measured ~1e-6 on the demo model); bf16 rounds W + BA to
    # 8 mantissa bits (relative step 2**-8 ~ 0.4%), so the bound is relative to the logit scale
    bound = 1e-4 if config.probe_dtype == "float32" else 1e-2 * r["max_abs_logit"]
    agree, differs = r["max_abs_diff_merged_vs_adapter"] <= bound, r["max_abs_diff_merged_vs_base"] > 10 * bound
    metadata = tidy({**r, "bound": bound, "agrees_with_adapter": agree, "differs_from_base": differs})
    return dg.AssetCheckResult(passed=agree and differs, metadata=metadata)
