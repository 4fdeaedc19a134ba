"""One rank of a training job (started by torchrun through launcher.py; never run by hand).

    python -m llama_sft_dagster.launch.train JOB.json

Every rank builds the same trainer and trains its shard of each global batch; only rank 0 writes the
adapter, the plots, the TensorBoard files and the MLflow run (the run the asset opened), and only rank 0
talks to Dagster through Pipes: log lines, training progress, and the final metadata as the asset
materialization. Checkpoints are written by rank 0 (the Trainer's own rule) and resumed by all ranks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from llama_sft_dagster.core.training.series import diag_name
from llama_sft_dagster.housekeeping.processes import process_gone
from llama_sft_dagster.launch.job import TrainJob

log = logging.getLogger("llama_sft_dagster.launch.train")
STEP_PID_ENV = "SFT_STEP_PID"  # the Dagster step process (set by the asset, on the first node only)


class MaskingError(RuntimeError):
    """The collator's labels supervise the wrong tokens: training would learn the prompt."""


def die_with_launcher() -> None:
    """SIGKILL this rank when its launcher (or the Dagster step) is gone.

    torchrun starts each rank in a session of its own, so a SIGKILL of the step's process group would
    leave the ranks training on, holding the device, with nobody to report to. PR_SET_PDEATHSIG covers
    the launcher's death; the thread covers a step process killed alone. SIGKILL, not exit: an exit would
    run MLflow's atexit hook and mark the run FINISHED."""
    launcher, step_pid = os.getppid(), os.environ.get(STEP_PID_ENV, "")
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while True:
            if os.getppid() != launcher or (step_pid and process_gone(step_pid)):
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(0.5)

    threading.Thread(target=watch, name="die-with-launcher", daemon=True).start()


@contextlib.contextmanager
def dagster_pipes_on(rank: int):
    """The Pipes context on global rank 0 when Dagster launched the job, else None (other ranks, or a
    cluster scheduler running the entry point without Dagster)."""
    from dagster_pipes import PipesEnvVarParamsLoader, open_dagster_pipes

    if rank != 0 or not PipesEnvVarParamsLoader().is_dagster_pipes_process():
        yield None
        return
    with open_dagster_pipes() as pipes:
        yield pipes


REPORT_FILE = "report.json"  # what run_report reads: losses, plots, MLflow run, TensorBoard folder
# the Trainer's summary numbers that go in one small table (the asset's Plots tab charts every number)
SECONDARY_STATS = (
    "train_loss_mean",
    "train_steps_per_second",
    "train_samples_per_second",
    "total_flos",
    "total_params",
    "trainable_percent",
    "train_samples",
    "validation_samples",
)


def metric_spool(job: TrainJob):
    """Rank 0's metric sink for progress.TrainerLogsToTrackers and the monitor: the spool file first, then the
    asset's MLflow run when there is one and its server answers (the asset sends the rest and ends the run)."""
    from llama_sft_dagster.core.tracking.spool import MetricSpool

    return MetricSpool(job.mlflow_spool, job.mlflow_tracking_uri, job.mlflow_run_id, timeout_s=job.mlflow_timeout_s)


def peak_memory_gb() -> float:
    """Peak CUDA memory allocated by this rank, or its peak RSS on CPU (as GpuResource.peak_memory_gb)."""
    import torch

    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 1024**3, 3)
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 3)  # KiB on Linux


def make_plots(trainer, monitor, out: Path) -> dict[str, Path]:
    """The plots under `out/plots`, by name (loss, grad_norm, effective_rank)."""
    from llama_sft_dagster.core.training import plots

    made = {
        "loss": plots.plot_losses(trainer.state.log_history, out / "plots" / "loss.png"),
        "grad_norm": plots.plot_grad_norms(monitor.history, out / "plots" / "grad_norm.png"),
        "effective_rank": plots.plot_effective_rank(monitor.history, out / "plots" / "effective_rank.png"),
    }
    return {k: p for k, p in made.items() if p is not None}


