"""sft_dataset's stored token ids are what TRL would compute, TRL then skips tokenizing, and the masking check's
model-free preparation (trainer.prepare_data) equals a real SFTTrainer's processed datasets and collator."""

from __future__ import annotations

import pytest

from llama_sft_dagster.config.training import SftDatasetConfig, TrainConfig
from llama_sft_dagster.core.training.chat_format import build_rows
from llama_sft_dagster.core.training.device import MachineFacts, plan_device
from llama_sft_dagster.core.training.tokenized import AssistantMaskError, trainer_tokens
from support.adapters import tiny_base
from support.paths import shared_file

CPU = plan_device("cpu", MachineFacts(False))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_base(tmp_path_factory.mktemp("base"))


def bitext_pairs(n: int) -> list[tuple[str, str]]:
    import csv

    path = next(shared_file("bitext").glob("*.csv"))
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [(r["instruction"], r["response"]) for r in rows[:n]]


def with_tokens(rows, tokenizer, assistant_only_loss=False):
    cols = trainer_tokens(tokenizer, rows, assistant_only_loss)
    return [{**r, **{k: v[i] for k, v in cols.items()}} for i, r in enumerate(rows)]


def count_tokenizations(monkeypatch) -> list[int]:
    """Count TRL's per-row tokenizer calls during dataset preparation."""
    import trl.trainer.sft_trainer as sft

    calls, real = [0], sft._tokenize

    def counted(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(sft, "_tokenize", counted)
    return calls


def prepared(base_dir, train_rows, eval_rows, tmp_path, data=None, **train):
    from llama_sft_dagster.core.training.trainer import prepare_data

    hp = TrainConfig(**train)
    return prepare_data(base_dir, train_rows, eval_rows, hp, data or SftDatasetConfig().model_dump(), CPU, tmp_path)


def test_real_llama_tokenizer_stored_ids_equal_trls_and_skip_its_tokenization(tmp_path, monkeypatch):
    from llama_sft_dagster.core.training.trainer import load_tokenizer

    tok_dir = shared_file("llama31_tokenizer")
    pairs = bitext_pairs(40) + [
        ("trailing space ", " lead and  double"),
        ("a\n\nb", "train ."),
        ("typed <|eot_id|> in text", "<|start_header_id|>x"),
        ("ünïcödé 🙂", "\n\nok"),
    ]
    rows = build_rows([p[0] for p in pairs], [p[1] for p in pairs])
    calls = count_tokenizations(monkeypatch)
    from_text = prepared(tok_dir, rows, rows[:8], tmp_path)
    assert calls[0] == 2 * (len(rows) + 8)  # TRL: prompt, then prompt + completion, per row
    stored = with_tokens(rows, load_tokenizer(tok_dir))
    from_ids = prepared(tok_dir, stored, stored[:8], tmp_path)
    assert calls[0] == 2 * (len(rows) + 8)  # no further call: the stored ids were used
    for split in ("train_dataset", "eval_dataset"):
        a, b = getattr(from_text, split), getattr(from_ids, split)
        assert a["input_ids"] == b["input_ids"] and a["labels"] == b["labels"]
        assert any(x == -100 for x in a["labels"][0]) and any(x != -100 for x in a["labels"][0])


def test_messages_rows_with_assistant_only_loss(base, tmp_path):
    from llama_sft_dagster.core.training.trainer import load_tokenizer

    rows = build_rows(["where is my order", "track it"], ["my order has not arrived", "please help me"], "messages")
    data = SftDatasetConfig(dataset_format="messages", completion_only_loss=False, assistant_only_loss=True)
    tok = load_tokenizer(base)
    cols = trainer_tokens(tok, rows, assistant_only_loss=True)
    assert set(cols) == {"input_ids", "assistant_masks"} and all(1 in m for m in cols["assistant_masks"])
    a = prepared(base, rows, rows, tmp_path, data.model_dump())
    b = prepared(base, with_tokens(rows, tok, True), rows, tmp_path, data.model_dump())
    assert a.train_dataset["labels"] == b.train_dataset["labels"]
    tok.chat_template = tok.chat_template.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    with pytest.raises((AssistantMaskError, ValueError), match="generation"):
        trainer_tokens(tok, rows, assistant_only_loss=True)


@pytest.mark.parametrize(
    "train", [{}, {"padding_free": False}, {"packing": True}], ids=["padding_free", "padded", "packed"]
)
def test_prepare_data_equals_the_real_trainers_without_loading_the_model(base, tmp_path, monkeypatch, train):
    import torch
    import transformers

    from llama_sft_dagster.core.training.trainer import load_tokenizer, setup

    words = ["my order", "has not arrived", "please help me track it", "order 7"]
    rows = build_rows([" ".join(words[: 1 + i % 4]) for i in range(24)], [" ".join(words[i % 3 :]) for i in range(24)])
    rows = with_tokens(rows, load_tokenizer(base))
    hp = TrainConfig(**{"max_steps": 1, "eval_steps": 1, "save_steps": 1, **train})
    data = SftDatasetConfig().model_dump()
    trainer = setup(base, rows, rows[:6], hp, data, CPU, tmp_path / "t")

    def no_weights(*args, **kwargs):
        raise AssertionError("prepare_data loaded the model")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_weights)
    light = prepared(
        base, rows, rows[:6], tmp_path / "l", **{"max_steps": 1, "eval_steps": 1, "save_steps": 1, **train}
    )
    for split in ("train_dataset", "eval_dataset"):
        assert getattr(light, split).to_dict() == getattr(trainer, split).to_dict()
    real, mine = trainer.data_collator, light.data_collator
    assert type(mine) is type(real) and vars(mine) == vars(real)
    sample = [{k: r[k] for k in ("input_ids", "labels", "seq_lengths") if k in r} for r in trainer.train_dataset][:4]
    a, b = real(sample), mine(sample)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k] for k in a)


