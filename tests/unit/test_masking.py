"""Masking helpers on plain lists: reply span, leaks, holes, truncation, padding, length report."""

import pytest

from llama_sft_dagster.core.training.masking import check_row, length_report, reply_mask

H, E, BLANK = 3, 4, 9  # <|end_header_id|>, <|eot_id|>, a "\n\n" token
X = -100
# bos, header "system", H, \n\n, sys text, eot, header "user", H, \n\n, user, eot,
# header "assistant", H, \n\n, r1, r2, eot
IDS = [0, 2, 50, H, BLANK, 60, E, 2, 51, H, BLANK, 61, E, 2, 52, H, BLANK, 70, 71, E]
REPLY = {17, 18, 19}


def good_labels(ids=IDS):
    return [t if i in REPLY else X for i, t in enumerate(ids)]


def test_reply_mask_finds_reply_and_eot():
    mask, truncated = reply_mask(IDS, H, E, {BLANK})
    assert {i for i, m in enumerate(mask) if m} == REPLY and not truncated


def test_truncated_reply_runs_to_the_end():
    mask, truncated = reply_mask(IDS[:18], H, E, {BLANK})
    assert truncated and {i for i, m in enumerate(mask) if m} == {17}


def test_correct_labels_pass():
    r = check_row(IDS, good_labels(), None, H, E, {BLANK})
    assert r.ok and r.supervised == r.reply_tokens == 3 and r.metrics()["token_efficiency"] == pytest.approx(3 / 20)


@pytest.mark.parametrize(
    "pos,field", [(11, "leaked"), (16, "leaked"), (19, "unsupervised_reply"), (17, "unsupervised_reply")]
)
def test_each_kind_of_error_fails(pos, field):
    labels = good_labels()
    labels[pos] = X if pos in REPLY else IDS[pos]
    r = check_row(IDS, labels, None, H, E, {BLANK})
    assert not r.ok and getattr(r, field) == 1 and r.examples


def test_all_tokens_supervised_is_caught():
    r = check_row(IDS, list(IDS), None, H, E, {BLANK})
    assert not r.ok and r.leaked == len(IDS) - 3


def test_padding_counted_and_must_be_ignored():
    ids, attn = IDS + [5, 5], [1] * len(IDS) + [0, 0]
    r = check_row(ids, good_labels() + [X, X], attn, H, E, {BLANK})
    assert r.ok and r.padding == 2 and r.metrics()["padding_share"] == pytest.approx(2 / 22)
    r = check_row(ids, good_labels() + [5, X], attn, H, E, {BLANK})
    assert not r.ok and r.leaked == 1


def test_shifted_labels_are_caught():
    labels = good_labels()
    labels[17], labels[18] = 71, 19
    assert check_row(IDS, labels, None, H, E, {BLANK}).label_mismatch == 2


def test_length_report():
    rep = length_report([100, 600, 512, 513], 512)
    assert rep["over_max_length"] == 2 and rep["templated_tokens_max"] == 600
    assert length_report([], 512)["over_max_length"] == 0


# bos, system turn, header "assistant"(2, 52, H), \n\n, a1, eot, header "user", H, \n\n, u, eot, "assistant" header,
# \n\n, a2, a3, eot: two assistant turns
A_HEADER = [2, 52, H]
TWO = [0, 2, 50, H, BLANK, 60, E, 2, 52, H, BLANK, 80, E, 2, 51, H, BLANK, 61, E, 2, 52, H, BLANK, 70, 71, E]
EARLIER, LAST = {11, 12}, {23, 24, 25}


def test_every_reply_mask_covers_each_assistant_turn_and_its_eot():
    mask, truncated = reply_mask(TWO, H, E, {BLANK}, assistant_header=A_HEADER)
    assert {i for i, m in enumerate(mask) if m} == EARLIER | LAST and not truncated
    mask, _ = reply_mask(TWO, H, E, {BLANK})  # the default: the last reply only
    assert {i for i, m in enumerate(mask) if m} == LAST


@pytest.mark.parametrize("every_reply", [False, True])
def test_loss_on_an_earlier_reply_is_a_leak_or_required(every_reply):
    all_labels = [t if i in EARLIER | LAST else X for i, t in enumerate(TWO)]
    last_labels = [t if i in LAST else X for i, t in enumerate(TWO)]
    header = A_HEADER if every_reply else None
    good, bad = (all_labels, last_labels) if every_reply else (last_labels, all_labels)
    assert check_row(TWO, good, None, H, E, {BLANK}, assistant_header=header).ok
    r = check_row(TWO, bad, None, H, E, {BLANK}, assistant_header=header)
    assert not r.ok
    assert (r.unsupervised_reply, r.leaked) == ((2, 0) if every_reply else (0, 2))
