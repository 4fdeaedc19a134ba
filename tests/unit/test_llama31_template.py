"""Issue §1 on Llama 3.1's real tokenizer and chat template (../shared/data/llama31_tokenizer), through the
project's own code: the token filter's count, one BOS and the stock system header in what the trainer
trains on, the reserved pad token, masking batches from every source, no silent truncation, and the stop
token of a saved model. The end-to-end run of the rehearsal profile is tests/e2e/test_rehearsal.py."""

import json
import shutil

import pyarrow as pa
import pytest

from llama_sft_dagster.core.training.chat_format import SYSTEM_PROMPT
from support.paths import shared_file

STOCK = (
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
    "Today Date: 26 Jul 2024\n\n"
)
BOS, EOT, PAD_ID, EOT_ID = 128000, 128009, 128004, 128009


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(shared_file("llama31_tokenizer"))


@pytest.fixture(scope="module")
def bitext_rows():
    from llama_sft_dagster.core.sources.bitext import load_bitext_file

    path = shared_file("bitext/Bitext_Sample_Customer_Support_Training_Dataset_27K_responses-v11.head5000.csv")
    table = load_bitext_file(path)
    return table.column("instruction").to_pylist(), table.column("response").to_pylist()


@pytest.fixture(scope="module")
def rehearsal_model(tmp_path_factory):
    from llama_sft_dagster.core.training.llama31 import build_rehearsal_base_model

    return build_rehearsal_base_model(shared_file("llama31_tokenizer"), tmp_path_factory.mktemp("rehearsal") / "model")


@pytest.mark.parametrize("max_tokens", [580, 120, 60])
def test_token_filter_counts_exactly_like_the_seed_with_bos(tokenizer, bitext_rows, max_tokens):
    """Seed: len(tokenizer(instruction + " " + response).input_ids) <= 580, BOS included. At 120 and 60 both the
    byte-length shortcut and the tokenizer path decide rows; every decision and every dropped count must match."""
    from llama_sft_dagster.core.data.filters import token_limit_decisions

    instructions, responses = bitext_rows
    seed = [len(tokenizer(i + " " + r).input_ids) for i, r in zip(instructions, responses, strict=True)]
    assert all(tokenizer(i + " " + r).input_ids[0] == BOS for i, r in zip(instructions[:5], responses[:5], strict=True))
    decisions = token_limit_decisions(instructions, responses, tokenizer, max_tokens)
    assert [r is None for r in decisions.reasons] == [n <= max_tokens for n in seed]
    dropped = [(d, f"tokens={n}") for d, n in zip(decisions.details, seed, strict=True) if n > max_tokens]
    assert all(d == want for d, want in dropped)
    if max_tokens == 580:
        assert max(seed) <= 580 and not dropped  # README of ../shared/data: at most 393 on these rows
    else:
        assert dropped


def _trainer(model_dir, tmp_path, rows, **hp):
    from llama_sft_dagster.config.training import SftDatasetConfig, TrainConfig
    from llama_sft_dagster.core.training.device import MachineFacts, plan_device
    from llama_sft_dagster.core.training.trainer import setup

    train = TrainConfig(max_steps=2, eval_steps=1, save_steps=1, **hp)
    return setup(
        model_dir,
        rows,
        rows[:4],
        train,
        SftDatasetConfig().model_dump(),
        plan_device("cpu", MachineFacts(False)),
        tmp_path,
    )


@pytest.fixture(scope="module")
def padded_trainer(rehearsal_model, bitext_rows, tmp_path_factory):
    """One trainer on 24 real Bitext rows, padded batches (so pads exist); tests must not keep changes to it."""
    return _trainer(rehearsal_model, tmp_path_factory.mktemp("trainer"), _rows(bitext_rows), padding_free=False)


def _rows(bitext_rows, n=24):
    from llama_sft_dagster.core.training.chat_format import build_rows

    instructions, responses = bitext_rows
    return build_rows(instructions[:n], responses[:n])


