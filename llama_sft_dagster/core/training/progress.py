"""What a person watching a training run sees, and where the Trainer's own curves go.

- `ProgressLine`: a `TrainerCallback` that reports one line every `every` optimizer steps and after each
  evaluation: "train step 10/40  loss 5.123  1,234 tokens/s  ETA 0:00:35". The asset
  passes `context.log.info`, so the line is in the Dagster run log (UI) and `make demo` prints it.
- `TrainerLogsToMlflow`: forwards the Trainer's logs (loss, eval_loss, learning_rate, grad_norm) to the
  active MLflow run under TensorBoard's names (train/loss, eval/loss...). It replaces transformers'
  MLflowCallback, which also logs every TrainingArguments field and the whole model config as params
  (~200, most of them noise): the run's params are then only what `train_adapter` logs (what a user tuned,
  see resources/tracking.py).
- `tensorboard_run_dir` / `route_tensorboard`: one readable TensorBoard run folder per training run,
  shared by the Trainer's TensorBoardCallback (loss, eval loss, learning rate) and the TrainingMonitor.
  The Trainer's default folder is `<output_dir>/runs/...`, inside the checkpoints folder, which is
  cleared whenever the config changes; this one is not.
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


def route_tensorboard(trainer, log_dir: Path) -> bool:
    """Point the Trainer's TensorBoardCallback at `log_dir` (before `train()`); False if it has none."""
    from transformers.integrations import TensorBoardCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback):
            callback.logging_dir = str(log_dir)  # read at on_train_begin when it opens its writer
            return True
    return False


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


class TrainerLogsToMlflow(TrainerCallback):
    """Numeric Trainer logs -> the active MLflow run (train_* summary keys of the last log included), or
    `sink(metrics, step)` when given (rank 0's MetricSpool, core/tracking/spool.py, which never raises)."""

    def __init__(self, sink=None):
        self.failed, self.sink = False, sink

    def on_log(self, args, state, control, logs=None, **kwargs):
        import mlflow

        if not state.is_world_process_zero or (self.sink is None and (self.failed or mlflow.active_run() is None)):
            return
        # grouped as TensorBoardCallback names them (train/loss, eval/loss): one section per family in MLflow
        metrics = {
            (f"eval/{k[5:]}" if k.startswith("eval_") else f"train/{k}"): float(v)
            for k, v in (logs or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "epoch"
        }
        if self.sink is not None:
            self.sink(metrics, state.global_step)
            return
        try:
            if metrics:
                mlflow.log_metrics(metrics, step=state.global_step)
        except Exception as exc:  # a tracking outage must not stop training
            self.failed = True
            log.warning("MLflow logging of the Trainer's metrics failed (%s); TensorBoard keeps them", exc)
