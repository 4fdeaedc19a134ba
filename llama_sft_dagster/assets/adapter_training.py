"""Training a LoRA adapter as a launched job: the code path of `train_adapter` (and of any asset that
trains an adapter with other settings into another folder, e.g. a rank sweep).

    metadata = train_adapter_into(context, config, artifacts, gpu, tracking, out_dir)

The step holds the `gpu` pool slot and a lock on every device the job uses, opens the MLflow run, and
starts `python -m llama_sft_dagster.launch.launcher JOB.json` through Dagster Pipes. The launcher runs
`accelerate launch` (torchrun) with the gpu resource's process count and accelerate config; rank 0
sends logs, progress and the final metadata back over Pipes (llama_sft_dagster/launch/train.py). A rank
that fails fails the step with a message naming it and its last log lines. The step then writes
`out_dir/run.json` (the MLflow run id and the summary), so later assets find the training run from the files.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import dagster as dg

# raised by PipesSubprocessClient.run on a non-zero exit; dagster 1.13 does not export it at the top level
from dagster._core.errors import DagsterPipesExecutionError  # PipesSubprocessClient.run raises it; not exported

from llama_sft_dagster.assets.model_paths import FORMAT_FILE, RUN_FILE, base_model_dir
from llama_sft_dagster.config.training import TrainConfig
from llama_sft_dagster.core.report.tidy import tidy
from llama_sft_dagster.core.training.device import cpu_training_env
from llama_sft_dagster.core.versions import fingerprint, model_folder_version, table_version
from llama_sft_dagster.launch.command import config_file, describe_failure
from llama_sft_dagster.launch.job import JOB_FILE, TrainJob
from llama_sft_dagster.launch.launcher import main as launcher_main
from llama_sft_dagster.launch.train import REPORT_FILE, STEP_PID_ENV
from llama_sft_dagster.resources.artifacts import ArtifactStore
from llama_sft_dagster.resources.gpu import GpuResource
from llama_sft_dagster.resources.tracking import MlflowTracking

SFT_SPLITS = ("train", "validation")
TENSORBOARD_UI_URL = "http://127.0.0.1:6006"  # `make tensorboard`
PLOTS = ("loss_plot", "grad_norm_plot", "effective_rank_plot")  # paths from rank 0, inlined as markdown


class RankFailedError(dg.Failure):
    """A training rank failed (exception, signal, out of memory); the description names the rank."""


def plan_batches(
    config: TrainConfig, artifacts: ArtifactStore, gpu: GpuResource, plan, processes: int, fmt: dict, train_path: Path
):
    """Refuse a machine that cannot train (GpuResource.refuse_unworkable), then plan micro-batch x accumulation,
    checkpointing and Liger for the seed's global batch (per_device_train_batch_size x gradient_accumulation_steps)
    on `processes` processes (core/training/batch_plan.py)."""
    from llama_sft_dagster.core.data.storage import read_parquet

    model_config = json.loads((base_model_dir(artifacts) / "config.json").read_text())
    lora = (config.lora_r, list(config.lora_target_modules))
    gpu.refuse_unworkable(plan, model_config, lora, fmt["max_length"])
    lengths = read_parquet(train_path, columns=["templated_tokens"]).column(0).to_pylist()
    return gpu.plan_batches(
        plan,
        processes,
        config.per_device_train_batch_size * config.gradient_accumulation_steps,
        config.per_device_train_batch_size,
        model_config,
        lora,
        lengths,
        fmt["max_length"],
        config.padding_free or config.packing,
    )


def build_job(
    config: TrainConfig,
    artifacts: ArtifactStore,
    gpu: GpuResource,
    plan,
    processes: int,
    out_dir: Path,
    consumer: str,
    checkpoints_dir: Path | None = None,
    tensorboard_dir: Path | None = None,
) -> tuple[TrainJob, str, str, object]:
    """(the job spec, the train data version, the base model version, the batch plan) of training `config` on
    sft_dataset into `out_dir`."""
    fmt = json.loads(artifacts.upstream("sft_dataset", consumer, FORMAT_FILE).read_text())
    splits = {s: artifacts.upstream("sft_dataset", consumer, f"{s}.parquet") for s in SFT_SPLITS}
    data_version = fingerprint({s: table_version(p) for s, p in splits.items()}, fmt)
    batch = plan_batches(config, artifacts, gpu, plan, processes, fmt, splits["train"])
    plan = dataclasses.replace(plan, gradient_checkpointing=batch.gradient_checkpointing)
    # the launch shape is part of the run: a checkpoint of 1 process is not resumed by 2 (other data order)
    launch = {"processes": processes, "launch_config": gpu.launch_config}
    base_version = model_folder_version(base_model_dir(artifacts))
    versions = {"data": data_version, "base": base_version}
    run_fp = fingerprint(config.model_dump(), fmt, plan.metadata(), versions, launch, batch.metadata())
    job = TrainJob(
        base_dir=str(base_model_dir(artifacts)),
        train_path=str(splits["train"]),
        validation_path=str(splits["validation"]),
        fmt=fmt,
        config=config.model_dump(),
        batch=dataclasses.asdict(batch),
        plan=dataclasses.asdict(plan),
        out_dir=str(out_dir),
        run_fingerprint=run_fp,
        checkpoints_dir=str(checkpoints_dir or ""),
        tensorboard_dir=str(tensorboard_dir or ""),
        processes=processes,
        accelerate_config=str(config_file(gpu.launch_config)),
    )
    return job, data_version, base_version, batch


def _tuned_params(config: TrainConfig, fmt: dict, data_version: str, base_version: str, launch: dict) -> dict:
    """MLflow params: what a user tunes (training, LoRA, sample format, launch) and the data/base versions."""
    return {
        "train": config.model_dump(),
        "sft_dataset": {k: fmt[k] for k in ("dataset_format", "max_length", "filter_on_templated_length")},
        "data": {"train_version": data_version, "base_model_version": base_version},
        "launch": launch,
    }


def loss_curve(out_dir: Path) -> dict:
    """The inline loss sketch from rank 0's report.json (small enough to show without a click)."""
    from llama_sft_dagster.core.report.sparkline import inline_markdown, loss_sketch_png

    losses = json.loads((Path(out_dir) / REPORT_FILE).read_text())["losses"]
    if not losses["train"]:
        return {}
    sketch = loss_sketch_png(losses["train"], losses["eval"])
    return {"loss_curve": dg.MetadataValue.md(inline_markdown(sketch, "loss"))}