def test_trainer_input_has_one_bos_then_the_stock_header_and_the_seed_prompt(padded_trainer):
    from llama_sft_dagster.core.training.template_check import template_problems

    trainer = padded_trainer
    tok = trainer.processing_class
    for ids in trainer.train_dataset["input_ids"]:
        assert ids.count(BOS) == 1 and ids[0] == BOS
        assert tok.decode(ids).startswith(STOCK + SYSTEM_PROMPT + "<|eot_id|><|start_header_id|>user")
        assert ids[-1] == EOT_ID and template_problems(tok, ids, SYSTEM_PROMPT) == []


def test_template_check_catches_double_bos_and_a_missing_header(tokenizer):
    from llama_sft_dagster.core.training.chat_format import conversation, prompt_completion_row
    from llama_sft_dagster.core.training.template_check import template_problems

    text = tokenizer.apply_chat_template(
        conversation(prompt_completion_row("where is my order?", "Let me look.")), tokenize=False
    )
    good = tokenizer(text, add_special_tokens=False).input_ids
    doubled = tokenizer(text).input_ids  # the classic bug: the template's BOS plus the tokenizer's
    assert template_problems(tokenizer, good, SYSTEM_PROMPT) == []
    assert doubled[:2] == [BOS, BOS]
    assert "2 <|begin_of_text|>" in template_problems(tokenizer, doubled, SYSTEM_PROMPT)[0]
    no_header = tokenizer(
        text.replace("Cutting Knowledge Date: December 2023\n", ""), add_special_tokens=False
    ).input_ids
    assert any("system turn" in p for p in template_problems(tokenizer, no_header, SYSTEM_PROMPT))
    other_prompt = template_problems(tokenizer, good, "You are a pirate.")
    assert any("system turn" in p for p in other_prompt)


def test_pad_is_the_reserved_token_and_every_reply_token_and_eot_is_supervised(padded_trainer):
    from llama_sft_dagster.core.training.masking import verify_trainer_masking

    trainer = padded_trainer
    assert trainer.processing_class.pad_token == "<|finetune_right_pad_id|>"
    assert trainer.data_collator.pad_token_id == PAD_ID != EOT_ID
    report = verify_trainer_masking(trainer, max_batches=3, system_prompt=SYSTEM_PROMPT)
    assert report.ok, report.examples
    assert report.padding > 0 and report.pad_errors == 0 and report.template_errors == 0
    assert report.supervised == report.reply_tokens  # reply + <|eot_id|>, nothing else
    rows = trainer.train_dataset.select(range(8))
    batch = trainer.data_collator([{k: r[k] for k in ("input_ids", "labels")} for r in rows])
    eot_positions = (batch["input_ids"] == EOT_ID).nonzero().tolist()
    last_eot = {}
    for row, pos in eot_positions:
        last_eot[row] = pos
    assert all(batch["labels"][row, pos] == EOT_ID for row, pos in last_eot.items())  # the stop token is learned


def test_masking_check_fails_when_the_collator_pads_with_eot(padded_trainer):
    from llama_sft_dagster.core.training.masking import verify_trainer_masking

    collator = padded_trainer.data_collator
    collator.pad_token_id = EOT_ID  # what TRL does when the tokenizer has no pad token
    try:
        report = verify_trainer_masking(padded_trainer, max_batches=1, system_prompt=SYSTEM_PROMPT)
    finally:
        collator.pad_token_id = PAD_ID
    assert not report.ok and report.pad_errors == 1 and "stop token" in report.examples[0]


def test_rehearsal_tokenizer_without_pad_gets_the_reserved_one(tmp_path):
    from transformers import AutoTokenizer

    from llama_sft_dagster.core.training.llama31 import PadTokenError, ensure_pad_token

    tok = AutoTokenizer.from_pretrained(shared_file("llama31_tokenizer"))
    assert tok.pad_token is None  # as the real Llama-3.1-8B-Instruct tokenizer
    assert ensure_pad_token(tok) == PAD_ID
    tok.pad_token = "<|eot_id|>"
    with pytest.raises(PadTokenError, match="end-of-turn"):
        ensure_pad_token(tok)


