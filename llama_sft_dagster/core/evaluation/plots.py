"""PNG charts of the evaluation group (Agg backend, see core/training/plots.py for the helpers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from llama_sft_dagster.core.training.plots import _figure, _save


def plot_group_losses(
    table: Sequence[Mapping],
    path: str | Path,
    set_name: str = "validation",
    kinds: Sequence[str] = ("intent", "domain"),
) -> Path | None:
    """Horizontal bars: base vs tuned reply-token loss per intent (and domain) of one evaluation set."""
    rows = [r for r in table if r["set"] == set_name and r["group"].split(":", 1)[0] in kinds]
    if not rows:
        return None
    plt, fig, (ax,) = _figure()
    fig.set_size_inches(7, 0.28 * len(rows) + 1.5)
    y = range(len(rows))
    ax.barh([i + 0.2 for i in y], [r["base_loss"] for r in rows], height=0.4, label="base")
    ax.barh([i - 0.2 for i in y], [r["tuned_loss"] for r in rows], height=0.4, label="tuned")
    ax.set_yticks(list(y), [r["group"] for r in rows], fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel(f"mean loss on reply tokens ({set_name})")
    ax.legend()
    ax.grid(alpha=0.3, axis="x")
    return _save(plt, fig, path)


def plot_rank_sweep(rows: Sequence[Mapping], path: str | Path) -> Path | None:
    """Eval loss and effective-rank utilisation against LoRA rank (log2 axis)."""
    rows = sorted(rows, key=lambda r: r["lora_r"])
    if not rows:
        return None
    plt, fig, axes = _figure(2)
    ranks = [r["lora_r"] for r in rows]
    axes[0].plot(ranks, [r["best_eval_loss"] for r in rows], "o-", label="best eval loss")
    axes[0].plot(ranks, [r["validation_loss"] for r in rows], "s--", label="validation reply loss")
    axes[0].set_ylabel("loss")
    axes[0].legend()
    axes[1].plot(ranks, [r["rank_utilisation"] for r in rows], "o-")
    axes[1].set_ylabel("entropy effective rank / r (mean over LoRA modules)")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(ranks, [str(r) for r in ranks])
        ax.set_xlabel("LoRA rank r")
        ax.grid(alpha=0.3)
    return _save(plt, fig, path)
