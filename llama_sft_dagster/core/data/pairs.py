"""Turn every source's raw table into instruction/response pairs (`raw_pairs`), each input row accounted for.

Each source declares a `PairExtractor` (its module in core/sources/, its row in the sources table): what
one raw row is (`unit`: a Bitext row, a dialogue turn), how many units a pair uses, and the function
that makes pairs. Conversation-shaped sources (MultiWOZ, a team's own chats) share `turn_pairs`: each
turn's speaker label is mapped to a role (user / assistant / system) by the source's mapping, and each
user turn followed directly by an assistant turn is a pair (the seed's USER->SYSTEM rule). Every turn
is in exactly one pair or is dropped with one of these reasons, checked in this order per turn:
- `unknown_speaker`: the label is not in the source's speaker mapping (samples in rejects, `detail`);
- `empty_utterance`: nothing but whitespace (after control characters are removed);
- `utterance_too_long`: more than `max_utterance_chars` characters;
- `system_message`: a system-role message of the data; a single-turn pair is templated with the
  configured system prompt instead (sample_format), so the message is counted here, not lost silently;
- `user_turn_followed_by_user`: a user turn whose next turn is another valid user turn (the later
  one may still pair with the reply after it);
- `user_turn_reply_dropped`: a user turn whose next turn was itself dropped by a reason above;
- `user_turn_without_reply`: a user turn that ends the dialogue;
- `system_turn_without_user`: an assistant (MultiWOZ: SYSTEM) turn not preceded by a valid, unpaired user turn.
Control characters (C0/C1 except tab, newline, carriage return) are STRIPPED, not dropped: they are
transport noise, the text around them is usable. Stripped rows/turns are counted.

Counts, per source `<name>` with its unit `<unit>` ("rows" or "turns"), and the identity `pairs_balanced` checks:
    <name>_<unit>_in = <name>_<unit>_per_pair * <name>_pairs_out + sum(<name>_dropped_<reason>)
    rows_in = sum of <name>_<unit>_in;  rows_out = sum of <unit>_per_pair * pairs_out;  dropped_<reason> = sums
Rejected turns map onto REJECT_SCHEMA as: pair_id "<name>:<dialogue_id>:<turn_index>", the utterance in
`instruction` for user turns and in `response` otherwise, `turn_index` = the rejected turn's own index,
`detail` = "speaker=<label as written>".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from llama_sft_dagster.core.data.schema import PAIR_SCHEMA, REJECT_SCHEMA

STAGE = "raw_pairs"
# 20,000 chars is ~5K Llama-3 tokens (about 4 chars per token), 8x the 580-token pair cap of the
# token-limit filter; real MultiWOZ utterances are under ~1K chars, so a longer one is a broken
# record, and dropping it here keeps megabyte strings out of every later stage.
MAX_UTTERANCE_CHARS = 20_000
CONTROL_CHARS = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
ROLES = ("user", "assistant", "system")
TURN_REASONS = (
    "unknown_speaker",
    "empty_utterance",
    "utterance_too_long",
    "system_message",
    "user_turn_followed_by_user",
    "user_turn_reply_dropped",
    "user_turn_without_reply",
    "system_turn_without_user",
)
# (source name, raw table, max utterance chars) -> (pairs, rejects, counts: {"in", "pairs_out",
# "control_characters_stripped", "dropped_<reason>"})
Extract = Callable[[str, pa.Table, int], tuple[pa.Table, pa.Table, dict[str, int]]]


@dataclass(frozen=True)
class PairExtractor:
    unit: str  # what one raw row is, in the counts: "rows" or "turns"
    units_per_pair: int  # a Bitext row is a pair; a dialogue pair uses two turns
    extract: Extract


def strip_control(col: pa.ChunkedArray) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """(column without control characters, per-row mask of the rows that had some)."""
    mask = pc.fill_null(pc.match_substring_regex(col, CONTROL_CHARS), False)
    return (pc.replace_substring_regex(col, CONTROL_CHARS, "") if pc.any(mask).as_py() else col), mask


def role_mapper(mapping: dict[str, str]) -> Callable[[str], str | None]:
    """label -> role, whatever the label's case (mapping keys are matched case-insensitively)."""
    folded = {str(k).casefold(): v for k, v in mapping.items()}
    return lambda label: folded.get(str(label).strip().casefold())