def test_masking_batches_cover_every_source_and_the_whole_dataset():
    from llama_sft_dagster.core.training.masking import sample_batches

    sources = ["bitext"] * 400 + ["multiwoz"] * 5  # MultiWOZ pairs sort after Bitext in the split files
    batches = sample_batches(len(sources), 8, 4, sources)
    rows = {i for b in batches for i in b}
    assert len(rows) == sum(len(b) for b in batches)  # no row twice
    assert {sources[i] for i in rows} == {"bitext", "multiwoz"}
    assert 0 in rows and 404 in rows and any(150 < i < 250 for i in rows)  # start, end and middle
    first_batches_only = {i for b in range(4) for i in range(b * 8, b * 8 + 8)}
    assert {sources[i] for i in first_batches_only} == {"bitext"}  # what the check used to see


def test_templated_samples_over_max_length_are_dropped_with_a_reason_by_default(tokenizer, bitext_rows):
    from llama_sft_dagster.config.training import SftDatasetConfig
    from llama_sft_dagster.core.training.chat_format import sft_table

    instructions, responses = bitext_rows
    pairs = pa.table(
        {
            "pair_id": [f"bitext:x:{i}" for i in range(200)],
            "instruction": instructions[:200],
            "response": responses[:200],
        }
    )
    config = SftDatasetConfig(max_length=200)
    assert config.filter_on_templated_length  # the default: no silent truncation
    table, rejects, counts, lengths = sft_table(
        pairs, tokenizer, config.dataset_format, config.max_length, config.filter_on_templated_length
    )
    assert counts.dropped["templated_too_long"] == rejects.num_rows > 0 and max(lengths) <= 200
    assert counts.balanced() and all(d.startswith("templated_tokens=") for d in rejects.column("detail").to_pylist())
    kept, _, _, kept_lengths = sft_table(pairs, tokenizer, config.dataset_format, 200, False)  # truncation asked for
    assert kept.num_rows == 200 and sum(n > 200 for n in kept_lengths) == rejects.num_rows  # counted


def test_sft_dataset_lengths_are_what_the_trainer_tokenizes(padded_trainer, bitext_rows):
    from llama_sft_dagster.core.training.chat_format import templated_lengths

    lengths = templated_lengths(padded_trainer.processing_class, _rows(bitext_rows))
    assert [len(x) for x in padded_trainer.train_dataset["input_ids"]] == lengths


def test_saved_model_stops_on_eot_and_the_check_fails_otherwise(rehearsal_model, tmp_path):
    from llama_sft_dagster.core.training.template_check import stop_token_problems

    problems, meta = stop_token_problems(rehearsal_model)
    assert problems == [] and EOT_ID in json.loads(meta["generation_eos_token_id"])
    broken = shutil.copytree(rehearsal_model, tmp_path / "broken")
    gen = json.loads((broken / "generation_config.json").read_text())
    (broken / "generation_config.json").write_text(json.dumps({**gen, "eos_token_id": 128001}))
    problems, _ = stop_token_problems(broken)
    assert len(problems) == 1 and "does not include <|eot_id|>" in problems[0]


@pytest.mark.parametrize("loss_turns", ["last", "all"])
def test_loss_turns_on_the_real_llama31_template(tokenizer, loss_turns):
    """The stock Llama-3.1-Instruct template (its date header, no {% generation %} markers) renders earlier turns as
    prefixes of the whole sample, so loss_turns='all' finds every reply; 'last' keeps the last one only."""
    from llama_sft_dagster.core.training.chat_format import build_rows, context_rows
    from llama_sft_dagster.core.training.tokenized import trainer_tokens

    replies = ["Sorry, which order?", "It arrives tomorrow.", "In your account."]
    context = [
        {"role": "user", "content": "Hi, my parcel is late."},
        {"role": "assistant", "content": replies[0]},
        {"role": "user", "content": "Order 42."},
        {"role": "assistant", "content": replies[1]},
    ]
    rows, _ = context_rows(
        build_rows(["And the invoice?"], [replies[2]]), [json.dumps(context)], tokenizer, 4096, False, SYSTEM_PROMPT
    )
    cols = trainer_tokens(tokenizer, rows, loss_turns=loss_turns)
    ids, mask = cols["input_ids"][0], cols["completion_mask"][0]
    supervised = tokenizer.decode([t for t, m in zip(ids, mask) if m], clean_up_tokenization_spaces=False)
    expected = replies if loss_turns == "all" else replies[-1:]
    assert supervised == "".join(r + "<|eot_id|>" for r in expected)
