"""Turn the raw Bitext rows and MultiWOZ turns into instruction/response pairs (`raw_pairs`).

Bitext: each row is a pair, dropped as `repeated_header` when its cells are the column names (two
exports concatenated), else as `blank_instruction` / `blank_response` when a cell is null or only
whitespace. MultiWOZ: each USER turn followed directly by a SYSTEM turn is a pair (the
seed's rule). The MultiWOZ accounting unit is the TURN: every turn is in exactly one pair or is
dropped with one of these reasons, checked in this order per turn:
- `unknown_speaker`: speaker is neither "USER" nor "SYSTEM" (exact spelling, as published);
- `empty_utterance`: nothing but whitespace (after control characters are removed);
- `utterance_too_long`: more than `max_utterance_chars` characters;
- `user_turn_followed_by_user`: a USER turn whose next turn is another valid USER turn (the later
  one may still pair with the SYSTEM turn after it);
- `user_turn_reply_dropped`: a USER turn whose next turn was itself dropped by a reason above;
- `user_turn_without_reply`: a USER turn that ends the dialogue;
- `system_turn_without_user`: a SYSTEM turn not preceded by a valid, still unpaired USER turn.
Control characters (C0/C1 except tab, newline, carriage return) are STRIPPED from both sources, not
dropped: they are transport noise, the text around them is usable. Stripped rows/turns are counted.

Identity (checked by `pairs_balanced`), in input-row units (a Bitext row or a MultiWOZ turn):
    rows_in = bitext_rows_in + multiwoz_turns_in
    rows_out = bitext_pairs_out + 2 * multiwoz_pairs_out   (each MultiWOZ pair consumes two turns)
    rows_in == rows_out + sum(dropped_<reason>)
Rejected MultiWOZ turns map onto REJECT_SCHEMA as: pair_id "multiwoz:<dialogue_id>:<turn_index>",
the utterance in `instruction` for USER turns and in `response` for SYSTEM (and unknown-speaker)
turns, the other text column "", `turn_index` = the rejected turn's own index, `detail` = speaker.
"""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc

from llama_sft_dagster.core.data.accounting import partition
from llama_sft_dagster.core.data.schema import PAIR_SCHEMA, REJECT_SCHEMA

STAGE = "raw_pairs"
# 20,000 chars is ~5K Llama-3 tokens (about 4 chars per token), 8x the 580-token pair cap of the
# token-limit filter; real MultiWOZ utterances are under ~1K chars, so a longer one is a broken
# record, and dropping it here keeps megabyte strings out of every later stage.
MAX_UTTERANCE_CHARS = 20_000
CONTROL_CHARS = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
BITEXT_REASONS = ("repeated_header", "blank_instruction", "blank_response")
MULTIWOZ_REASONS = (
    "unknown_speaker",
    "empty_utterance",
    "utterance_too_long",
    "user_turn_followed_by_user",
    "user_turn_reply_dropped",
    "user_turn_without_reply",
    "system_turn_without_user",
)


def _strip_control(col: pa.ChunkedArray) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """(column without control characters, per-row mask of the rows that had some)."""
    mask = pc.fill_null(pc.match_substring_regex(col, CONTROL_CHARS), False)
    return (pc.replace_substring_regex(col, CONTROL_CHARS, "") if pc.any(mask).as_py() else col), mask


def _repeated_header(bitext: pa.Table) -> pa.ChunkedArray:
    """Rows whose cells are the column names: a header repeated inside the data (two exports
    concatenated). `flags` may read `tags`, the 2023-08 release's name of that column."""
    same = pc.is_in(bitext.column("flags"), pa.array(["flags", "tags"]))
    for name in ("instruction", "category", "intent", "response"):
        same = pc.and_(same, pc.equal(bitext.column(name), name))
    return pc.fill_null(same, False)


