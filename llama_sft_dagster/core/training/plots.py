"""PNG plots of a training run, for Dagster metadata and the MLflow run.

- `plot_losses(trainer.state.log_history, path)`: train `loss` and `eval_loss` against step.
- `plot_grad_norms(monitor.history, path)`: every `grad_norm/<module>` series (pre-clipping).
- `plot_effective_rank(monitor.history, path)`: the three rank measures per module, one panel each.
- `png_markdown(path, alt)`: a Markdown image with a base64 data URI, which is how the Dagster UI shows
  an image: `dg.MetadataValue.md(png_markdown(path, "loss"))`.

Each plot function returns the written path, or None when the history holds nothing to draw (so an
asset can say "no eval loss logged" instead of attaching an empty chart). matplotlib runs on the Agg
backend, so no display is needed.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

RANK_METRICS = (
    ("eff_rank_nuc_frob", "nuclear/Frobenius ratio of dW = (alpha/r) B A (ceiling sqrt(r))"),
    ("eff_rank_nuc_frob_B", "nuclear/Frobenius ratio of lora_B alone (the walkthrough's)"),
    ("eff_rank_entropy", "entropy effective rank (ceiling r)"),
    ("stable_rank", "stable rank (ceiling r)"),
)


def _figure(nrows: int = 1):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # panels stacked, never side by side: a 6-inch-wide image fits the UI's Markdown dialog
    fig, axes = plt.subplots(nrows, 1, figsize=(6, 3.2 * nrows if nrows > 1 else 4), squeeze=False)
    return plt, fig, list(axes[:, 0])


def _save(plt, fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
    return path


def _series(history: Mapping[int, Mapping[str, float]], prefix: str) -> dict[str, tuple[list[int], list[float]]]:
    """{suffix: (steps, values)} for every key `<prefix>/<suffix>` in a step -> metrics history."""
    out: dict[str, tuple[list[int], list[float]]] = {}
    for step in sorted(history):
        for key, value in history[step].items():
            if key.startswith(prefix + "/"):
                steps, values = out.setdefault(key.split("/", 1)[1], ([], []))
                steps.append(step)
                values.append(value)
    return out


def plot_losses(log_history: Sequence[Mapping[str, Any]], path: str | Path) -> Path | None:
    """Train and eval loss against step from `trainer.state.log_history`."""
    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e and "step" in e]
    evals = [(e["step"], e["eval_loss"]) for e in log_history if "eval_loss" in e and "step" in e]
    if not train and not evals:
        return None
    plt, fig, (ax,) = _figure()
    for points, label, style in ((train, "train loss", "-"), (evals, "eval loss", "o-")):
        if points:
            ax.plot(*zip(*points), style, label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(plt, fig, path)


def plot_grad_norms(history: Mapping[int, Mapping[str, float]], path: str | Path) -> Path | None:
    """Per-module LoRA gradient norms (before clipping) against step."""
    series = _series(history, "grad_norm")
    if not series:
        return None
    plt, fig, (ax,) = _figure()
    for name, (steps, values) in sorted(series.items()):
        ax.plot(steps, values, "--" if name == "lora_total" else "-", label=name)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("gradient L2 norm (before clipping)")
    ax.set_yscale("log")
    ax.legend(fontsize="small", ncol=2)
    ax.grid(alpha=0.3)
    return _save(plt, fig, path)


def plot_effective_rank(history: Mapping[int, Mapping[str, float]], path: str | Path) -> Path | None:
    """The three effective-rank measures of dW per module type (mean over layers) against step."""
    panels = [(metric, title, _series(history, metric)) for metric, title in RANK_METRICS]
    if not any(series for _, _, series in panels):
        return None
    plt, fig, axes = _figure(len(panels))
    for ax, (_, title, series) in zip(axes, panels):
        for name, (steps, values) in sorted(series.items()):
            ax.plot(steps, values, "o-", label=name, markersize=3)
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small", ncol=4)
    return _save(plt, fig, path)


def png_markdown(path: str | Path, alt: str = "plot") -> str:
    """Markdown image with the PNG inlined as a base64 data URI (what the Dagster UI renders)."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"![{alt}](data:image/png;base64,{data})"