def _turn_reason(role: str | None, text: str, max_chars: int) -> str | None:
    if role is None:
        return "unknown_speaker"
    if not text.strip():
        return "empty_utterance"
    if len(text) > max_chars:
        return "utterance_too_long"
    if role == "system":
        return "system_message"
    return None


def _pair_turns(dialogue_ids: list, roles: list, texts: list, max_chars: int):
    """(pairs as (user index, reply index), drops as (index, reason)) over turns in dialogue order."""
    pairs: list[tuple[int, int]] = []
    dropped: list[tuple[int, str]] = []
    pending: int | None = None  # index of a valid user turn waiting for its reply
    for i in range(len(roles)):
        if pending is not None and dialogue_ids[pending] != dialogue_ids[i]:
            dropped.append((pending, "user_turn_without_reply"))
            pending = None
        reason = _turn_reason(roles[i], texts[i], max_chars)
        if reason == "system_message":
            dropped.append((i, reason))  # context, not a reply: the user turn still waits for its answer
        elif reason is not None:
            dropped.append((i, reason))
            if pending is not None:
                dropped.append((pending, "user_turn_reply_dropped"))
                pending = None
        elif roles[i] == "user":
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
    return pairs, sorted(dropped)


def _contexts(pairs: list[tuple[int, int]], dialogue_ids: list, roles: list, texts: list, max_chars: int):
    """(context JSON, turn depth) of each pair: every usable earlier turn of its dialogue (a known role, some text,
    within `max_chars`: system messages and replies included), and how many assistant turns came before."""
    import json

    usable = [r is not None and t.strip() != "" and len(t) <= max_chars for r, t in zip(roles, texts)]
    contexts, depths = [], []
    start = 0
    for user, _ in pairs:
        while dialogue_ids[start] != dialogue_ids[user]:
            start += 1
        earlier = [i for i in range(start, user) if usable[i]]
        contexts.append(json.dumps([{"role": roles[i], "content": texts[i]} for i in earlier]) if earlier else None)
        depths.append(sum(roles[i] == "assistant" for i in earlier))
    return contexts, depths


def turn_pairs(
    name: str, turns: pa.Table, role_of: Callable[[str], str | None], max_chars: int
) -> tuple[pa.Table, pa.Table, dict[str, int]]:
    """Pairs of a TURN_SCHEMA table; `turns` lists each dialogue's turns contiguously, in turn order."""
    utterance, mask = strip_control(turns.column("utterance"))
    cols = {
        c: turns.column(c).to_pylist()
        for c in ("dialogue_id", "services", "turn_index", "speaker", "source_file", "active_intent", "domain")
    }
    cols["utterance"] = utterance.to_pylist()
    roles = [role_of(s) for s in cols["speaker"]]
    pairs, dropped = _pair_turns(cols["dialogue_id"], roles, cols["utterance"], max_chars)
    context, depth = _contexts(pairs, cols["dialogue_id"], roles, cols["utterance"], max_chars)

    def rows(indices: list[int]) -> dict[str, list]:
        return {
            "pair_id": [f"{name}:{cols['dialogue_id'][i]}:{cols['turn_index'][i]}" for i in indices],
            "source": [name] * len(indices),
            "intent": [cols["active_intent"][i] for i in indices],
            "category": [cols["domain"][i] for i in indices],
            "services": [cols["services"][i] for i in indices],
            "flags": [None] * len(indices),
            "source_file": [cols["source_file"][i] for i in indices],
            "row_index": [None] * len(indices),
            "dialogue_id": [cols["dialogue_id"][i] for i in indices],
            "turn_index": [cols["turn_index"][i] for i in indices],
        }

    users = [u for u, _ in pairs]
    pair_rows = {
        **rows(users),
        "instruction": [cols["utterance"][u] for u, _ in pairs],
        "response": [cols["utterance"][s] for _, s in pairs],
        "context": context,
        "turn_depth": depth,
    }
    at = [i for i, _ in dropped]
    is_user = [roles[i] == "user" for i in at]
    reject_rows = {
        **rows(at),
        "instruction": [cols["utterance"][i] if u else "" for i, u in zip(at, is_user)],
        "response": [cols["utterance"][i] if not u else "" for i, u in zip(at, is_user)],
        "stage": [STAGE] * len(at),
        "context": [None] * len(at),
        "turn_depth": [None] * len(at),
        "reason": [r for _, r in dropped],
        "detail": [f"speaker={cols['speaker'][i]}" for i in at],
    }
    reasons = Counter(r for _, r in dropped)
    counts = {
        "in": turns.num_rows,
        "pairs_out": len(pairs),
        "control_characters_stripped": pc.sum(mask).as_py() or 0,
        **{f"dropped_{r}": reasons.get(r, 0) for r in TURN_REASONS},
    }
    return pa.table(pair_rows, schema=PAIR_SCHEMA), pa.table(reject_rows, schema=REJECT_SCHEMA), counts


