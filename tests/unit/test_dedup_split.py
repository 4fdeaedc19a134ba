"""Pure-logic tests of MinHash-LSH dedup and the content-hash split."""

import random

import pytest

from llama_sft_dagster.core.data.dedup import NearDuplicateIndex, word_shingles
from llama_sft_dagster.core.data.split import is_validation

RNG_WORDS = [f"w{i}" for i in range(5000)]


def text(seed: int, n: int = 60) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(RNG_WORDS) for _ in range(n))


def test_shingles_are_word_5grams_and_short_texts_become_one_shingle():
    assert word_shingles("A b c d e f", 5) == [b"a b c d e", b"b c d e f"]
    assert word_shingles("too short", 5) == [b"too short"]


def test_keeps_first_of_cluster_and_names_it():
    base = text(1, n=200)
    words = base.split()
    near = " ".join(words[:100] + ["CHANGED"] + words[101:])  # one word of 200 edited: Jaccard ~0.95
    rows = [("p0", base, "resp"), ("p1", text(2, n=200), "resp"), ("p2", near, "resp"), ("p3", base, "resp")]
    d = NearDuplicateIndex().add_batch(*zip(*rows))
    assert d.reasons == [None, None, "near_duplicate", "exact_duplicate"]
    assert d.details[2] == "duplicate_of=p0" and d.details[3] == "duplicate_of=p0"


def test_state_carries_across_batches_and_is_deterministic():
    rows = [(f"p{i}", text(i % 7), "resp") for i in range(20)]

    def run(batch_size):
        idx, reasons = NearDuplicateIndex(), []
        for s in range(0, len(rows), batch_size):
            reasons += idx.add_batch(*zip(*rows[s : s + batch_size])).reasons
        return reasons

    assert run(20) == run(3)
    assert run(20).count(None) == 7


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="backend"):
        NearDuplicateIndex(backend="nope")


def test_split_fraction_and_stability_as_data_grows():
    ins = [text(i, 12) for i in range(4000)]
    resp = ["r"] * len(ins)
    first = is_validation(ins[:2000], resp[:2000], 0.05, seed=42)
    grown = is_validation(ins, resp, 0.05, seed=42)
    assert grown[:2000] == first  # adding rows never moves an existing sample
    assert 0.035 < sum(grown) / len(grown) < 0.065
    assert is_validation(ins, resp, 0.05, seed=7) != grown  # the seed matters


def test_split_rejects_bad_fraction():
    with pytest.raises(ValueError, match="validation_fraction"):
        is_validation(["a"], ["b"], 1.5, seed=1)


def test_split_parquet_streams_batches_into_two_files(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from llama_sft_dagster.core.data.schema import PAIR_SCHEMA
    from llama_sft_dagster.core.data.split import split_parquet
    from llama_sft_dagster.core.data.storage import write_parquet

    ins = [text(i, 12) for i in range(500)]
    rows = [
        {
            "pair_id": f"p{i}",
            "source": "bitext" if i % 3 else "multiwoz",
            "instruction": t,
            "response": "r",
            "intent": f"i{i % 4}",
        }
        for i, t in enumerate(ins)
    ]
    src = write_parquet(pa.Table.from_pylist(rows, schema=PAIR_SCHEMA), tmp_path / "in.parquet")
    sides = split_parquet(src, tmp_path / "t.parquet", tmp_path / "v.parquet", 0.2, seed=3, batch_rows=64)
    expected = is_validation(ins, ["r"] * 500, 0.2, seed=3)
    validation_ids = pq.read_table(tmp_path / "v.parquet").column("pair_id").to_pylist()
    assert validation_ids == [f"p{i}" for i, v in enumerate(expected) if v]
    assert (
        sides["train"].rows + sides["validation"].rows
        == 500
        == pq.ParquetFile(tmp_path / "t.parquet").metadata.num_rows + len(validation_ids)
    )
    assert sum(sides["validation"].per_source.values()) == len(validation_ids)
