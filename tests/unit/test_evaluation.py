"""Evaluation logic on plain lists: grouped metrics, sample pick, champion rule, retention, rank-sweep figures."""

import math

import numpy as np
import pytest

from llama_sft_dagster.core.data.retention import to_remove
from llama_sft_dagster.core.evaluation import metrics, rank_sweep
from llama_sft_dagster.core.evaluation.promotion import decide
from llama_sft_dagster.core.evaluation.samples import pick_samples, samples_rows


def row(set_="validation", source="bitext", intent="cancel_order", category="ORDER", nll=10.0, tokens=5, correct=2):
    return {
        "set": set_,
        "source": source,
        "intent": intent,
        "category": category,
        "nll": nll,
        "tokens": tokens,
        "correct": correct,
    }


def test_groups_per_source_and_the_groups_a_row_has():
    assert metrics.groups(row()) == ["overall", "source:bitext", "intent:cancel_order", "category:ORDER"]
    assert metrics.groups(row(source="multiwoz", intent=None, category="hotel")) == [
        "overall",
        "source:multiwoz",
        "category:hotel",
    ]
    assert metrics.groups(row(source="support_chats", intent=None, category=None)) == [
        "overall",
        "source:support_chats",
    ]


def test_aggregate_is_token_weighted():
    out = metrics.aggregate([row(nll=10.0, tokens=5, correct=5), row(nll=2.0, tokens=1, correct=0)])
    m = out[("validation", "intent:cancel_order")]
    assert m["samples"] == 2 and m["tokens"] == 6
    assert m["loss"] == pytest.approx(12 / 6)  # not the mean of per-row means (2.0 and 2.0 happen to agree here)
    assert m["perplexity"] == pytest.approx(math.exp(2.0)) and m["accuracy"] == pytest.approx(5 / 6)
    skew = metrics.aggregate([row(nll=10.0, tokens=10), row(nll=9.0, tokens=1)])[("validation", "overall")]
    assert skew["loss"] == pytest.approx(19 / 11)


def test_compare_worse_groups_and_table():
    base = [row(nll=10.0), row(intent="track_order", nll=5.0), row("held_out", "multiwoz", "book_taxi", "taxi", 8.0)]
    tuned = [row(nll=4.0), row(intent="track_order", nll=6.0), row("held_out", "multiwoz", "book_taxi", "taxi", 3.0)]
    table = metrics.compare(base, tuned)
    held_out = [r["group"] for r in table if r["set"] == "held_out"]
    assert held_out[0] == "overall" and set(held_out) == {
        "overall",
        "source:multiwoz",
        "intent:book_taxi",
        "category:taxi",
    }
    assert metrics.worse_groups(table) == ["validation/intent:track_order"]
    assert metrics.overall(table, "validation")["tuned_loss"] == pytest.approx(10 / 10)
    rows = {(r["set"], r["group"]): r for r in metrics.table_rows(table)}
    assert rows[("validation", "intent:track_order")]["loss_base"] == pytest.approx(1.0)
    assert rows[("validation", "intent:track_order")]["loss_tuned"] == pytest.approx(1.2)


def test_compare_refuses_different_rows():
    with pytest.raises(ValueError, match="different groups"):
        metrics.compare([row()], [row(intent="other")])
    with pytest.raises(ValueError, match="scored 2 rows"):
        metrics.compare([row(), row()], [row()])


def test_pooled_loss():
    assert metrics.pooled_loss([row(nll=3.0, tokens=1), row("held_out", nll=1.0, tokens=3)]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="empty"):
        metrics.pooled_loss([])


def test_pick_samples_per_group_and_stable():
    rows = [{"pair_id": f"p{i}", "source": "bitext", "intent": f"i{i % 3}"} for i in range(12)]
    rows += [{"pair_id": "m0", "source": "multiwoz", "category": "taxi"}]
    picked = pick_samples(rows, per_group=2, seed=0)
    groups = [rows[i].get("intent") or rows[i]["category"] for i in picked]
    assert sorted(groups) == ["i0", "i0", "i1", "i1", "i2", "i2", "taxi"]
    shuffled = rows[::-1]
    again = {shuffled[i]["pair_id"] for i in pick_samples(shuffled, per_group=2, seed=0)}
    assert again == {rows[i]["pair_id"] for i in picked}  # by pair_id, not by file order
    assert pick_samples(rows, 0, 0) == []