def write_report(job: TrainJob, trainer, result, monitor, plots: dict[str, Path], tb_dir: Path) -> dict:
    """report.json for run_report (summary, loss curves, plots, MLflow URL); returns its contents."""
    from llama_sft_dagster.core.training.trainer import summary

    history = trainer.state.log_history
    report = {
        "summary": summary(trainer, result),
        "losses": {
            "train": [(h["step"], h["loss"]) for h in history if "loss" in h],
            "eval": [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h],
        },
        # the trainer's global norm before clipping, per logging step (train_adapter's grad-norm check)
        "grad_norm": [(h["step"], h["grad_norm"]) for h in history if "grad_norm" in h],
        "token_efficiency": monitor.total.metrics().get("monitor/token_efficiency"),
        "plots": {k: str(p) for k, p in plots.items()},
        "tensorboard_run": str(tb_dir),
        "mlflow_run_id": job.mlflow_run_id or None,
        "mlflow_url": job.mlflow_url or None,
        "batch_plan": job.batch.get("reason"),  # how the global batch was computed here (core/training/batch_plan.py)
    }
    (Path(job.out_dir) / REPORT_FILE).write_text(json.dumps(report, indent=2))
    return report


def rank0_metadata(report: dict, monitor, resumed_from, adapter: Path, plots: dict[str, Path], tb_dir: Path) -> dict:
    """The asset metadata rank 0 reports (Pipes raw values): rounded summary, the secondary numbers in one
    table, token counts over every training batch, paths. The plots go as paths and the asset inlines them
    (adapter_training.inline_plots): a Pipes message of the base64 images is tens of KB, written in several
    chunks, and Dagster 1.13's file reader (dagster._utils.tail_file) can read and JSON-decode a half-written line."""
    from llama_sft_dagster.core.report.tidy import tidy

    summary = tidy(report["summary"])
    details = {k: summary.pop(k) for k in SECONDARY_STATS if k in summary}
    table = "\n".join(["| | |", "|---|---|", *(f"| {k} | {v:,} |" for k, v in details.items())])
    tokens = {k.split("/", 1)[1]: v for k, v in monitor.total.metrics().items()}  # over every training batch
    return {
        **tidy({**summary, **tokens, "peak_memory_gb": peak_memory_gb(), "resumed_from": resumed_from}),
        "training_details": {"raw_value": table, "type": "md"},
        "tensorboard_run": {"raw_value": str(tb_dir), "type": "path"},
        "path": {"raw_value": str(adapter), "type": "path"},
        **{f"{k}_plot": {"raw_value": str(p), "type": "path"} for k, p in plots.items()},
    }


def read_rows(job: TrainJob) -> tuple[list[dict], list[dict], list[str] | None]:
    """(train rows, validation rows, each train row's source or None): the validation rows are
    TrainConfig.eval_max_samples of them evenly spaced when that is set; sources come from the pair ids."""
    import pyarrow.parquet as pq

    from llama_sft_dagster.core.data.storage import read_parquet
    from llama_sft_dagster.core.training.masking import spread
    from llama_sft_dagster.core.training.tokenized import sft_columns

    def rows(path: str) -> list[dict]:  # with sft_dataset's token columns the trainer does not tokenize again
        return read_parquet(
            Path(path), columns=sft_columns(job.fmt["dataset_format"], pq.read_schema(path).names)
        ).to_pylist()

    train, evals = rows(job.train_path), rows(job.validation_path)
    evals = [evals[i] for i in spread(range(len(evals)), job.config["eval_max_samples"] or len(evals))]
    sources = None
    if "pair_id" in pq.read_schema(job.train_path).names:
        ids = read_parquet(Path(job.train_path), columns=["pair_id"]).column(0).to_pylist()
        sources = [p.split(":", 1)[0] for p in ids]
    return train, evals, sources


