"""The fast paths of the filters and dedup decide exactly as the seed's one-row-at-a-time code.

Each test compares a batch function with the seed's per-row formulation on inputs chosen to sit on
the edges (the Jaccard boundary, texts around the token limit, unicode, repeated texts).
"""

import random

import pytest

from llama_sft_dagster.core.data import filters
from llama_sft_dagster.core.data.dedup import NearDuplicateIndex, shingle_strings, word_shingles
from support.paths import shared_file

WORDS = [
    "order",
    "Order",
    "refund",
    "the",
    "a",
    "é",
    "café",
    "naïve",
    "送货",
    "🙂",
    "x" * 30,
    "#1234567",
    "tab\tsep",
    "l'adresse",
]


def random_text(rng: random.Random, n: int) -> str:
    return rng.choice([" ", "\n", "  "]).join(rng.choice(WORDS) for _ in range(n))


def test_jaccard_is_bit_identical_to_nltk():
    from nltk.metrics import jaccard_distance

    rng = random.Random(0)
    cases = [("a b c d e f", "a b c d e f g"), ("a b c d e", "a b c d e f")]
    cases += [(random_text(rng, rng.randint(1, 12)), random_text(rng, rng.randint(1, 12))) for _ in range(2000)]
    for ins, resp in cases:
        expected = 1 - jaccard_distance(set(ins.lower().split()), set(resp.lower().split()))
        assert filters.word_jaccard_similarity(ins, resp) == expected, (ins, resp)


