"""The row funnel of a run, stage by stage, with drop reasons and samples of the dropped rows.

Pure logic on plain values; `assets/report.py` reads the stages' Parquet files and calls it:

    stage = StageRows("word_count_filtered", rows_in=5000, rows_out=4800, dropped={"short_response": 200},
                      unit="pairs")
    funnel_markdown([stage])   # one table row per stage: in -> out, the top drop reasons
    one_line(stage, seconds)   # "word_count_filtered  5,000 -> 4,800 pairs  (short_response 200)  1.2 s"

`unit` says what is counted: the raw sources count Bitext rows and MultiWOZ *turns*, every stage after
`raw_pairs` counts instruction/response *pairs* (a MultiWOZ pair uses two turns).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

TOP_REASONS = 3


@dataclass
class StageRows:
    stage: str
    rows_in: int
    rows_out: int
    dropped: Counter = field(default_factory=Counter)
    unit: str = "pairs"
    unit_in: str | None = None  # when the input is counted in other units (raw rows and turns -> pairs)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


def top_reasons(dropped: Mapping[str, int], n: int = TOP_REASONS) -> str:
    """'reason 12, other 3 (+2 more)' by count, or '' when nothing was dropped."""
    items = sorted(((r, c) for r, c in dropped.items() if c), key=lambda rc: (-rc[1], rc[0]))
    text = ", ".join(f"{r} {c:,}" for r, c in items[:n])
    return text + (f" (+{len(items) - n} more)" if len(items) > n else "")


def one_line(stage: StageRows, seconds: float | None = None, width: int = 22) -> str:
    reasons = top_reasons(stage.dropped)
    unit_in = f" {stage.unit_in}" if stage.unit_in else ""
    text = f"{stage.stage:<{width}} {stage.rows_in:>7,}{unit_in} -> {stage.rows_out:>7,} {stage.unit}"
    if reasons:
        text += f"  dropped: {reasons}"
    if seconds is not None:
        text += f"  [{seconds:.1f} s]"
    return text


def funnel_markdown(stages: Sequence[StageRows]) -> str:
    """Markdown table: stage | in | out | dropped | top reasons (short enough to show inline in the UI)."""
    lines = ["| stage | in | out | top drop reasons |", "|---|---:|---:|---|"]
    for s in stages:
        unit_in = f" {s.unit_in}" if s.unit_in else ""
        reasons = top_reasons(s.dropped, 2) or "-"
        lines.append(f"| {s.stage} | {s.rows_in:,}{unit_in} | {s.rows_out:,} {s.unit} | {reasons} |")
    return "\n".join(lines)


def sample_drops(
    rejects: Sequence[Mapping], per_reason: int = 2, kept_by_id: Mapping[str, Mapping] | None = None
) -> dict[str, list[dict]]:
    """{reason: the first `per_reason` dropped rows}; a row whose detail is `duplicate_of=<pair_id>` gets
    the kept twin from `kept_by_id` (pair_id -> row) under "kept_twin"."""
    out: dict[str, list[dict]] = {}
    for row in rejects:
        picked = out.setdefault(row["reason"], [])
        if len(picked) >= per_reason:
            continue
        sample = {k: row.get(k) for k in ("pair_id", "instruction", "response", "detail")}
        detail = row.get("detail") or ""
        if detail.startswith("duplicate_of=") and kept_by_id is not None:
            twin = kept_by_id.get(detail[len("duplicate_of=") :])
            if twin is not None:
                sample["kept_twin"] = {k: twin.get(k) for k in ("pair_id", "instruction", "response")}
        picked.append(sample)
    return out


SAMPLE_TEXT_CHARS = 400  # whole sentences: a near-duplicate differs from its kept twin deep in the text


def samples_table(samples: Mapping[str, list[dict]], chars: int = SAMPLE_TEXT_CHARS) -> list[dict]:
    """One row per dropped sample, by reason (every filter the same way): reason, row (`dropped` or, under a
    duplicate, `kept twin`), pair_id, instruction, response, detail. Texts are cut at `chars`, not shorter, so
    a near-duplicate can be told from its twin."""

    def clip(text: str | None) -> str:
        text = " ".join((text or "").split())
        return text if len(text) <= chars else text[: chars - 1] + "…"

    def row(reason: str, kind: str, r: Mapping, detail: str) -> dict:
        return {
            "reason": reason,
            "row": kind,
            "pair_id": r["pair_id"],
            "instruction": clip(r["instruction"]),
            "response": clip(r["response"]),
            "detail": detail,
        }

    out = []
    for reason, rows in sorted(samples.items()):
        for r in rows:
            out.append(row(reason, "dropped", r, r.get("detail") or ""))
            if r.get("kept_twin") is not None:
                out.append(row(reason, "kept twin", r["kept_twin"], ""))
    return out