def launch(context, job: TrainJob, env: dict[str, str]) -> dict:
    """Run the job through Pipes; rank 0's reported metadata, or a RankFailedError naming the failed rank."""
    job_path = job.write(job.launch_dir / JOB_FILE)
    # named through the function, so the asset's derived code version covers the launcher and the ranks
    cmd = [sys.executable, "-m", launcher_main.__module__, str(job_path)]
    try:
        invocation = dg.PipesSubprocessClient().run(context=context, command=cmd, env=env)
    except DagsterPipesExecutionError as exc:
        message, tail = describe_failure(job.failure_file, job.log_dir, str(exc))
        context.log.error(f"{message}\n{tail}")
        raise RankFailedError(message, metadata={"failed_rank_log": dg.MetadataValue.text(tail)}) from exc
    reported = dict(invocation.get_materialize_result().metadata)
    if "path" not in reported:  # rank 0 exited 0 but its materialization never arrived
        raise dg.Failure(
            "training finished but rank 0's metadata did not arrive over Dagster Pipes "
            f"(see the step's log); job {job_path}"
        )
    return reported


def inline_plots(metadata: dict) -> dict:
    """Rank 0's plot paths as the markdown images the asset has always shown."""
    from llama_sft_dagster.core.training.plots import png_markdown

    return {k: dg.MetadataValue.md(png_markdown(v.value, k)) if k in PLOTS else v for k, v in metadata.items()}