def train(job: TrainJob, rank: int, logger) -> dict | None:
    """Train this rank's share; rank 0 returns the asset metadata (Pipes raw values), the others None."""
    import torch

    from llama_sft_dagster.core.training import progress
    from llama_sft_dagster.core.training import trainer as training
    from llama_sft_dagster.core.training.device import DevicePlan
    from llama_sft_dagster.core.training.masking import format_options, verify_trainer_masking
    from llama_sft_dagster.core.training.monitoring import TrainingMonitor

    plan, out, main = DevicePlan(**job.plan), Path(job.out_dir), rank == 0
    config, batch = job.train_config(), job.batch_plan()
    train_rows, eval_rows, sources = read_rows(job)
    spool = metric_spool(job) if main else None
    # one readable TensorBoard folder per run, for the Trainer's curves and the monitor's
    tb_dir = progress.tensorboard_run_dir(
        job.tensorboard,
        job.dagster_run_id or job.run_fingerprint,
        config.lora_r,
        config.learning_rate,
        config.max_steps,
    )
    monitor = (
        TrainingMonitor(
            tb_dir, log_every=config.monitor_log_every, deep_every=config.monitor_deep_every, metric_sink=spool.log
        )
        if main
        else None
    )
    # not transformers' MLflowCallback: it logs ~200 params of model-config noise (core/training/progress.py)
    trainer = training.setup(
        Path(job.base_dir),
        train_rows,
        eval_rows,
        config,
        job.fmt,
        plan,
        job.checkpoints,
        ["none"],  # TensorBoard and MLflow get the Trainer's logs from progress.TrainerLogsToTrackers
        monitor,
        batch=batch,
    )
    if main:
        trainer.add_callback(progress.TrainerLogsToTrackers(tb_dir, spool.log))
        trainer.add_callback(progress.ProgressLine(logger.info, config.progress_every, lambda: monitor.total.positions))
    # every rank: the dataloaders synchronise their RNG
    mask = verify_trainer_masking(trainer, max_batches=4, sources=sources, **format_options(job.fmt))
    if not mask.ok:
        raise MaskingError("label masking is wrong on the training batches: " + "; ".join(mask.examples))
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:
        result, resumed_from = training.fit(trainer, job.checkpoints, job.run_fingerprint)
    finally:
        if monitor is not None:
            monitor.close()
    adapter = training.save_best_adapter(trainer, out / "adapter")
    if not main:
        return None
    plots = make_plots(trainer, monitor, out)
    report = write_report(job, trainer, result, monitor, plots, tb_dir)
    if report["token_efficiency"] is not None:
        spool.log({diag_name("token_efficiency_whole_run"): report["token_efficiency"]}, trainer.state.global_step)
    spool.close()  # what the server did not take stays in the spool; the asset sends it and ends the run
    metadata = rank0_metadata(report, monitor, resumed_from, adapter, plots, tb_dir)
    # what the ranks' allocator ran with (GpuResource.cpu_reuse_memory): read here, where the process started
    allocator = {"glibc_tunables": os.environ["GLIBC_TUNABLES"]} if "GLIBC_TUNABLES" in os.environ else {}
    return {**metadata, **allocator, "attn_implementation_used": training.attention_kernel(trainer.model)}


def main(argv: list[str] | None = None) -> int:
    from torch.distributed.elastic.multiprocessing.errors import record

    argv = sys.argv[1:] if argv is None else argv
    job, rank = TrainJob.read(Path(argv[0])), int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO, format=f"[rank {rank}] %(levelname)s %(name)s: %(message)s")
    die_with_launcher()

    @record  # an exception's traceback goes to torchrun's error file and into its failure summary
    def run() -> None:
        with dagster_pipes_on(rank) as pipes:
            logger = pipes.log if pipes is not None else log
            world = os.environ.get("WORLD_SIZE", "1")
            logger.info(f"rank {rank} of {world} on {job.plan['device']} ({job.accelerate_config})")
            metadata = train(job, rank, logger)
            if pipes is not None and metadata is not None:
                from llama_sft_dagster.core.versions import folder_version

                pipes.report_asset_materialization(
                    metadata=metadata, data_version=folder_version(Path(job.out_dir) / "adapter")
                )

    run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
