"""The training step shared by `train_adapter` and `lora_rank_sweep`: one LoRA SFT run into a folder.

    metadata = train_adapter_into(context, config, artifacts, gpu, tracking, out_dir)

It holds the device (the caller's asset declares pool="gpu"), opens the MLflow run, trains with TRL,
checks the label masking on real batches, saves the best adapter to `out_dir/adapter`, the plots and
TensorBoard logs beside it, and `out_dir/run.json` (the MLflow run id and the summary, so later
assets find the training run from the files). Returns the materialization metadata.
"""
from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

from llama_sft_dagster.assets.model_paths import base_model_dir
from llama_sft_dagster.config.training import TrainConfig
from llama_sft_dagster.core.versions import fingerprint, folder_version, table_version
from llama_sft_dagster.resources.artifacts import ArtifactStore
from llama_sft_dagster.resources.gpu import GpuResource
from llama_sft_dagster.resources.tracking import MlflowTracking

RUN_FILE = "run.json"


def _plots(trainer, monitor, out) -> dict:
    from llama_sft_dagster.core.training import plots

    made = {"loss_plot": plots.plot_losses(trainer.state.log_history, out / "loss.png"),
            "grad_norm_plot": plots.plot_grad_norms(monitor.history, out / "grad_norm.png"),
            "effective_rank_plot": plots.plot_effective_rank(monitor.history, out / "effective_rank.png")}
    return {k: dg.MetadataValue.md(plots.png_markdown(p, k)) for k, p in made.items() if p is not None}


def train_adapter_into(context: dg.AssetExecutionContext, config: TrainConfig, artifacts: ArtifactStore,
                       gpu: GpuResource, tracking: MlflowTracking, out_dir: Path, *,
                       checkpoints_dir: Path | None = None, run_name: str = "train_adapter",
                       consumer: str = "train_adapter") -> dict:
    """Train one adapter with `config` into `out_dir`; `checkpoints_dir` (default out_dir/checkpoints)
    holds the resumable checkpoints, outside a per-run folder when a rerun must find them."""
    from llama_sft_dagster.assets.training import SPLITS, load_sft
    from llama_sft_dagster.core.training import trainer as training
    from llama_sft_dagster.core.training.masking import verify_trainer_masking
    from llama_sft_dagster.core.training.monitoring import TrainingMonitor

    fmt, train_rows, eval_rows = load_sft(artifacts, consumer)
    plan, out = gpu.plan(context.log), Path(out_dir)
    checkpoints = Path(checkpoints_dir) if checkpoints_dir is not None else out / "checkpoints"
    data_version = fingerprint({s: table_version(artifacts.path("sft_dataset", f"{s}.parquet")) for s in SPLITS}, fmt)
    run_fp = fingerprint(config.model_dump(), fmt, plan.metadata(), {"data": data_version,
                                  "base": folder_version(base_model_dir(artifacts))})
    params = {"train": config.model_dump(), "sft_dataset": fmt, "device": plan.metadata()}
    # the pool `gpu` queues the step; the device lock makes it exclusive (see GpuResource.exclusive)
    with gpu.exclusive(plan, f"{run_name} of run {context.run.run_id}", context.log) as lock_wait_s, \
            tracking.start_run(run_name, params=params, dagster_run_id=context.run.run_id,
                               train_data_version=data_version) as run:
        monitor = TrainingMonitor(out / "tensorboard", log_every=config.monitor_log_every,
                                  deep_every=config.monitor_deep_every, use_mlflow=run is not None)
        trainer = training.setup(base_model_dir(artifacts), train_rows, eval_rows, config.trainer_kwargs(),
                                 config.lora_kwargs(), fmt, plan, checkpoints, tracking.report_to(), monitor)
        mask = verify_trainer_masking(trainer, max_batches=4)
        if not mask.ok:
            raise dg.Failure("label masking is wrong on the training batches",
                             metadata={"examples": "; ".join(mask.examples)})
        gpu.reset_peak_memory()
        try:
            result, resumed_from = training.fit(trainer, checkpoints, run_fp)
        finally:
            monitor.close()
        adapter = training.save_best_adapter(trainer, out / "adapter")
        stats = training.summary(trainer, result)
    run_id = run.info.run_id if run else ""
    (out / RUN_FILE).write_text(json.dumps({"mlflow_run_id": run_id, "dagster_run_id": context.run.run_id,
                                            "train_data_version": data_version, **stats}, indent=2))
    context.log.info(f"{run_name}: loss {stats.get('first_train_loss')} -> {stats.get('final_train_loss')}, "
                     f"best eval_loss {stats.get('best_eval_loss')} at step {stats.get('best_eval_step')}")
    return {**stats, **{f"device_{k}": v for k, v in plan.metadata().items()}, "peak_memory_gb": gpu.peak_memory_gb(),
            "device_lock_wait_s": round(lock_wait_s, 2),
            "token_efficiency": mask.metrics()["token_efficiency"], "padding_share": mask.metrics()["padding_share"],
            "resumed_from": resumed_from or "", "mlflow_run_id": run_id,
            "path": dg.MetadataValue.path(str(adapter)), **_plots(trainer, monitor, out)}