def test_samples_rows_cut_and_one_line():
    (row,) = samples_rows(
        [{"group": "intent:a", "prompt": "x|y", "reference": "r" * 500, "base_reply": "b", "tuned_reply": "t\nu"}],
        max_chars=20,
    )
    assert row == {
        "group": "intent:a",
        "prompt": "x|y",
        "reference": "r" * 19 + "…",
        "base_reply": "b",
        "tuned_reply": "t u",
    }


@pytest.mark.parametrize(
    "challenger, base, champion, margin, promote, words",
    [
        (1.0, 2.0, None, 0.0, True, "no champion yet"),
        (2.5, 2.0, None, 0.0, False, "does not beat its base"),
        (1.0, 2.0, 1.2, 0.0, True, "beats champion"),
        (1.3, 2.0, 1.2, 0.0, False, "does not beat champion"),
        (1.19, 2.0, 1.2, 0.05, False, "by more than 5.0%"),
        (1.0, 2.0, 1.0, 0.0, False, "does not beat champion"),  # a tie keeps the champion
    ],
)
def test_decide(challenger, base, champion, margin, promote, words):
    d = decide(challenger, base, champion, margin)
    assert d.promote is promote and words in d.reason


@pytest.mark.parametrize(
    "names, keep, promoted, current, removed",
    [
        (["a", "b", "c", "d"], 2, (), "d", ["a", "b"]),
        (["a", "b", "c", "d"], 1, {"a"}, "d", ["b", "c"]),
        (["a", "b", "c"], 1, (), "b", ["a"]),  # current is never removed, even when not the newest
        (["a"], 3, (), "a", []),
    ],
)
def test_retention(names, keep, promoted, current, removed):
    assert to_remove(names, keep, promoted, current) == removed


def test_retention_keeps_at_least_one():
    with pytest.raises(ValueError, match="keep=0"):
        to_remove(["a"], 0)


def test_rank_utilisation_full_vs_rank_one():
    rng = np.random.default_rng(0)
    r = 8
    full = {"m.lora_A.weight": rng.normal(size=(r, 32)), "m.lora_B.weight": rng.normal(size=(32, r))}
    one = {"m.lora_A.weight": np.outer(np.ones(r), rng.normal(size=32)), "m.lora_B.weight": rng.normal(size=(32, r))}
    assert rank_sweep.rank_utilisation(full, r, 2 * r)["rank_utilisation"] > 0.6
    assert rank_sweep.rank_utilisation(one, r, 2 * r)["rank_utilisation"] == pytest.approx(1 / r, abs=1e-3)


def test_rank_utilisation_bad_adapter():
    with pytest.raises(ValueError, match="no m.lora_B.weight"):
        rank_sweep.lora_pairs({"m.lora_A.weight": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="no lora_A"):
        rank_sweep.lora_pairs({"w": np.zeros(2)})


def test_spread_and_sweep_table():
    assert rank_sweep.spread([1.0, 3.0]) == {"intent_loss_std": 1.0, "intent_loss_min": 1.0, "intent_loss_max": 3.0}
    assert math.isnan(rank_sweep.spread([])["intent_loss_std"])
    md = rank_sweep.sweep_markdown(
        [
            {"lora_r": 16, "lora_alpha": 32, "best_eval_loss": 1.5, "trainable_params": 12345},
            {"lora_r": 8, "lora_alpha": 16, "best_eval_loss": 1.6},
        ]
    )
    lines = md.splitlines()
    assert lines[2].startswith("| 8 | 16 | 1.6000 |") and "12,345" in lines[3] and "| - |" in lines[2]


def test_evaluation_losses_named_as_the_glossary():
    from llama_sft_dagster.core.report.losses import GLOSSARY, evaluation_losses, glossary_markdown

    base = [row(nll=10.0), row("held_out", "multiwoz", "book_taxi", "taxi", 8.0)]
    tuned = [row(nll=4.0), row("held_out", "multiwoz", "book_taxi", "taxi", 3.0)]
    table = metrics.compare(base, tuned)
    pooled = {"base": metrics.pooled_loss(base), "tuned": metrics.pooled_loss(tuned)}
    losses = evaluation_losses(table, pooled)
    assert set(losses) == {
        f"{n}_{m}" for n in GLOSSARY if n.startswith(("val", "held", "evaluation")) for m in ("base", "tuned")
    }
    assert losses["held_out_loss_tuned"] == pytest.approx(3 / 5)
    assert losses["evaluation_loss_base"] == pytest.approx(18 / 10)
    assert all(f"| {name} |" in glossary_markdown() for name in GLOSSARY)
