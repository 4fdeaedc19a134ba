"""Reply-token scoring and generation on a tiny random Llama, the demo pretraining's packing, and the
demo's held-out dialogues."""

import pytest

from llama_sft_dagster.core.demo.pretrain import lr_at, pack
from llama_sft_dagster.core.training.chat_format import prompt_completion_row

TEXTS = [f"Where is my order {i}? It was due on Monday. Let me check the tracking for you." for i in range(200)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llama_sft_dagster.core.training.base_model import build_demo_base_model

    folder = build_demo_base_model(
        TEXTS,
        tmp_path_factory.mktemp("tiny"),
        seed=0,
        vocab_size=400,
        pretrain={"steps": 3, "batch_size": 2, "seq_len": 32, "learning_rate": 1e-3},
    )
    return AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder), folder


def test_pack_blocks():
    assert pack([[1, 2], [3]], 0, 2) == [[1, 2], [0, 3]]  # the trailing separator alone is dropped
    with pytest.raises(ValueError, match="seq_len=1"):
        pack([[1]], 0, 1)
    assert lr_at(0, 100, 1.0, 10) == pytest.approx(0.1) and lr_at(100, 100, 1.0, 10) == pytest.approx(0.1)


def test_pretraining_figures_are_saved(tiny):
    import json

    figures = json.loads((tiny[2] / "pretraining.json").read_text())
    assert figures["pretrain_steps"] == 3 and figures["pretrain_first_loss"] > 0


def test_pretraining_on_a_small_corpus_uses_what_there_is(tiny):
    """A heavily filtered or test-sized corpus: fewer blocks than the batch (every block in every step), or
    not one full block (the random init is kept, and the figures say why) -- never a failed base_model."""
    from transformers import AutoModelForCausalLM

    from llama_sft_dagster.core.demo.pretrain import pretrain

    _, tok, folder = tiny
    model = AutoModelForCausalLM.from_pretrained(folder)
    few = pretrain(model, tok, TEXTS[:20], steps=2, batch_size=64, seq_len=32, learning_rate=1e-3, seed=0)
    assert few["pretrain_steps"] == 2 and few["pretrain_batch_size"] == few["pretrain_blocks"] < 64
    none = pretrain(model, tok, ["too short"], steps=2, batch_size=64, seq_len=512, learning_rate=1e-3, seed=0)
    assert none["pretrain_steps"] == 0 and "no full block of 512 tokens" in none["pretrain_skipped"]


def test_reply_span_is_reply_and_eot(tiny):
    from llama_sft_dagster.core.evaluation.scoring import reply_span

    _, tok, _ = tiny
    ids, first = reply_span(tok, prompt_completion_row("Where is my order?", "It ships today."), max_length=512)
    assert tok.decode(ids[first:]) == "It ships today.<|eot_id|>"


def test_scores_equal_the_models_own_masked_loss(tiny):
    """nll / tokens of a row is the mean cross-entropy transformers computes with the prompt masked out."""
    import torch

    from llama_sft_dagster.core.evaluation.scoring import reply_span, score_rows

    model, tok, _ = tiny
    rows = [prompt_completion_row(t.split("?")[0] + "?", t.split("?", 1)[1]) for t in TEXTS[:5]]
    scores = score_rows(model, tok, rows, max_length=512, batch_size=2)  # padded batches
    for r, s in zip(rows, scores, strict=True):
        ids, first = reply_span(tok, r, 512)
        labels = torch.tensor([[-100] * first + ids[first:]])
        with torch.no_grad():
            expected = model(input_ids=torch.tensor([ids]), labels=labels).loss.item()
        assert s["tokens"] == len(ids) - first
        assert s["nll"] / s["tokens"] == pytest.approx(expected, rel=1e-4)
        assert 0 <= s["correct"] <= s["tokens"]


def test_generation_is_greedy_and_batch_independent(tiny):
    from llama_sft_dagster.core.evaluation.scoring import generate_replies

    model, tok, _ = tiny
    prompts = [prompt_completion_row(q, "")["prompt"] for q in ("Where is my order 3?", "Hi")]
    together = generate_replies(model, tok, prompts, max_new_tokens=8, batch_size=2)
    alone = [generate_replies(model, tok, [p], max_new_tokens=8, batch_size=1)[0] for p in prompts]
    assert together == alone and all(isinstance(t, str) for t in together)


def test_held_out_dialogues_are_dev_and_test_only():
    from llama_sft_dagster.core.demo.corpus import generate_multiwoz_turns
    from llama_sft_dagster.core.demo.held_out import held_out_turns
    from llama_sft_dagster.core.evaluation.evaluate import held_out_rows

    held = held_out_turns(n_dialogues=5)
    assert set(held.column("split").to_pylist()) == {"dev", "test"}
    train_ids = set(generate_multiwoz_turns(n_dialogues=20).column("dialogue_id").to_pylist())
    assert not set(held.column("dialogue_id").to_pylist()) & train_ids
    from llama_sft_dagster.core.sources import multiwoz

    rows, counts = held_out_rows(held, max_pairs=7, system_prompt="S", source=("multiwoz", multiwoz.PAIRS))
    assert len(rows) == 7 and counts["held_out_pairs"] > 7 and all(r["set"] == "held_out" for r in rows)
    assert rows[0]["prompt"][0] == {"role": "system", "content": "S"}
