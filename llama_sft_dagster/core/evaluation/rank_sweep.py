"""Figures of the LoRA rank sweep: effective-rank utilisation of a trained adapter, the spread of its
per-intent loss, and the report table over ranks. Pure numpy/Python apart from `lora_pairs`' input.

Utilisation = entropy effective rank of dW = (alpha / r) B A, divided by r (core/training/rank_metrics.py):
1.0 when the update spreads over all r directions, small when most of the rank is unused. Unlike the
seed's nuclear/Frobenius ratio (ceiling sqrt(r)), it is comparable across ranks. A matrix of the tiny
demo model (hidden 64) cannot have rank above 64, so r=128 there is at most 0.5 by construction.

    python -c "from llama_sft_dagster.core.evaluation.rank_sweep import spread; print(spread([1.0, 2.0]))"
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence


def lora_pairs(tensors: Mapping[str, object]) -> dict[str, tuple[object, object]]:
    """{module name: (lora_A weight, lora_B weight)} from an adapter's state dict (PEFT key layout)."""
    pairs = {}
    for key, a in tensors.items():
        if key.endswith("lora_A.weight"):
            module = key[: -len(".lora_A.weight")]
            b = tensors.get(f"{module}.lora_B.weight")
            if b is None:
                raise ValueError(f"adapter has {key} but no {module}.lora_B.weight")
            pairs[module] = (a, b)
    if not pairs:
        raise ValueError("adapter state dict holds no lora_A/lora_B weights")
    return pairs


def rank_utilisation(tensors: Mapping[str, object], r: int, alpha: float) -> dict[str, float]:
    """Mean, min and max over LoRA modules of entropy effective rank / r, and the mean entropy rank."""
    from llama_sft_dagster.core.training.rank_metrics import entropy_effective_rank, lora_singular_values

    ranks = [entropy_effective_rank(lora_singular_values(a, b, alpha / r)) for a, b in lora_pairs(tensors).values()]
    return {
        "rank_utilisation": statistics.fmean(ranks) / r,
        "rank_utilisation_min": min(ranks) / r,
        "rank_utilisation_max": max(ranks) / r,
        "entropy_rank_mean": statistics.fmean(ranks),
    }


def spread(losses: Sequence[float]) -> dict[str, float]:
    """Spread of per-intent losses: standard deviation, best and worst intent."""
    if not losses:
        return {"intent_loss_std": float("nan"), "intent_loss_min": float("nan"), "intent_loss_max": float("nan")}
    return {
        "intent_loss_std": statistics.pstdev(losses),
        "intent_loss_min": min(losses),
        "intent_loss_max": max(losses),
    }


SWEEP_COLUMNS = (
    ("lora_r", "r", "{}"),
    ("lora_alpha", "alpha", "{}"),
    ("best_eval_loss", "best eval loss", "{:.4f}"),
    ("validation_loss", "val reply loss", "{:.4f}"),
    ("intent_loss_std", "intent loss std", "{:.4f}"),
    ("intent_loss_max", "worst intent loss", "{:.4f}"),
    ("trainable_params", "trainable params", "{:,}"),
    ("train_runtime_s", "train s", "{:.1f}"),
    ("peak_memory_gb", "peak mem GB", "{:.2f}"),
    ("rank_utilisation", "eff. rank / r", "{:.3f}"),
    ("entropy_rank_mean", "entropy rank", "{:.1f}"),
)


def sweep_markdown(rows: Sequence[Mapping]) -> str:
    """One line per rank, sorted by r."""
    lines = ["| " + " | ".join(h for _, h, _ in SWEEP_COLUMNS) + " |", "|" + "---:|" * len(SWEEP_COLUMNS)]
    for row in sorted(rows, key=lambda r: r["lora_r"]):
        cells = [fmt.format(row[k]) if row.get(k) is not None else "-" for k, _, fmt in SWEEP_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
