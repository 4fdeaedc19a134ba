"""raw_pairs logic: Bitext rows and MultiWOZ USER->SYSTEM pairs, every dropped row/turn with a reason."""

import pyarrow as pa
import pytest

from llama_sft_dagster.core.data.pairs import pairs_balanced
from llama_sft_dagster.core.data.schema import PAIR_SCHEMA, REJECT_SCHEMA
from llama_sft_dagster.core.sources.bitext import RAW_BITEXT_SCHEMA, load_bitext_file
from llama_sft_dagster.core.sources.multiwoz import TURN_SCHEMA, load_multiwoz_folder
from support.pairs import seed_pairs
from support.paths import shared_file


def bitext_table(rows: list[tuple[str | None, str | None]]) -> pa.Table:
    n = len(rows)
    return pa.table(
        {
            "flags": ["B"] * n,
            "instruction": [r[0] for r in rows],
            "category": ["ORDER"] * n,
            "intent": ["cancel_order"] * n,
            "response": [r[1] for r in rows],
            "source_file": ["b.csv"] * n,
            "row_index": list(range(n)),
        },
        schema=RAW_BITEXT_SCHEMA,
    )


def turns_table(dialogues: dict[str, list[tuple[str, str]]]) -> pa.Table:
    cols = {name: [] for name in TURN_SCHEMA.names}
    for did, turns in dialogues.items():
        for i, (speaker, text) in enumerate(turns):
            for name, value in (
                ("dialogue_id", did),
                ("split", "train"),
                ("source_file", "train/d.json"),
                ("services", "hotel"),
                ("turn_index", i),
                ("turn_id", str(i)),
                ("speaker", speaker),
                ("utterance", text),
                ("active_intent", "find_hotel" if speaker == "USER" else None),
                ("domain", "hotel" if speaker == "USER" else None),
            ):
                cols[name].append(value)
    return pa.table(cols, schema=TURN_SCHEMA)


NO_BITEXT = bitext_table([])
U, S = "USER", "SYSTEM"


@pytest.mark.parametrize(
    "turns, pairs, drops",
    [
        ([(U, "u0"), (S, "s1")], [(0, "u0", "s1")], []),
        ([(U, "u0"), (S, "s1"), (U, "u2")], [(0, "u0", "s1")], [(2, "user_turn_without_reply")]),
        ([(U, "u0"), (U, "u1"), (S, "s2")], [(1, "u1", "s2")], [(0, "user_turn_followed_by_user")]),
        ([(S, "s0"), (U, "u1"), (S, "s2")], [(1, "u1", "s2")], [(0, "system_turn_without_user")]),
        ([(U, "u0"), (S, "s1"), (S, "s2")], [(0, "u0", "s1")], [(2, "system_turn_without_user")]),
        ([(U, "u0"), (S, "  \n")], [], [(0, "user_turn_reply_dropped"), (1, "empty_utterance")]),
        ([(U, ""), (S, "s1")], [], [(0, "empty_utterance"), (1, "system_turn_without_user")]),
        (
            [(U, "u0"), ("AGENT", "a1"), (U, "u2"), (S, "s3")],
            [(2, "u2", "s3")],
            [(0, "user_turn_reply_dropped"), (1, "unknown_speaker")],
        ),
        ([(U, "x" * 31), (S, "s1")], [], [(0, "utterance_too_long"), (1, "system_turn_without_user")]),
        ([(U, "u\x00 0\x1b"), (S, "s\x7f1")], [(0, "u 0", "s1")], []),  # control characters stripped, not dropped
    ],
)
def test_multiwoz_turn_pairing_and_drop_reasons(turns, pairs, drops):
    got_pairs, rejects, counts = seed_pairs(NO_BITEXT, turns_table({"D1": turns}), max_utterance_chars=30)
    assert [(r["turn_index"], r["instruction"], r["response"]) for r in got_pairs.to_pylist()] == pairs
    assert [(r["turn_index"], r["reason"]) for r in rejects.to_pylist()] == drops
    assert counts["multiwoz_pairs_out"] == len(pairs)
    assert pairs_balanced(counts)
    for _, reason in drops:
        assert counts[f"multiwoz_dropped_{reason}"] >= 1 and counts[f"dropped_{reason}"] >= 1


def test_pair_does_not_cross_dialogues():
    pairs, rejects, counts = seed_pairs(
        NO_BITEXT, turns_table({"A": [(U, "a0")], "B": [(S, "b0"), (U, "b1"), (S, "b2")]})
    )
    assert [r["pair_id"] for r in pairs.to_pylist()] == ["multiwoz:B:1"]
    assert [(r["pair_id"], r["reason"]) for r in rejects.to_pylist()] == [
        ("multiwoz:A:0", "user_turn_without_reply"),
        ("multiwoz:B:0", "system_turn_without_user"),
    ]
    assert pairs_balanced(counts) and counts["rows_in"] == 4 and counts["rows_out"] == 2