@pytest.fixture(scope="module", params=[False, True], ids=["no_prefix_space", "prefix_space"])
def byte_level_tokenizer(request):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(1)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=request.param)
    tok.train_from_iterator(
        [random_text(rng, 30) for _ in range(500)],
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=["<s>"],
            show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>")


def test_token_limit_shortcut_matches_per_row_tokenizer_calls(byte_level_tokenizer):
    tok = byte_level_tokenizer
    assert filters._is_byte_level_bpe(filters._fast_backend(tok))  # the shortcut is really exercised
    rng = random.Random(2)
    ins = [random_text(rng, rng.randint(1, 8)) for _ in range(600)]
    resp = [random_text(rng, rng.randint(1, 40)) for _ in range(600)]
    max_tokens = 60  # many texts sit just below and just above it
    seed_counts = [len(tok(i + " " + r).input_ids) for i, r in zip(ins, resp)]
    expected = [None if n <= max_tokens else "too_many_tokens" for n in seed_counts]
    got = filters.token_limit_decisions(ins, resp, tok, max_tokens)
    assert got.reasons == expected
    assert 50 < expected.count(None) < 550  # both outcomes occur
    assert [d for d in got.details if d] == [f"tokens={n}" for n in seed_counts if n > max_tokens]


def test_token_counts_fast_backend_equals_tokenizer_call(byte_level_tokenizer):
    texts = [random_text(random.Random(i), 20) for i in range(50)]
    assert filters.token_counts(byte_level_tokenizer, texts) == [len(x) for x in byte_level_tokenizer(texts).input_ids]


def test_language_batch_with_repeats_matches_per_row_detection():
    from lingua import Language

    ins = ["Where is my parcel, it was due yesterday", "Où est mon colis, il devait arriver hier", "12345 678"] * 3
    resp = ["Let me check the tracking\nfor you now", "Je vais vérifier le suivi pour vous", "0000 1111"] * 3
    detector = filters.language_detector(("ENGLISH", "FRENCH", "CHINESE"))
    expected = []
    for i, r in zip(ins, resp):
        lang = detector.detect_language_of((i + " " + r).replace("\n", " "))
        expected.append(None if lang == Language.ENGLISH else f"language_{lang.name.lower() if lang else 'unknown'}")
    assert filters.language_decisions(ins, resp, ("ENGLISH", "FRENCH", "CHINESE")).reasons == expected


def test_shingles_match_the_slicing_definition():
    rng = random.Random(3)
    for _ in range(300):
        text = random_text(rng, rng.randint(0, 15))
        words = text.lower().split()
        ref = [" ".join(words)] if len(words) < 5 else [" ".join(words[i : i + 5]) for i in range(len(words) - 4)]
        assert shingle_strings(text, 5) == ref
        assert word_shingles(text, 5) == [s.encode() for s in ref]


def _doc(seed: int, n: int = 150) -> str:
    rng = random.Random(seed)
    return " ".join(f"w{rng.randrange(20000)}" for _ in range(n))


def test_rensa_backend_keeps_first_of_cluster_like_datasketch():
    base = [_doc(i) for i in range(30)]
    rows = []
    for i, text in enumerate(base):
        rows.append((f"p{i:03d}a", text, "resp"))
        if i % 3 == 0:  # a one-word edit of 150 words: Jaccard ~0.94, far above the 0.8 threshold
            words = text.split()
            words[75] = "EDITED"
            rows.append((f"p{i:03d}b", " ".join(words), "resp"))
        if i % 5 == 0:
            rows.append((f"p{i:03d}c", text, "resp"))
    ids, ins, resp = zip(*rows)
    ref = NearDuplicateIndex(backend="datasketch").add_batch(ids, ins, resp)
    fast = NearDuplicateIndex(backend="rensa").add_batch(ids, ins, resp)
    assert fast.reasons == ref.reasons
    assert fast.reasons.count(None) == 30
    assert fast.details == ref.details  # duplicates name the kept row they repeat


def test_rensa_backend_is_deterministic_across_batch_sizes():
    rows = [(f"p{i:02d}", _doc(i % 9), "resp") for i in range(40)]

    def run(size):
        idx, reasons = NearDuplicateIndex(backend="rensa"), []
        for s in range(0, len(rows), size):
            reasons += idx.add_batch(*zip(*rows[s : s + size])).reasons
        return reasons

    assert run(40) == run(7) == run(1)
    assert run(40).count(None) == 9
    assert NearDuplicateIndex(backend="rensa").add_batch([], [], []).reasons == []


# --- exact datasketch path (core/data/minhash.py) ---------------------------------------------


@pytest.mark.parametrize("scheme", ["affine32", "legacy"])
def test_batch_sketcher_values_equal_datasketch_minhash(scheme, monkeypatch):
    from datasketch import MinHash

    from llama_sft_dagster.core.data import minhash

    monkeypatch.setattr(minhash, "CHUNK_SHINGLES", 64)  # many chunks, cut between rows, on two threads
    rng = random.Random(4)
    texts = [random_text(rng, rng.randint(0, 40)) for _ in range(300)] + ["", "same words", "same words"]
    sets = [word_shingles(t, 5) for t in texts]
    got = minhash.BatchSketcher(128, 1, 117, threads=2, scheme=scheme).sketch(sets)
    ref = [m.hashvalues[:117] for m in MinHash.bulk(sets, num_perm=128, seed=1, scheme=scheme)]
    assert got.dtype == ref[0].dtype and got.shape == (len(texts), 117)
    assert all((g == r).all() for g, r in zip(got, ref))


def _seed_dedup(rows, threshold=0.8, num_perm=128):
    """The seed's loop: one MinHash per row, MinHashLSH.query, then insert when nothing was found
    (exact repeats reported first, as NearDuplicateIndex reports them)."""
    from datasketch import MinHash, MinHashLSH

    from llama_sft_dagster.core.data.dedup import exact_key

    lsh, exact, reasons, details = MinHashLSH(threshold=threshold, num_perm=num_perm), {}, [], []
    for pid, ins, resp in rows:
        m = MinHash(num_perm=num_perm, seed=1)
        for s in word_shingles(f"{ins} {resp}", 5):
            m.update(s)
        key = exact_key(ins, resp)
        hits = [] if key in exact else lsh.query(m)
        if key in exact or hits:
            reasons.append("exact_duplicate" if key in exact else "near_duplicate")
            details.append(f"duplicate_of={exact[key] if key in exact else min(hits)}")
            continue
        lsh.insert(pid, m)
        exact[key] = pid
        reasons.append(None)
        details.append(None)
    return reasons, details


def test_datasketch_backend_decides_as_the_seeds_per_row_minhash_lsh():
    rng = random.Random(5)
    rows = []
    for i in range(120):
        text = _doc(1000 + i, rng.randint(20, 60))
        rows.append((f"r{i:03d}", text, "resp"))
        words = text.split()
        for k in range(rng.randint(0, 3)):  # 1-8 edited words: Jaccard from ~0.95 down past 0.8
            edited = list(words)
            for j in rng.sample(range(len(words)), rng.randint(1, 8)):
                edited[j] = f"e{k}{j}"
            rows.append((f"r{i:03d}e{k}", " ".join(edited), "resp"))
        if i % 7 == 0:
            rows.append((f"r{i:03d}x", text, "resp"))
    rng.shuffle(rows)
    idx, got_r, got_d = NearDuplicateIndex(backend="datasketch"), [], []
    for s in range(0, len(rows), 50):  # several batches: the index carries across them
        d = idx.add_batch(*zip(*rows[s : s + 50]))
        got_r += d.reasons
        got_d += d.details
    ref_r, ref_d = _seed_dedup(rows)
    assert got_r == ref_r and got_d == ref_d
    assert ref_r.count("near_duplicate") > 10 and ref_r.count("exact_duplicate") > 5 and ref_r.count(None) > 100


def test_byte_shingles_equal_word_shingles():
    from llama_sft_dagster.core.data.dedup import byte_shingles

    rng = random.Random(6)
    extra = ["\x1c", "\x1f", "\xa0", "\u3000", "\u212a", "K", "\x0b", "\x0c", "\r\n"]
    for _ in range(500):
        text = "".join(rng.choice(WORDS + extra + [" "]) for _ in range(rng.randint(0, 30)))
        assert byte_shingles(text, 5) == word_shingles(text, 5), repr(text)


# --- token filter with the real tokenizer -----------------------------------------------------


def _texts_around(limit_bytes: int, n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    ins, resp = [], []
    for _ in range(n):
        ins.append(random_text(rng, rng.randint(1, 10)))
        words = []
        while len(" ".join(words).encode()) < rng.randint(limit_bytes // 2, 2 * limit_bytes):
            words.append(rng.choice(WORDS + ["refund", "delivery", "1234", "Zürich", "!!"]))
        resp.append(" ".join(words))
    return ins, resp


@pytest.mark.parametrize("which", ["llama31", "demo"])
def test_counting_tokenizer_gives_the_seeds_token_decisions(which, tmp_path):
    from transformers import AutoTokenizer

    from llama_sft_dagster.core.training.base_model import train_demo_tokenizer

    if which == "llama31":
        folder = shared_file("llama31_tokenizer")
    else:
        folder = tmp_path / "demo"
        texts = [random_text(random.Random(i), 40) for i in range(300)]
        train_demo_tokenizer(texts, vocab_size=600).save_pretrained(folder)
    counting, seed_tok = filters.counting_tokenizer(folder), AutoTokenizer.from_pretrained(folder)
    assert not hasattr(counting, "backend_tokenizer")  # plain `tokenizers`, no transformers wrapper
    ins, resp = _texts_around(600, 400, 7)
    ins, resp = ins + ["where is my order"] * 30, resp + ["it ships today, café 🙂"] * 30  # short: no tokenizing
    seed_counts = [len(seed_tok(i + " " + r).input_ids) for i, r in zip(ins, resp)]
    max_tokens = sorted(seed_counts)[len(seed_counts) // 2]  # half the rows on each side
    limit = filters.TokenLimit(counting, max_tokens)
    got = limit.decisions(ins, resp)
    assert got.reasons == [None if n <= max_tokens else "too_many_tokens" for n in seed_counts]
    assert [d for d in got.details if d] == [f"tokens={n}" for n in seed_counts if n > max_tokens]
    assert 0 < limit.counted < limit.rows  # the byte bound settled some rows without tokenizing them


def test_word_count_decisions_match_full_splits():
    rng = random.Random(8)
    odd = ["\x1c", "\x0b", "\xa0", "\u3000", "", " ", "\n"]
    ins = [" ".join(rng.choice(WORDS + odd) for _ in range(rng.randint(0, 9))) for _ in range(1500)]
    resp = [" ".join(rng.choice(WORDS + odd) for _ in range(rng.randint(0, 12))) for _ in range(1500)]
    expected_r, expected_d = [], []
    for i, r in zip(ins, resp):  # the seed's counts
        if len(i.split()) <= 4:
            expected_r.append("short_instruction")
            expected_d.append(f"instruction_words={len(i.split())}")
        elif len(r.split()) <= 5:
            expected_r.append("short_response")
            expected_d.append(f"response_words={len(r.split())}")
        else:
            expected_r.append(None)
            expected_d.append(None)
    got = filters.word_count_decisions(ins, resp, 4, 5)
    assert got.reasons == expected_r and got.details == expected_d
    assert {None, "short_instruction", "short_response"} <= set(expected_r)


@pytest.mark.parametrize("values", [[], ["a", None, "café 🙂", ""], [None, None], ["x" * 300] * 50])
def test_arrays_built_from_buffers_equal_pa_array(values):
    import pyarrow as pa

    from llama_sft_dagster.core.data.arrays import binary_array, bool_array, string_array

    assert string_array(values).equals(pa.array(values, type=pa.string()))
    as_bytes = [None if v is None else v.encode() for v in values]
    assert binary_array(as_bytes).equals(pa.array(as_bytes, type=pa.binary()))
    flags = [v is None for v in values] + [True, False, True]
    assert bool_array(flags).equals(pa.array(flags, type=pa.bool_()))
