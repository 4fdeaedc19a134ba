"""One rank of a training job (started by torchrun through launcher.py; never run by hand).

    python -m llama_sft_dagster.launch.train JOB.json

Every rank builds the same trainer and trains its shard of each global batch; only rank 0 writes the
adapter, the plots, the TensorBoard files and the MLflow run (the run the asset opened), and only rank 0
talks to Dagster through Pipes: log lines, training progress, and the final metadata as the asset
materialization. Checkpoints are written by rank 0 (the Trainer's own rule) and resumed by all ranks.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

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


def progress_callback(logger):
    """A TrainerCallback sending each Trainer log (loss, eval_loss, grad_norm, learning_rate) as one line."""
    from transformers import TrainerCallback

    class PipesProgress(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                values = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in logs.items())
                logger.info(f"step {state.global_step}/{state.max_steps}: {values}")

    return PipesProgress()


def open_mlflow_run(job: TrainJob):
    """Attach rank 0 to the asset's MLflow run so transformers' MLflowCallback and the monitor log into
    it (with a run active, the callback neither starts nor ends one: resources/tracking.py)."""
    if not job.mlflow_run_id:
        return None
    import mlflow

    mlflow.set_tracking_uri(job.mlflow_tracking_uri)
    return mlflow.start_run(run_id=job.mlflow_run_id)


def peak_memory_gb() -> float:
    """Peak CUDA memory allocated by this rank, or its peak RSS on CPU (as GpuResource.peak_memory_gb)."""
    import torch

    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 1024**3, 3)
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 3)  # KiB on Linux


def plot_metadata(trainer, monitor, out: Path) -> dict:
    """The plots as `path` metadata; the asset inlines them (adapter_training.inline_plots). Not inlined
    here: a Pipes message of the base64 images is tens of KB, written in several chunks, and Dagster
    1.13's file reader (dagster._utils.tail_file) can read and JSON-decode a half-written line."""
    from llama_sft_dagster.core.training import plots

    made = {"loss_plot": plots.plot_losses(trainer.state.log_history, out / "loss.png"),
            "grad_norm_plot": plots.plot_grad_norms(monitor.history, out / "grad_norm.png"),
            "effective_rank_plot": plots.plot_effective_rank(monitor.history, out / "effective_rank.png")}
    return {k: {"raw_value": str(p), "type": "path"} for k, p in made.items() if p is not None}


def read_rows(job: TrainJob) -> tuple[list[dict], list[dict]]:
    from llama_sft_dagster.core.data.storage import read_parquet

    cols = ["prompt", "completion"] if job.fmt["dataset_format"] == "prompt_completion" else ["messages"]
    return (read_parquet(Path(job.train_path), columns=cols).to_pylist(),
            read_parquet(Path(job.validation_path), columns=cols).to_pylist())


def train(job: TrainJob, rank: int, logger) -> dict | None:
    """Train this rank's share; rank 0 returns the asset metadata (Pipes raw values), the others None."""
    import torch

    from llama_sft_dagster.core.training import trainer as training
    from llama_sft_dagster.core.training.device import DevicePlan
    from llama_sft_dagster.core.training.masking import verify_trainer_masking
    from llama_sft_dagster.core.training.monitoring import TrainingMonitor

    plan, out, main = DevicePlan(**job.plan), Path(job.out_dir), rank == 0
    train_rows, eval_rows = read_rows(job)
    run = open_mlflow_run(job) if main else None
    monitor = TrainingMonitor(out / "tensorboard", log_every=job.monitor_log_every, deep_every=job.monitor_deep_every,
                              use_mlflow=run is not None) if main else None
    report_to = (["tensorboard", "mlflow"] if run else ["tensorboard"]) if main else ["none"]
    trainer = training.setup(Path(job.base_dir), train_rows, eval_rows, job.hp, job.lora, job.fmt, plan,
                             job.checkpoints, report_to, monitor)
    if main:
        trainer.add_callback(progress_callback(logger))
    mask = verify_trainer_masking(trainer, max_batches=4)  # every rank: the dataloaders synchronise their RNG
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
    import mlflow

    if run is not None:
        mlflow.flush_async_logging()  # the asset ends the run once this process has exited
    return {**training.summary(trainer, result), "peak_memory_gb": peak_memory_gb(),
            "token_efficiency": mask.metrics()["token_efficiency"], "padding_share": mask.metrics()["padding_share"],
            "resumed_from": resumed_from or "", "path": {"raw_value": str(adapter), "type": "path"},
            **plot_metadata(trainer, monitor, out)}


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

                pipes.report_asset_materialization(metadata=metadata,
                                                   data_version=folder_version(Path(job.out_dir) / "adapter"))

    run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