def _bitext_pairs(bitext: pa.Table) -> tuple[pa.Table, pa.Table, dict[str, int]]:
    instruction, mask_ins = _strip_control(bitext.column("instruction"))
    response, mask_resp = _strip_control(bitext.column("response"))
    n_stripped = pc.sum(pc.or_(mask_ins, mask_resp)).as_py() or 0
    blank_ins = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(instruction), ""), True)
    blank_resp = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(response), ""), True)
    header = _repeated_header(bitext)
    reasons = pc.if_else(
        header,
        "repeated_header",
        pc.if_else(blank_ins, "blank_instruction", pc.if_else(blank_resp, "blank_response", None)),
    )
    n = bitext.num_rows
    source_file = bitext.column("source_file")
    row_index = bitext.column("row_index")
    pair_id = pc.binary_join_element_wise("bitext", source_file, pc.cast(row_index, pa.string()), ":")
    nulls = pa.nulls(n, pa.string())
    table = pa.Table.from_arrays(
        [
            pair_id,
            pa.array(["bitext"] * n, pa.string()),
            pc.fill_null(instruction, ""),
            pc.fill_null(response, ""),
            bitext.column("intent"),
            bitext.column("category"),
            nulls,
            bitext.column("flags"),
            source_file,
            row_index,
            nulls,
            pa.nulls(n, pa.int64()),
        ],
        schema=PAIR_SCHEMA,
    )
    kept, rejects, counts = partition(table, reasons.to_pylist(), STAGE)
    out = {
        "bitext_rows_in": n,
        "bitext_pairs_out": kept.num_rows,
        "bitext_rows_control_characters_stripped": n_stripped,
    }
    out.update({f"bitext_dropped_{r}": counts.dropped.get(r, 0) for r in BITEXT_REASONS})
    return kept, rejects, out


def _turn_reason(speaker: str, text: str, max_chars: int) -> str | None:
    if speaker not in ("USER", "SYSTEM"):
        return "unknown_speaker"
    if not text.strip():
        return "empty_utterance"
    if len(text) > max_chars:
        return "utterance_too_long"
    return None


def _multiwoz_pairs(turns: pa.Table, max_chars: int) -> tuple[pa.Table, pa.Table, dict[str, int]]:
    utterance, mask = _strip_control(turns.column("utterance"))
    n_stripped = pc.sum(mask).as_py() or 0
    cols = {
        name: turns.column(name).to_pylist()
        for name in ("dialogue_id", "services", "turn_index", "speaker", "source_file", "active_intent", "domain")
    }
    cols["utterance"] = utterance.to_pylist()
    pairs: list[tuple[int, int]] = []
    dropped: list[tuple[int, str]] = []
    pending: int | None = None  # index of a valid USER turn waiting for its reply
    n = turns.num_rows
    for i in range(n):
        if pending is not None and cols["dialogue_id"][pending] != cols["dialogue_id"][i]:
            dropped.append((pending, "user_turn_without_reply"))
            pending = None
        reason = _turn_reason(cols["speaker"][i], cols["utterance"][i], max_chars)
        if reason is not None:
            dropped.append((i, reason))
            if pending is not None:
                dropped.append((pending, "user_turn_reply_dropped"))
                pending = None
        elif cols["speaker"][i] == "USER":
            if pending is not None:
                dropped.append((pending, "user_turn_followed_by_user"))
            pending = i
        elif pending is not None:
            pairs.append((pending, i))
            pending = None
        else:
            dropped.append((i, "system_turn_without_user"))
    if pending is not None:
        dropped.append((pending, "user_turn_without_reply"))

    def pid(i: int) -> str:
        return f"multiwoz:{cols['dialogue_id'][i]}:{cols['turn_index'][i]}"

    pair_rows = {
        "pair_id": [pid(u) for u, _ in pairs],
        "source": ["multiwoz"] * len(pairs),
        "instruction": [cols["utterance"][u] for u, _ in pairs],
        "response": [cols["utterance"][s] for _, s in pairs],
        "intent": [cols["active_intent"][u] for u, _ in pairs],
        "category": [cols["domain"][u] for u, _ in pairs],
        "services": [cols["services"][u] for u, _ in pairs],
        "flags": [None] * len(pairs),
        "source_file": [cols["source_file"][u] for u, _ in pairs],
        "row_index": [None] * len(pairs),
        "dialogue_id": [cols["dialogue_id"][u] for u, _ in pairs],
        "turn_index": [cols["turn_index"][u] for u, _ in pairs],
    }
    dropped.sort()
    is_user = [cols["speaker"][i] == "USER" for i, _ in dropped]
    reject_rows = {
        "pair_id": [pid(i) for i, _ in dropped],
        "source": ["multiwoz"] * len(dropped),
        "instruction": [cols["utterance"][i] if u else "" for (i, _), u in zip(dropped, is_user)],
        "response": [cols["utterance"][i] if not u else "" for (i, _), u in zip(dropped, is_user)],
        "intent": [cols["active_intent"][i] for i, _ in dropped],
        "category": [cols["domain"][i] for i, _ in dropped],
        "services": [cols["services"][i] for i, _ in dropped],
        "flags": [None] * len(dropped),
        "source_file": [cols["source_file"][i] for i, _ in dropped],
        "row_index": [None] * len(dropped),
        "dialogue_id": [cols["dialogue_id"][i] for i, _ in dropped],
        "turn_index": [cols["turn_index"][i] for i, _ in dropped],
        "stage": [STAGE] * len(dropped),
        "reason": [r for _, r in dropped],
        "detail": [f"speaker={cols['speaker'][i]}" for i, _ in dropped],
    }
    reasons = Counter(r for _, r in dropped)
    out = {
        "multiwoz_turns_in": n,
        "multiwoz_pairs_out": len(pairs),
        "multiwoz_turns_control_characters_stripped": n_stripped,
    }
    out.update({f"multiwoz_dropped_turns_{r}": reasons.get(r, 0) for r in MULTIWOZ_REASONS})
    return pa.table(pair_rows, schema=PAIR_SCHEMA), pa.table(reject_rows, schema=REJECT_SCHEMA), out


