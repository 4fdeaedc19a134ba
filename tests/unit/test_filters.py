"""Pure-logic tests of the seed's four filters on plain lists: each case checks the drop reason."""

import pytest

from llama_sft_dagster.core.data import filters

LONG_RESPONSE = "Thanks for reaching out, I can certainly help you with that request today."


@pytest.mark.parametrize(
    "instruction, response, reason",
    [
        ("cancel my order please now", LONG_RESPONSE, None),  # 5 words > 4
        ("cancel my order please", LONG_RESPONSE, "short_instruction"),  # 4 words is not > 4
        ("", LONG_RESPONSE, "short_instruction"),
        ("cancel my order please now", "one two three four five", "short_response"),  # 5 is not > 5
        ("cancel my order please now", "one two three four five six", None),
        ("cancel\nmy\torder  please now", LONG_RESPONSE, None),  # any whitespace separates words
    ],
)
def test_word_count(instruction, response, reason):
    d = filters.word_count_decisions([instruction], [response], 4, 5)
    assert d.reasons == [reason]


class CharTokenizer:
    """A stand-in with the fast-tokenizer call shape: one token per character plus BOS."""

    def __call__(self, texts, add_special_tokens=True):
        return {"input_ids": [[0] * (len(t) + int(add_special_tokens)) for t in texts]}


@pytest.mark.parametrize("n_chars, reason", [(8, None), (9, None), (10, "too_many_tokens")])
def test_token_limit_counts_joined_text_with_bos(n_chars, reason):
    # "aaaa" + " " + "bbb..." : len = n_chars; +1 BOS; limit 10
    ins, resp = "a" * 4, "b" * (n_chars - 5)
    d = filters.token_limit_decisions([ins], [resp], CharTokenizer(), max_tokens=10)
    assert d.reasons == [reason]
    if reason:
        assert d.details == [f"tokens={n_chars + 1}"]


@pytest.mark.parametrize(
    "instruction, response, reason",
    [
        (
            "I would like to cancel the order I placed yesterday",
            "Of course, I can help you cancel that order right away.",
            None,
        ),
        (
            "Je voudrais annuler la commande que j'ai passée hier",
            "Bien sûr, je peux vous aider à annuler cette commande.",
            "language_french",
        ),
        ("我想取消我昨天下的订单", "当然，我可以帮您取消这个订单。", "language_chinese"),
        ("12345 67890", "0000 1111", "language_unknown"),
    ],
)
def test_language(instruction, response, reason):
    d = filters.language_decisions([instruction], [response], ("ENGLISH", "CHINESE", "FRENCH"))
    assert d.reasons == [reason]


def test_language_removes_newlines_and_batches_in_order():
    ins = ["Where is my parcel?\nIt was due yesterday.", "Où est mon colis ?\nIl devait arriver hier."]
    resp = ["Let me check the tracking\nfor you.", "Je vais vérifier le suivi\npour vous."]
    assert filters.language_decisions(ins, resp, ("ENGLISH", "FRENCH")).reasons == [None, "language_french"]


def test_language_rejects_unknown_language_name():
    with pytest.raises(ValueError, match="KLINGON"):
        filters.language_decisions(["a"], ["b"], ("ENGLISH", "KLINGON"))


@pytest.mark.parametrize(
    "instruction, response, reason",
    [
        ("where is my order", "where is my order", "parroting"),  # identical: similarity 1
        ("Where is my ORDER", "where is my order", "parroting"),  # lower-cased
        ("a b c d e f", "a b c d e f g", "parroting"),  # 6/7 = 0.857 >= 0.85
        ("a b c d e", "a b c d e f", None),  # 5/6 = 0.833 < 0.85
        ("where is my order", "your order ships tomorrow morning", None),
    ],
)
def test_parroting(instruction, response, reason):
    assert filters.parroting_decisions([instruction], [response], 0.85).reasons == [reason]


def test_jaccard_matches_nltk_definition():
    assert filters.word_jaccard_similarity("a b c", "b c d") == pytest.approx(2 / 4)
    assert filters.word_jaccard_similarity("", "") == 1.0


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="2 instructions but 1 responses"):
        filters.word_count_decisions(["a", "b"], ["c"], 4, 5)
