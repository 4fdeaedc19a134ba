"""The names of the series a training run logs to TensorBoard and MLflow, chosen in one place.

The four a reader looks at first stand alone, under the run report's glossary names (core/report/losses.py):
`train_loss`, `eval_loss`, `learning_rate` and `grad_norm` (the Trainer's global norm before clipping, the
figure of train_adapter's grad-norm check). Every diagnostic (the TrainingMonitor's activation and gradient
norms per module, LoRA drift, effective ranks, memory, token efficiency, and the Trainer's timings) goes under
`train_monitor/`. Both tools sort by name, and `train_monitor` sorts after `train_loss`, so the losses come
first instead of `act_norm`'s dozen layers:

    eval_loss, grad_norm, learning_rate, train_loss, train_monitor/act_norm/layer_0, ...
"""

from __future__ import annotations

from collections.abc import Mapping

DIAG_PREFIX = "train_monitor"
# the Trainer's log keys that stand alone, by their glossary names
TRAINER_SERIES = {
    "loss": "train_loss",
    "eval_loss": "eval_loss",
    "learning_rate": "learning_rate",
    "grad_norm": "grad_norm",
}
# the closing summary's `train_loss` is the mean over the run, not a point of the per-step train_loss series
TRAINER_RENAMED = {"train_loss": "train_loss_mean"}
MONITOR_FAMILY = "monitor/"  # the TrainingMonitor's own family (token efficiency, padding share): the prefix says it


def diag_name(key: str) -> str:
    """A diagnostic's logged name: `act_norm/layer_3` -> `train_monitor/act_norm/layer_3`,
    `monitor/token_efficiency` -> `train_monitor/token_efficiency`."""
    return f"{DIAG_PREFIX}/{key.removeprefix(MONITOR_FAMILY)}"


def trainer_series(logs: Mapping[str, object]) -> dict[str, float]:
    """One Trainer log (a train window, an evaluation or the closing summary) under the logged names; numbers only,
    `epoch` left out (the step axis says it)."""
    return {
        TRAINER_SERIES.get(k) or diag_name(TRAINER_RENAMED.get(k, k)): float(v)
        for k, v in logs.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and k != "epoch"
    }
