"""The fast paths of the filters and dedup decide exactly as the seed's one-row-at-a-time code.

Each test compares a batch function with the seed's per-row formulation on inputs chosen to sit on
the edges (the Jaccard boundary, texts around the token limit, unicode, repeated texts).
"""
import random

import pytest

from llama_sft_dagster.core.data import filters
from llama_sft_dagster.core.data.dedup import NearDuplicateIndex, shingle_strings, word_shingles

WORDS = ["order", "Order", "refund", "the", "a", "é", "café", "naïve", "送货", "🙂", "x" * 30, "#1234567", "tab\tsep", "l'adresse"]


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
    tok.train_from_iterator([random_text(rng, 30) for _ in range(500)],
                            trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>"], show_progress=False,
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
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
