"""The walkthrough's training advice as a test on logged figures: "halve the learning rate if the gradient
norm stays above 1.5" (train_adapter's WARN check `train_adapter_grad_norm` runs it on the run's report).

    python -c "from llama_sft_dagster.core.training.advice import grad_norm_advice as a; print(a([(1, 2.0)] * 8))"
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

GRAD_NORM_CEILING = 1.5  # the walkthrough's figure, for the trainer's pre-clipping global grad_norm
TAIL_SHARE = 0.25  # "stays": the last quarter of the logged steps (at least MIN_TAIL points)
MIN_TAIL = 3


@dataclass(frozen=True)
class GradNormAdvice:
    high: bool  # every logged grad_norm of the tail is above the ceiling
    tail_median: float
    last: float
    tail_steps: tuple[int, int]
    message: str


def grad_norm_advice(series: Sequence[tuple[int, float]], ceiling: float = GRAD_NORM_CEILING) -> GradNormAdvice | None:
    """None without logged norms; else whether the last quarter of (step, grad_norm) stays above `ceiling`."""
    if not series:
        return None
    tail = list(series)[-max(MIN_TAIL, round(len(series) * TAIL_SHARE)) :]
    norms = [n for _, n in tail]
    high = len(tail) >= MIN_TAIL and min(norms) > ceiling
    steps = (tail[0][0], tail[-1][0])
    figure = f"grad_norm over steps {steps[0]}-{steps[1]}: median {median(norms):.4g}, last {norms[-1]:.4g}"
    message = (
        f"{figure}, above {ceiling} throughout: halve the learning rate"
        if high
        else f"{figure} (advice: halve the learning rate only if it stays above {ceiling})"
    )
    return GradNormAdvice(high, median(norms), norms[-1], steps, message)