def train_adapter_into(
    context: dg.AssetExecutionContext,
    config: TrainConfig,
    artifacts: ArtifactStore,
    gpu: GpuResource,
    tracking: MlflowTracking,
    out_dir: Path,
    *,
    run_name: str = "train_adapter",
    consumer: str = "train_adapter",
    mlflow_tags: dict[str, str] | None = None,
    checkpoints_dir: Path | None = None,
    tensorboard_dir: Path | None = None,
) -> dict:
    """Train a LoRA adapter of `config` into `out_dir` (adapter/, checkpoints/, tensorboard/, plots, run.json);
    returns the asset metadata: summary scalars, device facts, MLflow run id, plots, path. `checkpoints_dir`
    (default out_dir/checkpoints) holds the resumable checkpoints, outside a per-run folder when a rerun must
    find them; `tensorboard_dir` (default out_dir/tensorboard) gets one folder per run, side by side with
    earlier runs'."""
    from llama_sft_dagster.core.training.batch_plan import BatchPlanError
    from llama_sft_dagster.core.training.device import TrainingRefused

    plan = gpu.plan(context.log)
    processes = gpu.process_count(plan)
    try:
        job, data_version, base_version, batch = build_job(
            config, artifacts, gpu, plan, processes, Path(out_dir), consumer, checkpoints_dir, tensorboard_dir
        )
    except (TrainingRefused, BatchPlanError) as exc:  # one line, naming the setting; before the model loads
        raise dg.Failure(str(exc), allow_retries=False) from exc
    context.log.info(f"{run_name}: batch plan: {batch.reason}")
    env = {STEP_PID_ENV: str(os.getpid())}
    if plan.device == "cuda":  # the ranks see exactly the devices this step locked
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpu.device_ids(plan, processes))
    else:
        env.update(cpu_training_env(dict(os.environ), gpu.cpu_reuse_memory))
    params = _tuned_params(
        config, job.fmt, data_version, base_version, {"processes": processes, "launch_config": gpu.launch_config}
    )
    plan = dataclasses.replace(plan, gradient_checkpointing=batch.gradient_checkpointing)
    tags = {**{f"device.{k}": str(v) for k, v in plan.metadata().items()}, **(mlflow_tags or {})}
    # the pool `gpu` queues the step; the device locks make it exclusive (see GpuResource.exclusive)
    with (
        gpu.exclusive(plan, f"{run_name} of run {context.run.run_id}", context.log, processes) as lock_wait_s,
        tracking.training_run(
            run_name,
            job.mlflow_spool,
            params=params,
            dagster_run_id=context.run.run_id,
            train_data_version=data_version,
            tags=tags,
        ) as run,
    ):
        job = dataclasses.replace(
            job,
            dagster_run_id=context.run.run_id,
            mlflow_tracking_uri=tracking.resolved_uri(),
            mlflow_run_id=run.run_id,
            mlflow_timeout_s=tracking.probe_timeout_s,
        )
        if run.run_id:
            job = dataclasses.replace(job, mlflow_url=tracking.run_url(run.run_id, run.experiment_id))
        reported = launch(context, job, env)
        run.add_artifacts(
            [_value(reported, f"{k}_plot") for k in ("loss", "grad_norm", "effective_rank") if f"{k}_plot" in reported],
            "plots",
        )
        run.add_artifacts([Path(out_dir) / "adapter" / "adapter_config.json"], "adapter")
    mlflow = mlflow_facts(tracking, run)
    if mlflow["mlflow"]:
        context.log.warning(f"{run_name}: MLflow {run.status}: {mlflow['mlflow']}")
    context.log.info(
        f"{run_name}: loss {_value(reported, 'first_train_loss')} -> "
        f"{_value(reported, 'final_train_loss')}, best eval_loss {_value(reported, 'best_eval_loss')} "
        f"at step {_value(reported, 'best_eval_step')} ({processes} process(es), {gpu.launch_config})"
    )
    device = {k if k.startswith("device") else f"device_{k}": v for k, v in plan.metadata().items()}
    facts = tidy(
        {
            **device,
            "device_lock_wait_s": lock_wait_s,
            **mlflow,
            "tensorboard": dg.MetadataValue.url(tensorboard_url(Path(_value(reported, "tensorboard_run")).name))
            if reported.get("tensorboard_run")
            else None,
            "launch_processes": processes,
            "launch_config": gpu.launch_config,
            **batch.metadata(),
        }
    )
    scalars = {k: v for k, v in plain_values({**reported, **facts}).items() if k not in PLOTS}
    (Path(out_dir) / RUN_FILE).write_text(
        json.dumps(
            {"dagster_run_id": context.run.run_id, "train_data_version": data_version, **scalars}, indent=2, default=str
        )
    )
    # the run's TensorBoard folder is in the `tensorboard` URL (a link), not a second, path-valued entry
    return {
        **inline_plots({k: v for k, v in reported.items() if k != "tensorboard_run"}),
        **loss_curve(out_dir),
        **facts,
    }


def mlflow_facts(tracking: MlflowTracking, run) -> dict:
    """Where the run's metrics went (`mlflow_status`, resources/tracking.py training_run) and its links."""
    on_server = run.status in ("live", "replayed")
    notes = {
        "replayed": f"the server was unreachable for a while: {run.buffered} metric value(s) were kept and sent later",
        "local": f"the server could not be reached: the run is in the local store {run.local_store}",
        "spool": f"no MLflow store took the run: its metrics are in {run.spool} and the TensorBoard files",
    }
    return {
        "mlflow_status": run.status,
        "mlflow_metrics_buffered": run.buffered,
        "mlflow": notes.get(run.status),
        "mlflow_run_id": run.run_id if on_server else None,
        "mlflow_local_run_id": run.local_run_id or None,
        "mlflow_run": dg.MetadataValue.url(tracking.run_url(run.run_id, run.experiment_id)) if on_server else None,
        "mlflow_experiment": dg.MetadataValue.url(tracking.experiment_url(run.experiment_id)) if on_server else None,
    }


def tensorboard_url(run_folder: str) -> str:
    """TensorBoard (`make tensorboard`) on this run only, its loss charts first (the tag filter `loss`)."""
    from urllib.parse import quote

    return f"{TENSORBOARD_UI_URL}/?runFilter={quote(run_folder)}&tagFilter=loss#timeseries"


def tensorboard_run_folder(url: str) -> str:
    """The run folder a `tensorboard_url` shows (its runFilter), under the TensorBoard root."""
    from urllib.parse import parse_qs, urlsplit

    return parse_qs(urlsplit(url).query)["runFilter"][0]


def plain_values(metadata: dict) -> dict:
    """The metadata with Dagster's MetadataValue wrappers (as reported over Pipes) taken off."""
    return {k: _value(metadata, k) for k in metadata}


def _value(metadata: dict, key: str):
    value = metadata.get(key)
    return getattr(value, "value", value)
