"""The token ids TRL's SFTTrainer would compute, computed once (batched) by sft_dataset and stored beside the text.

TRL 1.16 treats a dataset with an `input_ids` column as already processed (`SFTTrainer._prepare_dataset`,
`is_processed`): it skips its per-row tokenization and only builds labels from `completion_mask` (with
completion_only_loss) / `assistant_masks`, truncates at max_length and packs. `trainer_tokens` reproduces its
`tokenize_fn` for our two row formats, so the masking check and every training rank reuse sft_dataset's ids
instead of tokenizing the dataset again each (tests/unit/test_tokenized.py compares with TRL's own columns):

- prompt/completion: `input_ids` = template(prompt + completion); `completion_mask` = 0 over the longest
  common prefix with template(prompt, add_generation_prompt=True), 1 after (trl.data_utils.common_prefix_length);
  with `loss_turns="all"` also 1 over each assistant turn in the prompt (a multi-turn sample's earlier replies),
  which TRL, given only prompt and completion, would not supervise: TRL builds the labels from this stored mask.
- messages: `input_ids` = template(messages); with assistant_only_loss, `assistant_masks` from the template's
  {% generation %} spans (TRL's training template when the tokenizer's own has no markers).

The labels and the collated batches still come from TRL at training time; the masking check verifies them.
"""

from __future__ import annotations

from collections.abc import Sequence

TOKEN_COLUMNS = ("input_ids", "completion_mask", "assistant_masks")  # what TRL reads from a processed dataset


class AssistantMaskError(ValueError):
    """assistant_only_loss, but a row's template output marks no assistant token (no {% generation %} span)."""


def training_chat_template(tokenizer, assistant_only_loss: bool) -> str | None:
    """The template TRL tokenizes with: its {% generation %}-marked copy when assistant_only_loss needs markers the
    tokenizer's template lacks (SFTTrainer.__init__), else None (the tokenizer's own)."""
    if not assistant_only_loss:
        return None
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    return None if has_generation_markers(tokenizer.chat_template) else get_training_chat_template(tokenizer)


def _ids(tokenizer, conversations: list, chat_template: str | None, **kwargs) -> dict:
    # one batched call through the fast tokenizer (TRL's map calls apply_chat_template once per row)
    return tokenizer.apply_chat_template(
        conversations, tokenize=True, return_dict=True, chat_template=chat_template, tools=None, **kwargs
    )


def _template_ids(tokenizer, conversations: list, chat_template: str | None, **kwargs) -> list[list[int]]:
    """apply_chat_template(..., tokenize=True)["input_ids"] of each conversation: the template's text encoded without
    added special tokens, as transformers 5 does, but by the Rust tokenizer's batch call directly (transformers'
    per-encoding conversion to Python dicts cost as much as the encoding itself)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a slow (Python) tokenizer
        return _ids(tokenizer, conversations, chat_template, **kwargs)["input_ids"]
    texts = tokenizer.apply_chat_template(
        conversations, tokenize=False, chat_template=chat_template, tools=None, **kwargs
    )
    return [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]


class TurnSpanError(ValueError):
    """loss_turns='all', but the chat template does not render an earlier turn as a prefix of the whole sample."""


def earlier_reply_spans(tokenizer, rows: Sequence[dict], full: list[list[int]], template: str | None) -> list[list]:
    """Per prompt/completion row, the [start, end) token spans of the assistant turns in its prompt (each reply and
    its <|eot_id|>): a turn starts where template(turns before it, add_generation_prompt=True) ends and ends where
    template(turns through it) ends, both prefixes of the whole sample's ids."""
    where, befores, throughs = [], [], []
    for i, row in enumerate(rows):
        prompt = list(row["prompt"])
        for k, message in enumerate(prompt):
            if message["role"] == "assistant":
                where.append((i, k))
                befores.append(prompt[:k])
                throughs.append(prompt[: k + 1])
    spans: list[list] = [[] for _ in rows]
    if not where:
        return spans
    starts = _template_ids(tokenizer, befores, template, add_generation_prompt=True)
    ends = _template_ids(tokenizer, throughs, template)
    for (i, k), before, through in zip(where, starts, ends, strict=True):
        if full[i][: len(before)] != before or full[i][: len(through)] != through:
            raise TurnSpanError(
                f"loss_turns='all': row {i}'s message {k} (assistant) is not rendered by the chat template as a "
                "prefix of the whole sample, so its tokens cannot be located; use loss_turns='last'"
            )
        spans[i].append((len(before), len(through)))
    return spans


def last_span_only(mask: list[int]) -> list[int]:
    """`mask` with only its last run of 1s kept (the last assistant turn of a {% generation %}-marked sample)."""
    end = len(mask)
    while end and not mask[end - 1]:
        end -= 1
    start = end
    while start and mask[start - 1]:
        start -= 1
    return [0] * start + [1] * (end - start) + [0] * (len(mask) - end)


def trainer_tokens(
    tokenizer, rows: Sequence[dict], assistant_only_loss: bool = False, loss_turns: str = "last"
) -> dict[str, list[list[int]]]:
    """Columns {"input_ids", "completion_mask" | "assistant_masks"} of `rows` (all prompt/completion or all
    messages), equal to what SFTTrainer would compute for them, with the loss on the last assistant turn
    (`loss_turns="last"`) or on every assistant turn of a multi-turn sample (`"all"`): for prompt/completion rows
    the completion mask also covers the replies in the prompt; for messages rows the {% generation %} mask,
    which marks every reply, keeps only the last with "last"."""
    if not rows:
        return {"input_ids": []}
    from trl.data_utils import common_prefix_length

    template = training_chat_template(tokenizer, assistant_only_loss)
    if "prompt" in rows[0]:
        full = _template_ids(tokenizer, [list(r["prompt"]) + list(r["completion"]) for r in rows], template)
        prompts = _template_ids(tokenizer, [list(r["prompt"]) for r in rows], template, add_generation_prompt=True)
        spans = earlier_reply_spans(tokenizer, rows, full, template) if loss_turns == "all" else [[] for _ in rows]
        masks = []
        for prompt, ids, earlier in zip(prompts, full, spans, strict=True):
            n = common_prefix_length(prompt, ids)
            mask = [0] * n + [1] * (len(ids) - n)
            for start, end in earlier:
                mask[start:end] = [1] * (end - start)
            masks.append(mask)
        return {"input_ids": full, "completion_mask": masks}
    out = _ids(
        tokenizer, [list(r["messages"]) for r in rows], template, return_assistant_tokens_mask=assistant_only_loss
    )
    cols = {"input_ids": [list(x) for x in out["input_ids"]]}
    if assistant_only_loss:
        masks = [list(m) for m in out["assistant_masks"]]
        cols["assistant_masks"] = masks if loss_turns == "all" else [last_span_only(m) for m in masks]
        empty = [i for i, m in enumerate(cols["assistant_masks"]) if 1 not in m]
        if empty:
            raise AssistantMaskError(
                f"assistant_only_loss=True but row {empty[0]} (and {len(empty) - 1} more) has no "
                "assistant token in the chat template's {% generation %} spans"
            )
    return cols


def sft_columns(dataset_format: str, names: Sequence[str]) -> list[str]:
    """What a trainer reads from an sft_dataset file with columns `names`: the format's text columns and the token
    columns it holds (none in a file written before them: the trainer then tokenizes the text itself)."""
    text = ["prompt", "completion"] if dataset_format == "prompt_completion" else ["messages"]
    return text + [c for c in TOKEN_COLUMNS if c in names]
