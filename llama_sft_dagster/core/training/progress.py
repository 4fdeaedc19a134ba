"""What a person watching a training run sees, and where the Trainer's own curves go.

- `ProgressLine`: a `TrainerCallback` that reports one line every `every` optimizer steps and after each
  evaluation: "train step 10/40  loss 5.123  1,234 tokens/s  ETA 0:00:35". The asset
  passes `context.log.info`, so the line is in the Dagster run log (UI) and `make demo` prints it.
- `TrainerLogsToTrackers`: writes the Trainer's logs to TensorBoard and to the active MLflow run under the
  names of core/training/series.py (train_loss, eval_loss, learning_rate, grad_norm first; the rest under
  train_monitor/), the same names in both tools. It replaces transformers' TensorBoardCallback (its names,
  train/loss and eval/loss, are not the glossary's) and MLflowCallback, which also logs every
  TrainingArguments field and the whole model config as params (~200, most of them noise): the run's params
  are then only what `train_adapter` logs (what a user tuned, see resources/tracking.py).
- `tensorboard_run_dir`: one readable TensorBoard run folder per training run, shared by that callback and
  the TrainingMonitor. The Trainer's default folder is `<output_dir>/runs/...`, inside the checkpoints
  folder, which is cleared whenever the config changes; this one is not.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from transformers import TrainerCallback

log = logging.getLogger(__name__)


def tensorboard_run_dir(
    root: Path, run_id: str, lora_r: int, learning_rate: float, max_steps: int, now: datetime | None = None
) -> Path:
    """`<root>/2026-11-29_0642_r64_lr0.0002_steps40_2427fb30`: when, the main knobs, the Dagster run."""
    now = now or datetime.now(UTC)
    steps = f"steps{max_steps}" if max_steps > 0 else "epochs"
    name = f"{now:%Y-%m-%d_%H%M%S}_r{lora_r}_lr{learning_rate:g}_{steps}_{run_id[:8]}"
    return Path(root) / re.sub(r"[^A-Za-z0-9_.-]", "-", name)


def _eta(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class ProgressLine(TrainerCallback):
    """Reports progress through `report(line)`; `tokens_seen()` gives the training tokens so far."""

    def __init__(self, report: Callable[[str], None], every: int, tokens_seen: Callable[[], int] | None = None):
        if every < 1:
            raise ValueError(f"progress every must be >= 1, got {every}")
        self.report, self.every, self.tokens_seen = report, every, tokens_seen
        self._started = None
        self._start_step = 0
        self._reported = 0
        self._last_loss = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._started, self._start_step = time.monotonic(), state.global_step
        self._reported = state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        # one Trainer log is either a train log (loss), an evaluation (eval_loss) or the closing summary
        logs = logs or {}
        step = state.global_step
        if "eval_loss" in logs:
            self.report(self.line(state, f"eval_loss {logs['eval_loss']:.4g}", loss=False))
        elif "loss" in logs:
            self._last_loss = logs["loss"]
            # the first train log at or past each multiple of `every` (logging_steps need not divide it)
            if step // self.every > self._reported // self.every or step == state.max_steps:
                self._reported = step
                self.report(self.line(state))

    def line(self, state, extra: str = "", loss: bool = True) -> str:
        step, total = state.global_step, state.max_steps
        elapsed = time.monotonic() - self._started if self._started else 0.0
        done = step - self._start_step
        parts = [f"train step {step}/{total}"]
        if loss and self._last_loss is not None:
            parts.append(f"loss {self._last_loss:.4g}")
        if extra:
            parts.append(extra)
        if self.tokens_seen is not None and elapsed > 0:
            parts.append(f"{self.tokens_seen() / elapsed:,.0f} tokens/s")
        if done > 0 and total:
            parts.append(f"ETA {_eta(elapsed / done * (total - step))}")
        return "  ".join(parts)


class TrainerLogsToTrackers(TrainerCallback):
    """The Trainer's numeric logs under the project's series names (core/training/series.py) to TensorBoard
    (a writer on `log_dir`, opened at train begin) and to MLflow: through `sink(metrics, step)` when given (rank
    0's MetricSpool, core/tracking/spool.py, which never raises), else to the active MLflow run; rank 0 only."""

    def __init__(self, log_dir: Path | None = None, sink=None):
        self.log_dir, self.sink, self.failed, self._writer = log_dir, sink, False, None

    def on_train_begin(self, args, state, control, **kwargs):
        if self.log_dir is not None and state.is_world_process_zero and self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.log_dir))

    def on_log(self, args, state, control, logs=None, **kwargs):
        import mlflow

        from llama_sft_dagster.core.training.series import trainer_series

        metrics = trainer_series(logs or {})
        if not state.is_world_process_zero or not metrics:
            return
        if self._writer is not None:
            for tag, value in metrics.items():
                self._writer.add_scalar(tag, value, state.global_step)
            self._writer.flush()
        if self.sink is not None:
            self.sink(metrics, state.global_step)
            return
        if self.failed or mlflow.active_run() is None:
            return
        try:
            mlflow.log_metrics(metrics, step=state.global_step)
        except Exception as exc:  # a tracking outage must not stop training
            self.failed = True
            log.warning("MLflow logging of the Trainer's metrics failed (%s); TensorBoard keeps them", exc)

    def on_train_end(self, args, state, control, **kwargs):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
