"""The loss figures of a run, one name each, defined here once (the run report's glossary prints GLOSSARY).

Every loss is a mean cross-entropy per supervised token: the assistant reply and its <|eot_id|> (prompt,
system prompt and padding positions are masked out), summed over all rows and divided by their token
count (token-weighted, not a mean of per-row means). They differ in the model, the rows and the moment:

    python -c "from llama_sft_dagster.core.report.losses import GLOSSARY; print(*GLOSSARY.items(), sep='\\n')"
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from llama_sft_dagster.core.report.tidy import round_float

SETS = {"validation": "validation_loss", "held_out": "held_out_loss"}

GLOSSARY = {
    "train_loss": "trainer (TRL SFTTrainer), during training: the adapter model in training mode over each "
    "logging window's train batches (logging_steps optimizer steps); first and final window shown.",
    "eval_loss": "trainer, every eval_steps: the adapter model on the validation split (all rows, or "
    "eval_max_samples evenly spaced), tokenized as sft_dataset stored them; best_eval_loss is the lowest, "
    "and its checkpoint is the adapter kept.",
    "validation_loss": "adapter_evaluation, after training: base model vs merged (tuned) model on the validation "
    "split's rows (all, or validation_max_rows evenly spaced), each model's own chat template.",
    "held_out_loss": "adapter_evaluation: base vs tuned on held-out MultiWOZ dev/test pairs, never trained on.",
    "evaluation_loss": "adapter_evaluation: base vs tuned on validation and held-out rows together; the one "
    "figure the champion decision compares (champion_model).",
}


def sig4(value: float | None) -> float | None:
    """A loss as reported: 4 significant digits."""
    return None if value is None else round_float(float(value))


def evaluation_losses(table: Sequence[Mapping], pooled: Mapping[str, float]) -> dict[str, float]:
    """{validation_loss_base, ..., evaluation_loss_tuned} from metrics.compare's table (its `overall` rows) and
    the pooled figures {"base": .., "tuned": ..}; unrounded (decisions compare them; sig4 for display)."""
    out = {}
    for row in table:
        if row["group"] == "overall" and row["set"] in SETS:
            out.update({f"{SETS[row['set']]}_{m}": row[f"{m}_loss"] for m in ("base", "tuned")})
    out.update({f"evaluation_loss_{m}": pooled[m] for m in ("base", "tuned")})
    return out


def glossary_markdown() -> str:
    lines = [
        "Every loss: mean cross-entropy per supervised token (assistant reply + <|eot_id|>), token-weighted.",
        "",
        "| name | what, over which rows |",
        "|---|---|",
    ]
    return "\n".join([*lines, *(f"| {name} | {text} |" for name, text in GLOSSARY.items())])
