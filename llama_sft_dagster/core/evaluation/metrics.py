"""Grouped metrics from per-row scores, pure Python (no torch): what adapter_evaluation reports.

A scored row is a mapping with the row's groups and three sums over its reply tokens (the tokens the
fine-tune supervises: the assistant reply and its <|eot_id|>):

    {"set": "validation", "source": "bitext", "intent": "cancel_order", "category": "ORDER",
     "nll": 41.7, "tokens": 52, "correct": 31}

`groups(row)` names the groups a row counts in: per set, `overall`, `source:<name>` (each row of the sources
table), and `intent:<x>` / `category:<x>` where the row has them (a MultiWOZ pair's intent is its user turn's
active intent, its category the dialogue domain; a team's conversations have them when mapped). A group's loss
is token-weighted (sum nll / sum tokens, the trainer's eval_loss), perplexity is exp(loss), accuracy
is next-token (argmax) accuracy on reply tokens, `samples` the number of rows.

    python -c "from llama_sft_dagster.core.evaluation.metrics import aggregate; print(aggregate([]))"
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

SCORE_FIELDS = ("nll", "tokens", "correct")


def groups(row: Mapping) -> list[str]:
    """The group names a scored row counts in, e.g. ["overall", "source:x", "intent:cancel_order", "category:ORDER"]."""
    names = ["overall", f"source:{row.get('source') or 'unknown'}"]
    return names + [f"{c}:{row[c]}" for c in ("intent", "category") if row.get(c)]


def aggregate(rows: Iterable[Mapping]) -> dict[tuple[str, str], dict]:
    """{(set, group): {"samples", "tokens", "loss", "perplexity", "accuracy"}} over scored rows."""
    sums: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        for group in groups(row):
            acc = sums.setdefault((row["set"], group), [0, 0.0, 0, 0])
            acc[0] += 1
            acc[1] += row["nll"]
            acc[2] += row["tokens"]
            acc[3] += row["correct"]
    out = {}
    for key, (samples, nll, tokens, correct) in sums.items():
        loss = nll / tokens if tokens else float("nan")
        out[key] = {
            "samples": samples,
            "tokens": tokens,
            "loss": loss,
            "perplexity": math.exp(loss) if tokens else float("nan"),
            "accuracy": correct / tokens if tokens else float("nan"),
        }
    return out


def compare(base: Iterable[Mapping], tuned: Iterable[Mapping]) -> list[dict]:
    """One row per (set, group) with base and tuned metrics side by side, sorted by set then group.

    Both models must have been scored on the same rows: a group whose sample counts differ is an error."""
    b, t = aggregate(base), aggregate(tuned)
    if b.keys() != t.keys():
        raise ValueError(f"base and tuned were scored on different groups: {sorted(b.keys() ^ t.keys())[:5]}")
    table = []
    for key in sorted(b, key=lambda k: (k[0], k[1] != "overall", k[1])):
        if b[key]["samples"] != t[key]["samples"]:
            raise ValueError(f"{key}: base scored {b[key]['samples']} rows, tuned {t[key]['samples']}")
        row = {"set": key[0], "group": key[1], "samples": b[key]["samples"], "tokens": b[key]["tokens"]}
        for name, metrics in (("base", b[key]), ("tuned", t[key])):
            row.update({f"{name}_{m}": metrics[m] for m in ("loss", "perplexity", "accuracy")})
        row["loss_delta"] = row["tuned_loss"] - row["base_loss"]
        table.append(row)
    return table


def overall(table: Sequence[Mapping], set_name: str) -> Mapping | None:
    return next((r for r in table if r["set"] == set_name and r["group"] == "overall"), None)


def worse_groups(table: Sequence[Mapping]) -> list[str]:
    """'set/group' of every group (not `overall`) where the tuned loss is above the base loss."""
    return [f"{r['set']}/{r['group']}" for r in table if r["group"] != "overall" and r["tuned_loss"] > r["base_loss"]]


def pooled_loss(rows: Iterable[Mapping]) -> float:
    """Token-weighted loss over all rows of all sets (the single figure the champion decision compares)."""
    nll = tokens = 0.0
    for row in rows:
        nll += row["nll"]
        tokens += row["tokens"]
    if not tokens:
        raise ValueError("no reply tokens were scored: the evaluation set is empty")
    return nll / tokens


def table_rows(
    table: Sequence[Mapping], kinds: Sequence[str] = ("overall", "intent", "category", "domain")
) -> list[dict]:
    """The comparison as flat rows for a table view: set, group, rows, and base/tuned loss and accuracy under
    the glossary's names (`loss` is validation_loss or held_out_loss by the row's set)."""
    return [
        {
            "set": r["set"],
            "group": r["group"],
            "rows": r["samples"],
            "loss_base": r["base_loss"],
            "loss_tuned": r["tuned_loss"],
            "accuracy_base": r["base_accuracy"],
            "accuracy_tuned": r["tuned_accuracy"],
        }
        for r in table
        if r["group"].split(":", 1)[0] in kinds
    ]
