"""Chat formatting: the seed's system prompt and the rows TRL's SFTTrainer trains on.

Rows are *conversational prompt/completion* (TRL 1.16 dataset format): `prompt` = [system, user]
messages, `completion` = [assistant] message. With `completion_only_loss=True` TRL tokenizes the prompt
with `add_generation_prompt=True` and the prompt+completion, and supervises only what follows the
prompt: the reply and its `<|eot_id|>`. This works with any chat template, including the stock
Llama-3.1-8B-Instruct one, which has no `{% generation %}` markers (those are needed only by
`assistant_only_loss` on `messages` rows, the other mechanism TRL offers).

Multi-turn (`context="earlier_turns"`): a dialogue pair's earlier turns (raw_pairs' `context` column) go into
the prompt between the system message and the user turn, so the sample is a multi-turn chat whose completion, and
so the loss, is that pair's reply only; with `loss_turns="all"` the replies in the prompt carry the loss too (their
spans are added to the stored completion mask, core/training/tokenized.py). The oldest turns are cut (whole turns,
never starting on a reply) until the templated sample fits `context_max_tokens`. A system message of the data
replaces the configured prompt only with `data_system_message="keep"`.

TRL removed `DataCollatorForCompletionOnlyLM`; `completion_only_loss=True` on plain `messages` rows
silently supervises every token (there is no completion mask to apply), so core/training/masking.py verifies
the labels instead of trusting the settings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

# Verbatim from the seed training script.
SYSTEM_PROMPT = (
    "You are a professional customer support assistant. Be empathetic, concise, and resolution-focused. "
    "If unable to resolve, offer to escalate to a human agent."
)


def prompt_messages(instruction: str, system_prompt: str = SYSTEM_PROMPT) -> list[dict[str, str]]:
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": instruction}]


def prompt_completion_row(instruction: str, response: str, system_prompt: str = SYSTEM_PROMPT) -> dict:
    """One training row: {"prompt": [system, user], "completion": [assistant]}."""
    return {
        "prompt": prompt_messages(instruction, system_prompt),
        "completion": [{"role": "assistant", "content": response}],
    }


def messages_row(instruction: str, response: str, system_prompt: str = SYSTEM_PROMPT) -> dict:
    """The same sample as one `messages` list (for `assistant_only_loss` with a {% generation %} template)."""
    row = prompt_completion_row(instruction, response, system_prompt)
    return {"messages": row["prompt"] + row["completion"]}


def build_rows(
    instructions: Sequence[str],
    responses: Sequence[str],
    dataset_format: str = "prompt_completion",
    system_prompt: str = SYSTEM_PROMPT,
) -> list[dict]:
    if dataset_format not in ("prompt_completion", "messages"):
        raise ValueError(f"dataset_format {dataset_format!r}: choose 'prompt_completion' or 'messages'")
    make = prompt_completion_row if dataset_format == "prompt_completion" else messages_row
    return [make(i, r, system_prompt) for i, r in zip(instructions, responses, strict=True)]


def _with_turns(row: dict, system: str, turns: list[dict]) -> dict:
    prompt = [{"role": "system", "content": system}, *turns, *row["prompt"][1:]] if "prompt" in row else None
    if prompt is not None:
        return {"prompt": prompt, "completion": row["completion"]}
    return {"messages": [{"role": "system", "content": system}, *turns, *row["messages"][1:]]}


def context_rows(
    rows: list[dict], contexts: Sequence[str | None], tokenizer, budget: int, keep_data_system: bool, system_prompt: str
) -> tuple[list[dict], dict[str, list[int]]]:
    """(`rows` with their dialogue's earlier turns in the prompt, cut from the oldest to fit `budget` tokens;
    per row: `context_turns` kept and `context_turns_cut`)."""
    import json

    plans = []  # (system message, earlier user/assistant turns) per row
    for ctx in contexts:
        earlier = json.loads(ctx) if ctx else []
        data_system = [m["content"] for m in earlier if m["role"] == "system"]
        turns = [m for m in earlier if m["role"] != "system"]
        plans.append((data_system[0] if keep_data_system and data_system else system_prompt, turns))
    out = [_with_turns(r, s, t) for r, (s, t) in zip(rows, plans, strict=True)]
    cut = [0] * len(rows)
    todo = [i for i, (_, turns) in enumerate(plans) if turns]
    while todo:
        lengths = templated_lengths(tokenizer, [out[i] for i in todo])
        todo = [i for i, n in zip(todo, lengths, strict=True) if n > budget]
        for i in todo:
            system, turns = plans[i]
            drop = 1
            while drop < len(turns) and turns[drop]["role"] != "user":
                drop += 1  # a context never starts with a reply
            cut[i] += drop
            plans[i] = (system, turns[drop:])
            out[i] = _with_turns(rows[i], system, plans[i][1])
        todo = [i for i in todo if plans[i][1]]
    return out, {"context_turns": [len(t) for _, t in plans], "context_turns_cut": cut}


def conversation(row: dict) -> list[dict[str, str]]:
    """The full conversation of a row in either format."""
    return row["messages"] if "messages" in row else list(row["prompt"]) + list(row["completion"])


def reply_text(row: dict) -> str:
    return conversation(row)[-1]["content"]


def templated_lengths(tokenizer, rows: Iterable[dict]) -> list[int]:
    """Token count of each row rendered with the tokenizer's chat template (what the trainer sees
    before truncation at `max_length`)."""
    convs = [conversation(r) for r in rows]
    if not convs:
        return []
    ids = tokenizer.apply_chat_template(convs, tokenize=True, return_dict=True)["input_ids"]
    return [len(x) for x in ids]


def sft_table(
    pairs,
    tokenizer,
    dataset_format: str,
    max_length: int,
    filter_on_templated_length: bool,
    system_prompt: str = SYSTEM_PROMPT,
    stage: str = "sft_dataset",
    assistant_only_loss: bool = False,
    context: str = "none",
    context_max_tokens: int = 512,
    data_system_message: str = "replace",
    loss_turns: str = "last",
):
    """Pair table -> (training rows table, rejects table, StageCounts, templated lengths of kept rows).

    Rows keep `pair_id` for lineage, `templated_tokens` (length with the chat template) and the token columns
    the trainer would compute (core/training/tokenized.py: `input_ids` and its loss mask), so it and the masking
    check do not tokenize again. With `filter_on_templated_length`, rows longer than `max_length` are dropped
    with reason `templated_too_long` instead of being truncated silently by the trainer."""
    import pyarrow as pa

    from llama_sft_dagster.core.data.accounting import partition
    from llama_sft_dagster.core.training.tokenized import trainer_tokens

    instructions, responses = pairs.column("instruction").to_pylist(), pairs.column("response").to_pylist()
    rows = build_rows(instructions, responses, dataset_format, system_prompt)
    per_row: dict[str, list[int]] = {}  # multi-turn figures per sample (none for single-pair samples)
    if context == "earlier_turns" and "context" in pairs.column_names:
        rows, per_row = context_rows(
            rows,
            pairs.column("context").to_pylist(),
            tokenizer,
            context_max_tokens,
            data_system_message == "keep",
            system_prompt,
        )
    tokens = trainer_tokens(tokenizer, rows, assistant_only_loss, loss_turns)
    lengths = [len(ids) for ids in tokens["input_ids"]]
    too_long = [filter_on_templated_length and n > max_length for n in lengths]
    reasons = ["templated_too_long" if t else None for t in too_long]
    details = [f"templated_tokens={n}>{max_length}" if t else None for n, t in zip(lengths, too_long)]
    _, rejects, counts = partition(pairs, reasons, stage, details)
    keep = [i for i, r in enumerate(reasons) if r is None]
    table = pa.Table.from_pylist(
        [
            {
                "pair_id": pairs.column("pair_id")[i].as_py(),
                **rows[i],
                "templated_tokens": lengths[i],
                **{k: v[i] for k, v in per_row.items()},
            }
            for i in keep
        ]
    )
    # int32 ids (vocabularies < 2**31) and int8 masks: a quarter of the default int64's bytes on disk and in memory
    for name, values in tokens.items():
        kept = [values[i] for i in keep]
        table = table.append_column(name, pa.array(kept, pa.list_(pa.int32() if name == "input_ids" else pa.int8())))
    return table, rejects, counts, [lengths[i] for i in keep]
