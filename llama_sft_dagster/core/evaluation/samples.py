"""The fixed generation samples of adapter_evaluation: a seeded pick of `per_group` rows per intent (else
per category, e.g. a MultiWOZ pair without an active intent, else per source), so that two evaluations of
two adapters show replies to the same prompts.

    pick_samples(rows, per_group=2, seed=0) -> indices into rows, sorted
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence


def sample_group(row: Mapping) -> str:
    """`intent:<x>`, else `category:<x>`, else `source:<name>`: the most specific group the row has."""
    for column in ("intent", "category", "source"):
        if row.get(column):
            return f"{column}:{row[column]}"
    return "source:unknown"


def pick_samples(rows: Sequence[Mapping], per_group: int, seed: int) -> list[int]:
    """Indices of `per_group` rows of every group (all of a smaller group), chosen by `seed` only.

    Rows are ordered by `pair_id` before the draw, so the pick does not depend on the file's row order."""
    if per_group < 0:
        raise ValueError(f"per_group={per_group}: use 0 (no samples) or more")
    by_group: dict[str, list[int]] = {}
    for i in sorted(range(len(rows)), key=lambda i: str(rows[i].get("pair_id", i))):
        by_group.setdefault(sample_group(rows[i]), []).append(i)
    rng = random.Random(seed)
    picked = [i for g in sorted(by_group) for i in rng.sample(by_group[g], min(per_group, len(by_group[g])))]
    return sorted(picked)


def samples_rows(samples: Sequence[Mapping], max_chars: int = 300) -> list[dict]:
    """Group, prompt, reference, base and tuned reply per sample, each text cut at max_chars."""

    def cell(text: str) -> str:
        text = " ".join(str(text).split())
        return text if len(text) <= max_chars else text[: max_chars - 1] + "…"

    fields = ("group", "prompt", "reference", "base_reply", "tuned_reply")
    return [{f: cell(s[f]) for f in fields} for s in samples]