def extract_pairs(
    bitext: pa.Table, turns: pa.Table, max_utterance_chars: int = MAX_UTTERANCE_CHARS
) -> tuple[pa.Table, pa.Table, dict[str, int]]:
    """(pairs in PAIR_SCHEMA, rejects in REJECT_SCHEMA with stage "raw_pairs", counts).

    `turns` must list each dialogue's turns contiguously, in turn order (as the loaders write them).
    """
    b_pairs, b_rejects, counts = _bitext_pairs(bitext)
    m_pairs, m_rejects, m_counts = _multiwoz_pairs(turns, max_utterance_chars)
    counts.update(m_counts)
    counts["rows_in"] = counts["bitext_rows_in"] + counts["multiwoz_turns_in"]
    counts["rows_out"] = counts["bitext_pairs_out"] + 2 * counts["multiwoz_pairs_out"]
    combined: Counter = Counter()
    for key, value in counts.items():
        for prefix in ("bitext_dropped_", "multiwoz_dropped_turns_"):
            if key.startswith(prefix):
                combined[key[len(prefix) :]] += value
    counts.update({f"dropped_{r}": v for r, v in sorted(combined.items())})
    pairs = pa.concat_tables([b_pairs, m_pairs])
    rejects = pa.concat_tables([b_rejects.cast(REJECT_SCHEMA), m_rejects])
    return pairs, rejects, counts


def pairs_balanced(counts: dict[str, int]) -> bool:
    """True when every input row/turn is accounted for, overall and per source.

    Sums `dropped_<reason>` keys, ignoring an aggregate `dropped_total` if a caller added one.
    """

    def dropped(prefix: str) -> int:
        return sum(v for k, v in counts.items() if k.startswith(prefix) and k != "dropped_total")

    return (
        counts["rows_in"] == counts["rows_out"] + dropped("dropped_")
        and counts["bitext_rows_in"] == counts["bitext_pairs_out"] + dropped("bitext_dropped_")
        and counts["multiwoz_turns_in"] == 2 * counts["multiwoz_pairs_out"] + dropped("multiwoz_dropped_turns_")
        and counts["rows_in"] == counts["bitext_rows_in"] + counts["multiwoz_turns_in"]
        and counts["rows_out"] == counts["bitext_pairs_out"] + 2 * counts["multiwoz_pairs_out"]
    )
