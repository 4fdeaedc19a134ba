"""Demo corpus: deterministic, fast, realistic shape, and every planted case is dropped by its filter."""

import io
from collections import Counter

import pyarrow as pa
import pytest

from llama_sft_dagster.core.data import filters
from llama_sft_dagster.core.data.dedup import NearDuplicateIndex
from llama_sft_dagster.core.data.pairs import pairs_balanced
from llama_sft_dagster.core.demo import corpus as dc
from llama_sft_dagster.core.sources.bitext import RAW_BITEXT_SCHEMA
from llama_sft_dagster.core.sources.multiwoz import TURN_SCHEMA, load_multiwoz_folder
from support.pairs import seed_pairs


def ipc_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


@pytest.fixture(scope="module")
def corpus():
    bitext, turns = dc.generate_bitext_rows(), dc.generate_multiwoz_turns()
    pairs, rejects, counts = seed_pairs(bitext, turns)
    kinds = dc.bitext_row_kinds()
    pair_kinds = [kinds[r["row_index"]] if r["source"] == "bitext" else "normal" for r in pairs.to_pylist()]
    return {"bitext": bitext, "turns": turns, "pairs": pairs, "rejects": rejects, "counts": counts, "kinds": pair_kinds}


def test_same_seed_gives_byte_identical_tables_and_another_seed_differs(corpus):
    assert ipc_bytes(dc.generate_bitext_rows(seed=13)) == ipc_bytes(corpus["bitext"])
    assert ipc_bytes(dc.generate_multiwoz_turns(seed=13)) == ipc_bytes(corpus["turns"])
    assert ipc_bytes(dc.generate_bitext_rows(seed=14)) != ipc_bytes(corpus["bitext"])
    assert ipc_bytes(dc.generate_multiwoz_turns(seed=14)) != ipc_bytes(corpus["turns"])


def test_shape_and_size(corpus):
    bitext, turns = corpus["bitext"], corpus["turns"]
    assert bitext.schema.equals(RAW_BITEXT_SCHEMA) and turns.schema.equals(TURN_SCHEMA)
    assert len(set(bitext.column("intent").to_pylist())) == 27
    assert len(set(bitext.column("category").to_pylist())) == 11
    assert any("{{Order Number}}" in r for r in bitext.column("response").to_pylist())
    assert 4000 <= corpus["pairs"].num_rows <= 6000
    assert pairs_balanced(corpus["counts"])


def test_multiwoz_planted_structure_is_dropped_by_pair_extraction(corpus):
    planted, counts = dc.planted_counts(), corpus["counts"]
    assert counts["multiwoz_dropped_user_turn_without_reply"] == planted["trailing_user"]
    assert counts["multiwoz_dropped_user_turn_followed_by_user"] == planted["double_user"]
    assert counts["bitext_dropped_blank_response"] == planted["blank"]


def test_published_layout_round_trip(tmp_path, corpus):
    dc.write_published_layout(dc.generate_multiwoz_dialogues(), tmp_path, per_file=120)
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == [
        "dialogues_001.json",
        "dialogues_002.json",
        "dialogues_003.json",
    ]
    loaded = load_multiwoz_folder(tmp_path)
    same = ["dialogue_id", "turn_index", "speaker", "utterance", "active_intent", "domain", "services"]
    assert loaded.select(same).equals(corpus["turns"].select(same))


def _dropped_by_kind(kinds, reasons) -> Counter:
    return Counter(k for k, r in zip(kinds, reasons) if r is not None)


def test_each_planted_kind_is_dropped_by_its_filter_and_normal_rows_survive(corpus):
    rows = corpus["pairs"].to_pylist()
    ins, resp, kinds = [r["instruction"] for r in rows], [r["response"] for r in rows], corpus["kinds"]
    planted, total = dc.planted_counts(), Counter(kinds)
    n_normal = total["normal"]

    words = _dropped_by_kind(kinds, filters.word_count_decisions(ins, resp, 4, 5).reasons)
    assert words == Counter(short=planted["short"])

    # Token limit: a byte-level BPE trained on this corpus (as the demo base model's tokenizer is)
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(ins + resp, trainers.BpeTrainer(vocab_size=4000, show_progress=False))
    lengths = [len(e.ids) for e in tok.encode_batch([f"{i} {r}" for i, r in zip(ins, resp)])]
    assert Counter(k for k, n in zip(kinds, lengths) if n > 580) == Counter(overlong=planted["overlong"])

    lang = filters.language_decisions(ins, resp, ("ENGLISH", "FRENCH", "CHINESE"))
    assert Counter((k, r) for k, r in zip(kinds, lang.reasons) if r) == Counter(
        {("french", "language_french"): planted["french"], ("chinese", "language_chinese"): planted["chinese"]}
    )

    parrot = _dropped_by_kind(kinds, filters.parroting_decisions(ins, resp, 0.85).reasons)
    assert parrot == Counter(parroting=planted["parroting"])

    # Dedup sees what the earlier filters keep: normal rows plus the planted copies.
    keep = [i for i, k in enumerate(kinds) if k in ("normal", "near_duplicate", "exact_duplicate")]
    dedup = NearDuplicateIndex(threshold=0.8, num_perm=128).add_batch(
        [rows[i]["pair_id"] for i in keep], [ins[i] for i in keep], [resp[i] for i in keep]
    )
    by_kind = Counter((kinds[i], r) for i, r in zip(keep, dedup.reasons) if r)
    assert by_kind[("exact_duplicate", "exact_duplicate")] == planted["exact_duplicate"]
    assert by_kind[("near_duplicate", "near_duplicate")] >= 0.9 * planted["near_duplicate"]
    normal_dropped = by_kind[("normal", "near_duplicate")] + by_kind[("normal", "exact_duplicate")]
    assert normal_dropped < 0.03 * n_normal


def test_planted_counts_scale_and_refuse_too_small_corpora():
    assert dc.planted_counts(n_rows=1000, n_dialogues=100)["short"] == 30
    assert Counter(dc.bitext_row_kinds(n_rows=1000))["near_duplicate"] == 30
    with pytest.raises(ValueError, match="too few"):
        dc.generate_bitext_rows(n_rows=5)


def test_replies_only_name_what_the_request_names(corpus):
    """A reply may mention a product, city, order, account or invoice only when its request does."""
    from llama_sft_dagster.core.demo import text as T

    products = [f"{a} {p}" for a in T.ADJECTIVES for p in T.PRODUCTS]
    bitext = corpus["bitext"].to_pylist()
    kinds = dc.bitext_row_kinds()
    checked = 0
    for row, kind in zip(bitext, kinds):
        if kind not in ("normal", "exact_duplicate", "near_duplicate"):
            continue
        for name in [*products, *T.CITIES]:
            assert name not in row["response"] or name in row["instruction"], (
                name,
                row["instruction"],
                row["response"],
            )
        checked += 1
    assert checked > 3000


def test_copies_keep_their_originals_intent(corpus):
    bitext = corpus["bitext"].to_pylist()
    kinds = dc.bitext_row_kinds()
    intent_of = {(r["instruction"], r["response"]): r["intent"] for r, k in zip(bitext, kinds) if k == "normal"}
    copies = [r for r, k in zip(bitext, kinds) if k == "exact_duplicate"]
    assert copies and all(intent_of[(r["instruction"], r["response"])] == r["intent"] for r in copies)