def test_pair_fields_and_reject_mapping():
    pairs, rejects, _ = seed_pairs(NO_BITEXT, turns_table({"D": [(U, "u0"), (S, "s1"), (S, "s2")]}))
    row = pairs.to_pylist()[0]
    assert row == {
        "pair_id": "multiwoz:D:0",
        "source": "multiwoz",
        "instruction": "u0",
        "response": "s1",
        "intent": "find_hotel",
        "category": "hotel",
        "services": "hotel",
        "flags": None,
        "source_file": "train/d.json",
        "row_index": None,
        "dialogue_id": "D",
        "turn_index": 0,
        "context": None,
        "turn_depth": 0,
    }
    rej = rejects.to_pylist()[0]
    assert (rej["instruction"], rej["response"], rej["stage"], rej["detail"]) == (
        "",
        "s2",
        "raw_pairs",
        "speaker=SYSTEM",
    )


@pytest.mark.parametrize(
    "instruction, response, reason",
    [
        ("cancel it", "done", None),
        (None, "r", "blank_instruction"),
        ("  \t", "r", "blank_instruction"),
        ("i", None, "blank_response"),
        ("i", "", "blank_response"),
        ("", "", "blank_instruction"),
    ],
)
def test_bitext_blank_cells_dropped_with_reason(instruction, response, reason):
    pairs, rejects, counts = seed_pairs(bitext_table([(instruction, response)]), turns_table({}))
    assert pairs_balanced(counts)
    if reason is None:
        assert pairs.to_pylist()[0]["pair_id"] == "bitext:b.csv:0" and rejects.num_rows == 0
    else:
        assert pairs.num_rows == 0 and rejects.column("reason").to_pylist() == [reason]
        assert counts[f"bitext_dropped_{reason}"] == 1 and counts[f"dropped_{reason}"] == 1


def test_schemas_counts_and_balance_check():
    bt = bitext_table([("a b", "c\x01 d"), ("x", None)])
    pairs, rejects, counts = seed_pairs(bt, turns_table({"D": [(U, "u"), (S, "s"), (U, "v")]}))
    assert pairs.schema.equals(PAIR_SCHEMA) and rejects.schema.equals(REJECT_SCHEMA)
    assert pairs.column("response").to_pylist() == ["c d", "s"]
    assert (
        counts["rows_in"],
        counts["rows_out"],
        counts["dropped_blank_response"],
        counts["dropped_user_turn_without_reply"],
    ) == (5, 3, 1, 1)
    assert counts["bitext_rows_control_characters_stripped"] == 1
    assert pairs_balanced(counts)
    assert not pairs_balanced({**counts, "rows_out": counts["rows_out"] + 1})
    assert not pairs_balanced({**counts, "multiwoz_dropped_unknown_speaker": 1, "dropped_unknown_speaker": 1})
    assert pairs_balanced({**counts, "dropped_total": 99})  # an aggregate key is not a reason


def test_real_samples_give_the_documented_pair_counts():
    bt = load_bitext_file(
        shared_file("bitext/Bitext_Sample_Customer_Support_Training_Dataset_27K_responses-v11.head5000.csv")
    )
    studio = load_multiwoz_folder(shared_file("multiwoz_2.2/samples/dialogstudio_original_examples.json"))
    pairs, rejects, counts = seed_pairs(bt, studio)
    assert (counts["bitext_pairs_out"], counts["multiwoz_pairs_out"], rejects.num_rows) == (5000, 23, 0)
    assert pairs_balanced(counts)
    _, _, dummy = seed_pairs(NO_BITEXT, load_multiwoz_folder(shared_file("multiwoz_2.2/hf_dummy_fixtures")))
    assert (dummy["multiwoz_turns_in"], dummy["multiwoz_pairs_out"]) == (42, 21)


def test_dialogue_pairs_keep_their_earlier_turns_as_context():
    """Every usable earlier turn (dropped ones aside) travels with a pair, for sft_dataset's multi-turn samples."""
    import json

    dialogue = [(U, "u0"), (S, "s1"), (U, "  "), (U, "u3"), (S, "s4"), (U, "u5"), (S, "s6")]
    pairs, _, counts = seed_pairs(NO_BITEXT, turns_table({"D": dialogue}))
    assert pairs_balanced(counts)
    rows = pairs.to_pylist()
    assert [r["turn_depth"] for r in rows] == [0, 1, 2] and rows[0]["context"] is None
    assert json.loads(rows[2]["context"]) == [
        {"role": "user", "content": "u0"},
        {"role": "assistant", "content": "s1"},
        {"role": "user", "content": "u3"},
        {"role": "assistant", "content": "s4"},
    ]
