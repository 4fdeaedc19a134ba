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


CONTEXT = (
    '[{"role": "system", "content": "You are the shop bot."}, {"role": "user", "content": "Hi, my parcel is late."},'
    ' {"role": "assistant", "content": "Sorry, which order?"}, {"role": "user", "content": "Order 42, thanks."},'
    ' {"role": "assistant", "content": "It arrives tomorrow."}]'
)


def context_pairs() -> pa.Table:
    rows = [
        {"pair_id": "c:d:5", "source": "c", "instruction": "And the invoice?", "response": "In your account."},
        {"pair_id": "c:e:1", "source": "c", "instruction": "Hello there", "response": "Hi, how can I help?"},
    ]
    rows[0].update(context=CONTEXT, turn_depth=2)
    return pa.Table.from_pylist(rows, schema=PAIR_SCHEMA)


def test_default_sample_is_the_single_pair_even_with_context(tokenizer):
    kept, _, _, _ = cf.sft_table(context_pairs(), tokenizer, "prompt_completion", 4096, True)
    assert [m["role"] for m in kept.column("prompt").to_pylist()[0]] == ["system", "user"]
    assert "context_turns" not in kept.column_names


def test_earlier_turns_as_context_loss_on_the_last_reply(tokenizer):
    kept, _, _, _ = cf.sft_table(context_pairs(), tokenizer, "prompt_completion", 4096, True, context="earlier_turns")
    prompt = kept.column("prompt").to_pylist()[0]
    assert [m["role"] for m in prompt] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert prompt[0]["content"] == cf.SYSTEM_PROMPT  # the data's system message is replaced by default
    assert kept.column("completion").to_pylist()[0] == [{"role": "assistant", "content": "In your account."}]
    assert kept.column("context_turns").to_pylist() == [4, 0]
    # the completion mask supervises the last reply only: its tokens and <|eot_id|>, none of the earlier replies
    ids, mask = kept.column("input_ids").to_pylist()[0], kept.column("completion_mask").to_pylist()[0]
    supervised = tokenizer.decode([t for t, m in zip(ids, mask) if m])
    assert supervised == "In your account.<|eot_id|>"


def test_data_system_message_kept_when_asked(tokenizer):
    kept, _, _, _ = cf.sft_table(
        context_pairs(), tokenizer, "prompt_completion", 4096, True, context="earlier_turns", data_system_message="keep"
    )
    assert kept.column("prompt").to_pylist()[0][0] == {"role": "system", "content": "You are the shop bot."}


def test_context_is_cut_from_the_oldest_whole_turns_to_fit_the_budget(tokenizer):
    full, _, _, lengths = cf.sft_table(context_pairs(), tokenizer, "prompt_completion", 4096, True)
    single = lengths[0]  # the sample without context
    kept, _, _, kept_lengths = cf.sft_table(
        context_pairs(), tokenizer, "prompt_completion", 4096, True, context="earlier_turns", context_max_tokens=single
    )
    assert kept.column("context_turns").to_pylist()[0] == 0 and kept_lengths[0] == single
    assert kept.column("context_turns_cut").to_pylist()[0] == 4
    rows, per_row = cf.context_rows(
        cf.build_rows(["And the invoice?"], ["In your account."]), [CONTEXT], tokenizer, single + 25, False, "S"
    )
    turns = rows[0]["prompt"][1:-1]
    assert per_row["context_turns"][0] == len(turns) and turns and turns[0]["role"] == "user"  # never a reply first


def split_by_mask(tokenizer, ids, mask) -> tuple[str, str]:
    """(decoded supervised tokens, decoded unsupervised tokens): together they pin which tokens the mask covers."""
    return (
        tokenizer.decode([t for t, m in zip(ids, mask) if m]),
        tokenizer.decode([t for t, m in zip(ids, mask) if not m]),
    )


REPLIES = ["Sorry, which order?", "It arrives tomorrow.", "In your account."]


def without_replies(tokenizer, row) -> str:
    """The templated sample with every reply's text and <|eot_id|> taken out (what stays unsupervised)."""
    text = tokenizer.apply_chat_template(cf.conversation(row), tokenize=False)
    for reply in REPLIES:
        text = text.replace(reply + "<|eot_id|>", "", 1)
    return text


@pytest.mark.parametrize("loss_turns", ["last", "all"])
def test_loss_turns_supervise_the_last_or_every_assistant_turn(tokenizer, loss_turns):
    kept, _, _, _ = cf.sft_table(
        context_pairs(), tokenizer, "prompt_completion", 4096, True, context="earlier_turns", loss_turns=loss_turns
    )
    rows = kept.to_pylist()
    supervised, rest = split_by_mask(tokenizer, rows[0]["input_ids"], rows[0]["completion_mask"])
    if loss_turns == "all":
        assert supervised == "".join(r + "<|eot_id|>" for r in REPLIES)
        assert rest == without_replies(tokenizer, rows[0])
    else:
        assert supervised == "In your account.<|eot_id|>"
    # a sample without earlier turns has its one reply supervised either way
    assert (
        split_by_mask(tokenizer, rows[1]["input_ids"], rows[1]["completion_mask"])[0] == "Hi, how can I help?<|eot_id|>"
    )


@pytest.mark.parametrize("loss_turns", ["last", "all"])
def test_loss_turns_on_messages_rows_with_generation_markers(tokenizer, loss_turns):
    """The {% generation %} mask marks every reply; 'last' keeps only the last one."""
    kept, _, _, _ = cf.sft_table(
        context_pairs(),
        tokenizer,
        "messages",
        4096,
        True,
        assistant_only_loss=True,
        context="earlier_turns",
        loss_turns=loss_turns,
    )
    row = kept.to_pylist()[0]
    supervised, _ = split_by_mask(tokenizer, row["input_ids"], row["assistant_masks"])
    replies = REPLIES if loss_turns == "all" else REPLIES[-1:]
    assert supervised == "".join(r + "<|eot_id|>" for r in replies)


def test_loss_on_every_turn_needs_a_prefix_stable_template(tokenizer):
    """A template that renders a turn differently once more turns follow cannot locate the earlier replies."""
    from llama_sft_dagster.core.training.tokenized import TurnSpanError

    unstable = tokenizer.chat_template.replace("{{- bos_token }}", "{{- bos_token }}{{ messages | length }}")
    tokenizer = copy_with_template(tokenizer, unstable)
    with pytest.raises(TurnSpanError, match="row 0's message 2 .assistant."):
        cf.sft_table(
            context_pairs(), tokenizer, "prompt_completion", 4096, True, context="earlier_turns", loss_turns="all"
        )


def copy_with_template(tokenizer, template: str):
    import copy

    other = copy.deepcopy(tokenizer)
    other.chat_template = template
    return other


def test_loss_on_every_turn_needs_context():
    from llama_sft_dagster.config.training import SftDatasetConfig

    with pytest.raises(ValueError, match="loss_turns='all' needs context='earlier_turns'"):
        SftDatasetConfig(loss_turns="all")
    assert SftDatasetConfig(loss_turns="all", context="earlier_turns").loss_turns == "all"
