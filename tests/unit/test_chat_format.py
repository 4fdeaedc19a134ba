"""Chat formatting: exact Llama-3 template output for one sample, row shapes, templated lengths, drops."""

import pyarrow as pa
import pytest

from llama_sft_dagster.core.data.schema import PAIR_SCHEMA
from llama_sft_dagster.core.training import chat_format as cf


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from llama_sft_dagster.core.training.base_model import train_demo_tokenizer

    texts = ["Where is my order? It ships today, thank you for waiting."] * 50
    return train_demo_tokenizer(texts, vocab_size=400)


def test_system_prompt_is_the_seeds_verbatim():
    assert cf.SYSTEM_PROMPT == (
        "You are a professional customer support assistant. Be empathetic, concise, and "
        "resolution-focused. If unable to resolve, offer to escalate to a human agent."
    )


def test_template_output_exact(tokenizer):
    row = cf.prompt_completion_row("Where is my order?", "It ships today.")
    text = tokenizer.apply_chat_template(cf.conversation(row), tokenize=False)
    assert text == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" + cf.SYSTEM_PROMPT + "<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWhere is my order?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nIt ships today.<|eot_id|>"
    )
    prompt = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
    assert text.startswith(prompt) and text[len(prompt) :] == "It ships today.<|eot_id|>"


@pytest.mark.parametrize("fmt,keys", [("prompt_completion", {"prompt", "completion"}), ("messages", {"messages"})])
def test_row_formats(fmt, keys):
    (row,) = cf.build_rows(["hi there"], ["hello"], fmt)
    assert set(row) == keys
    assert [m["role"] for m in cf.conversation(row)] == ["system", "user", "assistant"]
    assert cf.reply_text(row) == "hello"


def test_unknown_format_and_length_mismatch_rejected():
    with pytest.raises(ValueError, match="dataset_format"):
        cf.build_rows(["a"], ["b"], "text")
    with pytest.raises(ValueError):
        cf.build_rows(["a", "b"], ["c"])


def test_sft_table_drops_templated_too_long_with_reason(tokenizer):
    pairs = pa.Table.from_pylist(
        [
            {"pair_id": "p0", "source": "bitext", "instruction": "Where is my order?", "response": "It ships today."},
            {"pair_id": "p1", "source": "bitext", "instruction": "Where is my order?", "response": "thank you " * 200},
        ],
        schema=PAIR_SCHEMA,
    )
    lengths = cf.templated_lengths(
        tokenizer, cf.build_rows(pairs.column("instruction").to_pylist(), pairs.column("response").to_pylist())
    )
    limit = lengths[0] + 5
    kept, rejects, counts, kept_lengths = cf.sft_table(pairs, tokenizer, "prompt_completion", limit, True)
    assert kept.column("pair_id").to_pylist() == ["p0"] and kept_lengths == [lengths[0]]
    assert rejects.column("reason").to_pylist() == ["templated_too_long"]
    assert rejects.column("detail").to_pylist() == [f"templated_tokens={lengths[1]}>{limit}"]
    assert counts.balanced() and counts.dropped == {"templated_too_long": 1}
    kept, rejects, counts, _ = cf.sft_table(pairs, tokenizer, "prompt_completion", limit, False)
    assert kept.num_rows == 2 and rejects.num_rows == 0
