"""The spec of one training job: what to train, where to write, how to launch. Written by the asset
(assets/adapter_training.py) as JSON, read by the launcher and by every rank."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

JOB_FILE = "job.json"  # the job as the asset wrote it, in its launch folder (`TrainJob.launch_dir`)


@dataclasses.dataclass(frozen=True)
class TrainJob:
    base_dir: str  # base model folder (save_pretrained)
    train_path: str  # sft_dataset's train.parquet
    validation_path: str  # sft_dataset's validation.parquet
    fmt: dict[str, Any]  # sft_dataset format settings (format.json)
    config: dict[str, Any]  # the whole TrainConfig (model_dump), validated by the asset that wrote the job
    batch: dict[str, Any]  # BatchPlan fields (core/training/batch_plan.py): how the global batch is computed here
    plan: dict[str, Any]  # DevicePlan fields (core/training/device.py)
    out_dir: str  # checkpoints/, adapter/, tensorboard/, plots, launch/ go here
    run_fingerprint: str  # resume only checkpoints of the same fingerprint (core/training/trainer.py)
    processes: int = 1  # processes on each machine
    accelerate_config: str = ""  # accelerate config file (launch/accelerate/*.yaml or the user's)
    mlflow_tracking_uri: str = ""  # rank 0 logs into this run, which the asset opened and will close
    mlflow_run_id: str = ""
    mlflow_url: str = ""  # where the run opens in the MLflow UI (report.json links it)
    mlflow_timeout_s: float = 5.0  # one attempt to send metrics, then they wait in the spool (core/tracking/spool.py)
    dagster_run_id: str = ""  # names the TensorBoard run folder (progress.tensorboard_run_dir)
    checkpoints_dir: str = ""  # resumable checkpoints; default out_dir/checkpoints (apart from a version folder)
    tensorboard_dir: str = ""  # TensorBoard root, one folder per run; default out_dir/tensorboard

    def train_config(self) -> SimpleNamespace:
        """The TrainConfig's fields as attributes: what core/training/trainer.py reads. Not the dagster class:
        the ranks import no dagster (tests/unit/test_launch.py), and the asset validated the values already."""
        return SimpleNamespace(**self.config)

    def batch_plan(self):
        from llama_sft_dagster.core.training.batch_plan import BatchPlan

        return BatchPlan(**self.batch)

    @property
    def checkpoints(self) -> Path:
        return Path(self.checkpoints_dir) if self.checkpoints_dir else Path(self.out_dir) / "checkpoints"

    @property
    def tensorboard(self) -> Path:
        return Path(self.tensorboard_dir) if self.tensorboard_dir else Path(self.out_dir) / "tensorboard"

    @property
    def launch_dir(self) -> Path:
        return Path(self.out_dir) / "launch"

    @property
    def mlflow_spool(self) -> Path:
        """Rank 0's metrics, kept here first and sent to the MLflow run when its server answers."""
        from llama_sft_dagster.core.tracking.spool import SPOOL_FILE

        return self.launch_dir / SPOOL_FILE

    @property
    def log_dir(self) -> Path:
        """torchrun's per-rank stdout/stderr files (`--log_dir`, `--tee 3`)."""
        return self.launch_dir / "logs"

    @property
    def failure_file(self) -> Path:
        """Written by the launcher when a rank fails: which rank, its exit code or signal."""
        return self.launch_dir / "failure.json"

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True))
        return path

    @classmethod
    def read(cls, path: Path) -> TrainJob:
        return cls(**json.loads(Path(path).read_text()))