def test_the_masking_check_catches_a_wrong_stored_mask(base, tmp_path):
    """The stored ids are trusted by TRL, so the check must see what a wrong mask does to the collated labels."""
    from llama_sft_dagster.core.training.masking import verify_trainer_masking
    from llama_sft_dagster.core.training.trainer import load_tokenizer

    rows = build_rows([f"my order {i} has not arrived" for i in range(8)], ["please help me track it"] * 8)
    good = with_tokens(rows, load_tokenizer(base))
    assert verify_trainer_masking(prepared(base, good, good[:2], tmp_path), max_batches=2).ok
    bad = [{**r, "completion_mask": [1] * len(r["input_ids"])} for r in good]  # supervises the prompt too
    report = verify_trainer_masking(prepared(base, bad, bad[:2], tmp_path), max_batches=2)
    assert not report.ok and report.leaked > 0


def multi_turn_rows(tokenizer, loss_turns: str, n: int = 8) -> list[dict]:
    """Samples with two earlier exchanges as context, with the token columns of `loss_turns`."""
    import json

    from llama_sft_dagster.core.training.chat_format import SYSTEM_PROMPT, context_rows

    context = json.dumps(
        [
            {"role": "user", "content": "my order has not arrived"},
            {"role": "assistant", "content": "please help me track it"},
            {"role": "user", "content": "order 7"},
            {"role": "assistant", "content": "it has not arrived"},
        ]
    )
    rows = build_rows([f"track order {i}" for i in range(n)], ["please help me"] * n)
    rows, _ = context_rows(rows, [context] * n, tokenizer, 4096, False, SYSTEM_PROMPT)
    cols = trainer_tokens(tokenizer, rows, loss_turns=loss_turns)
    return [{**r, **{k: v[i] for k, v in cols.items()}} for i, r in enumerate(rows)]


@pytest.mark.parametrize("train", [{}, {"padding_free": False}], ids=["padding_free", "padded"])
def test_trainer_labels_follow_loss_turns_and_the_masking_check_tells_them_apart(base, tmp_path, train):
    """Through TRL's own preparation and collator: with loss_turns='all' the labels cover the three replies (the
    check with every_reply passes; the last-reply check sees the earlier two as leaks), with 'last' only the last
    (the every-reply check sees holes)."""
    from llama_sft_dagster.core.training.masking import IGNORE_INDEX, verify_trainer_masking
    from llama_sft_dagster.core.training.trainer import load_tokenizer

    tok = load_tokenizer(base)
    data = SftDatasetConfig(context="earlier_turns", loss_turns="all").model_dump()
    every = multi_turn_rows(tok, "all")
    trainer = prepared(base, every, every[:2], tmp_path, data, **train)
    labels = trainer.train_dataset[0]["labels"]
    got = tok.decode([t for t in labels if t != IGNORE_INDEX])
    assert got == "please help me track it<|eot_id|>it has not arrived<|eot_id|>please help me<|eot_id|>"
    assert verify_trainer_masking(trainer, max_batches=2, every_reply=True).ok
    leaks = verify_trainer_masking(trainer, max_batches=2)
    assert not leaks.ok and leaks.leaked > 0 and leaks.unsupervised_reply == 0
    last = multi_turn_rows(tok, "last")
    trainer = prepared(base, last, last[:2], tmp_path, data, **train)
    assert verify_trainer_masking(trainer, max_batches=2).ok
    holes = verify_trainer_masking(trainer, max_batches=2, every_reply=True)
    assert not holes.ok and holes.unsupervised_reply > 0 and holes.leaked == 0