def extract_pairs(
    sources: Sequence[tuple[str, PairExtractor, pa.Table]], max_utterance_chars: int = MAX_UTTERANCE_CHARS
) -> tuple[pa.Table, pa.Table, dict[str, int]]:
    """(pairs in PAIR_SCHEMA, rejects in REJECT_SCHEMA with stage "raw_pairs", counts) of every
    (source name, its extractor, its raw table), in the order given."""
    all_pairs, all_rejects, counts = [], [], {"rows_in": 0, "rows_out": 0}
    combined: Counter = Counter()
    for name, extractor, table in sources:
        pairs, rejects, own = extractor.extract(name, table, max_utterance_chars)
        unit, per_pair = extractor.unit, extractor.units_per_pair
        counts[f"{name}_{unit}_in"] = own["in"]
        counts[f"{name}_pairs_out"] = own["pairs_out"]
        counts[f"{name}_{unit}_per_pair"] = per_pair
        counts[f"{name}_{unit}_control_characters_stripped"] = own["control_characters_stripped"]
        for key, value in own.items():
            if key.startswith("dropped_"):
                counts[f"{name}_{key}"] = value
                combined[key[len("dropped_") :]] += value
        counts["rows_in"] += own["in"]
        counts["rows_out"] += per_pair * own["pairs_out"]
        all_pairs.append(pairs)
        all_rejects.append(rejects.cast(REJECT_SCHEMA))
    counts.update({f"dropped_{r}": v for r, v in sorted(combined.items())})
    pairs = pa.concat_tables(all_pairs) if all_pairs else PAIR_SCHEMA.empty_table()
    rejects = pa.concat_tables(all_rejects) if all_rejects else REJECT_SCHEMA.empty_table()
    return pairs, rejects, counts


def source_units(counts: dict[str, int]) -> dict[str, tuple[str, int]]:
    """{source name: (unit, units per pair)} read back from the counts of `extract_pairs`."""
    out = {}
    for key, value in counts.items():
        for unit in ("rows", "turns"):
            if key.endswith(f"_{unit}_per_pair"):
                out[key[: -len(f"_{unit}_per_pair")]] = (unit, value)
    return out


def pairs_balanced(counts: dict[str, int]) -> bool:
    """True when every input row/turn is accounted for, overall and per source.

    Sums `dropped_<reason>` keys, ignoring an aggregate `dropped_total` if a caller added one.
    """

    def dropped(prefix: str) -> int:
        return sum(v for k, v in counts.items() if k.startswith(prefix) and k != "dropped_total")

    units = source_units(counts)
    per_source = all(
        counts[f"{name}_{unit}_in"] == per_pair * counts[f"{name}_pairs_out"] + dropped(f"{name}_dropped_")
        for name, (unit, per_pair) in units.items()
    )
    rows_in = sum(counts[f"{name}_{unit}_in"] for name, (unit, _) in units.items())
    rows_out = sum(per_pair * counts[f"{name}_pairs_out"] for name, (_, per_pair) in units.items())
    return (
        per_source
        and counts["rows_in"] == counts["rows_out"] + dropped("dropped_")
        and counts["rows_in"] == rows_in
        and counts["rows_out"] == rows_out
    )
