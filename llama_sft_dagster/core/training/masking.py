"""Loss-masking verification on collated batches, and the templated-length report.

Nothing here trusts the trainer's settings: `reply_mask` finds the assistant reply in the token ids
themselves (after the LAST `<|end_header_id|>` and its blank-line tokens, through the first
`<|eot_id|>`), and `check_batch` compares it with the labels the collator produced. A label outside
the reply that is not -100 is a leak (the model learns to write the prompt); a reply token that is
-100 is a hole (the model never learns it, or never learns to stop when it is `<|eot_id|>`).
Pure logic on lists; `verify_trainer_masking` feeds it the trainer's real processed dataset and
real collator.

Padding-free batches (TRL's collator with `padding_free`, also under BFD packing) are one row of
concatenated samples with `position_ids` and no attention_mask; `split_samples` cuts that row back
into samples by their lengths and counts a boundary error wherever `position_ids` do not restart at 0
at a sample's first token and count up by one inside it (the attention kernels find the samples from
exactly these position_ids, see core/training/trainer.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

IGNORE_INDEX = -100  # transformers' "no loss here" label


@dataclass
class MaskReport:
    rows: int = 0
    positions: int = 0  # every position of every collated row, padding included
    padding: int = 0  # attention_mask == 0
    supervised: int = 0  # labels != -100
    reply_tokens: int = 0  # positions the ids say are reply (+ <|eot_id|>)
    leaked: int = 0  # supervised but outside the reply
    unsupervised_reply: int = 0  # reply tokens labelled -100
    label_mismatch: int = 0  # supervised label != input id (labels are not shifted in HF causal LMs)
    truncated_rows: int = 0  # reply cut by max_length (no <|eot_id|> left)
    text_mismatch: int = 0  # decoded supervised text != the row's reply
    boundary_errors: int = 0  # padding-free rows: position_ids do not restart at a sample's start
    template_errors: int = 0  # not exactly one BOS at the start, or the system header / prompt is not there
    pad_errors: int = 0  # the collator pads with <|eot_id|> / eos (1 at most: one collator)
    unchecked_sources: int = 0  # sources present in the split of which no sample was checked
    sources_checked: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)

    def add(self, other: MaskReport) -> None:
        for k, v in asdict(other).items():
            if k == "examples":
                self.examples.extend(v[: max(0, 5 - len(self.examples))])
            elif k == "sources_checked":
                for name, n in v.items():
                    self.sources_checked[name] = self.sources_checked.get(name, 0) + n
            else:
                setattr(self, k, getattr(self, k) + v)

    @property
    def ok(self) -> bool:
        return (
            self.rows > 0
            and self.reply_tokens > 0
            and not (
                self.leaked
                or self.unsupervised_reply
                or self.label_mismatch
                or self.text_mismatch
                or self.boundary_errors
                or self.template_errors
                or self.pad_errors
                or self.unchecked_sources
            )
        )

    def metrics(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k not in ("examples", "sources_checked")}
        out.update({f"samples_checked_{name}": n for name, n in sorted(self.sources_checked.items())})
        out["token_efficiency"] = self.supervised / self.positions if self.positions else 0.0
        out["padding_share"] = self.padding / self.positions if self.positions else 0.0
        return out


def reply_mask(
    ids: Sequence[int],
    end_header_id: int,
    eot_id: int,
    blank_ids: set[int],
    assistant_header: Sequence[int] | None = None,
) -> tuple[list[bool], bool]:
    """(mask of reply positions, truncated). `ids` are one row's non-padding tokens.

    The reply starts after the last `<|end_header_id|>` and the blank-line tokens the template puts
    after it (`blank_ids`: ids that decode to whitespace only), and ends with the first `<|eot_id|>`
    after that, inclusive. No `<|eot_id|>` means max_length cut the reply: it runs to the end.
    With `assistant_header` (the ids of `<|start_header_id|>assistant<|end_header_id|>`: loss on every
    assistant turn), a reply starts after each occurrence of it instead, each through its own `<|eot_id|>`.
    """
    mask = [False] * len(ids)
    if assistant_header:
        n = len(assistant_header)
        starts = [i + n for i in range(len(ids) - n + 1) if list(ids[i : i + n]) == list(assistant_header)]
    else:
        starts = [i + 1 for i, t in enumerate(ids) if t == end_header_id][-1:]
    truncated = False
    for start in starts:
        while start < len(ids) and ids[start] in blank_ids:
            start += 1
        end, truncated = len(ids) - 1, True
        for j in range(start, len(ids)):
            if ids[j] == eot_id:
                end, truncated = j, False
                break
        for j in range(start, end + 1):
            mask[j] = True
    return mask, truncated


def check_row(
    ids: Sequence[int],
    labels: Sequence[int],
    attention: Sequence[int] | None,
    end_header_id: int,
    eot_id: int,
    blank_ids: set[int],
    row_name: str = "row",
    assistant_header: Sequence[int] | None = None,
) -> MaskReport:
    """Compare one collated row's labels with the reply its ids contain (every reply with `assistant_header`)."""
    attention = attention if attention is not None else [1] * len(ids)
    keep = [i for i, a in enumerate(attention) if a]
    r = MaskReport(rows=1, positions=len(ids), padding=len(ids) - len(keep))
    content = [ids[i] for i in keep]
    mask, r.truncated_rows = reply_mask(content, end_header_id, eot_id, blank_ids, assistant_header)
    r.truncated_rows = int(r.truncated_rows)
    expected = {keep[i] for i, m in enumerate(mask) if m}
    r.reply_tokens = len(expected)
    for pos, label in enumerate(labels):
        if label == IGNORE_INDEX:
            if pos in expected:
                r.unsupervised_reply += 1
                _note(r, f"{row_name} position {pos}: reply token {ids[pos]} has label -100")
            continue
        r.supervised += 1
        if pos not in expected:
            r.leaked += 1
            _note(r, f"{row_name} position {pos}: token {ids[pos]} outside the reply is supervised")
        elif label != ids[pos]:
            r.label_mismatch += 1
            _note(r, f"{row_name} position {pos}: label {label} != input id {ids[pos]}")
    return r


def _note(report: MaskReport, message: str) -> None:
    if len(report.examples) < 5:
        report.examples.append(message)


def split_samples(
    ids: Sequence[int],
    labels: Sequence[int],
    position_ids: Sequence[int],
    lengths: Sequence[int],
    row_name: str = "row",
) -> tuple[list[tuple[list[int], list[int]]], MaskReport]:
    """Cut one padding-free row into its samples ((ids, labels) each, `lengths` tokens long).

    The report counts positions after the last sample as padding (a leak if supervised) and a boundary
    error for every sample whose position_ids are not 0, 1, 2, ... (samples would attend across)."""
    r = MaskReport()
    if sum(lengths) > len(ids):
        r.boundary_errors += 1
        _note(r, f"{row_name}: samples of {sum(lengths)} tokens in a row of {len(ids)}")
        return [], r
    samples, start = [], 0
    for n in lengths:
        if list(position_ids[start : start + n]) != list(range(n)):
            r.boundary_errors += 1
            _note(
                r,
                f"{row_name} position {start}: position_ids {list(position_ids[start : start + 3])}... do not "
                "restart at 0 at a sample's first token",
            )
        samples.append((list(ids[start : start + n]), list(labels[start : start + n])))
        start += n
    r.positions = r.padding = len(ids) - start
    for pos in range(start, len(ids)):
        if labels[pos] != IGNORE_INDEX:
            r.leaked += 1
            r.supervised += 1
            _note(r, f"{row_name} position {pos}: padding after the last sample is supervised")
    return samples, r


def collated_samples(batch, rows, row_name) -> tuple[list[tuple[list[int], list[int], list[int] | None]], MaskReport]:
    """(ids, labels, attention or None) per sample of a collated batch of dataset `rows`, padded or padding-free."""
    if "position_ids" not in batch or "attention_mask" in batch:
        attn = batch.get("attention_mask")
        return [
            (
                batch["input_ids"][i].tolist(),
                batch["labels"][i].tolist(),
                attn[i].tolist() if attn is not None else None,
            )
            for i in range(len(rows))
        ], MaskReport()
    # padding-free: every row's samples end to end in batch row 0; packed rows carry their samples' seq_lengths
    lengths = [n for r in rows for n in (r["seq_lengths"] if "seq_lengths" in r else [len(r["input_ids"])])]
    samples, report = split_samples(
        batch["input_ids"][0].tolist(),
        batch["labels"][0].tolist(),
        batch["position_ids"][0].tolist(),
        lengths,
        row_name,
    )
    return [(ids, labels, None) for ids, labels in samples], report


def blank_token_ids(tokenizer) -> set[int]:
    """Ids of (non-special) tokens that decode to whitespace only, e.g. the template's "\\n\\n"."""
    special = set(tokenizer.all_special_ids)
    return {
        i
        for tok, i in tokenizer.get_vocab().items()
        if i not in special and tokenizer.decode([i]).strip() == "" and tokenizer.decode([i]) != ""
    }


def sample_batches(
    n_rows: int, batch_size: int, max_batches: int, sources: Sequence[str] | None = None
) -> list[list[int]]:
    """Row indices of the batches the check collates: `max_batches` batches spread evenly over the whole
    dataset (first and last included), plus, for every source, batches spread over that source's rows,
    so a source that is rare or sits in one region (MultiWOZ after Bitext) is checked too."""
    n_batches = -(-n_rows // batch_size) if n_rows else 0
    picked = spread(range(n_batches), max_batches)
    by_source: dict[str, list[int]] = {}
    for i, name in enumerate(sources or []):
        by_source.setdefault(name, []).append(i)
    batches = [list(range(b * batch_size, min((b + 1) * batch_size, n_rows))) for b in picked]
    seen = {i for batch in batches for i in batch}
    per_source = max(1, max_batches // max(1, len(by_source)))
    for rows in by_source.values():
        chosen = spread(range(len(rows)), per_source * batch_size)
        extra = [rows[j] for j in chosen if rows[j] not in seen]  # each row checked once
        batches += [extra[k : k + batch_size] for k in range(0, len(extra), batch_size)]
    return batches


def spread(items: range, k: int) -> list[int]:  # also picks train_adapter's eval subset
    """k items of `items` evenly spaced, first and last included (all of them when k >= len)."""
    n = len(items)
    if k >= n:
        return list(items)
    if k <= 1:
        return [items[0]] if k == 1 else []
    return sorted({items[round(j * (n - 1) / (k - 1))] for j in range(k)})


def format_options(fmt: dict) -> dict:
    """verify_trainer_masking's keywords for an sft_dataset written with format `fmt` (its config, as saved): the
    system prompt each header must hold, or the data's own (`data_system_message="keep"`), and which replies carry
    the loss. The masking check and train_adapter's pre-training check both read it here, so they cannot differ."""
    return {
        "system_prompt": fmt.get("system_prompt"),
        "data_system_message": fmt.get("data_system_message") == "keep",
        "every_reply": fmt.get("loss_turns") == "all",
    }


def supervised_text(row: dict, every_reply: bool = False) -> str:
    """The text a row's labels must decode to: its last reply, or every assistant turn, each with `<|eot_id|>`."""
    from llama_sft_dagster.core.training.chat_format import conversation

    replies = [m["content"] for m in conversation(row) if m["role"] == "assistant"]
    return "".join(r.strip() + "<|eot_id|>" for r in (replies if every_reply else replies[-1:]))


def verify_trainer_masking(
    trainer,
    max_batches: int = 8,
    split: str = "train",
    sources: Sequence[str] | None = None,
    system_prompt: str | None = None,
    data_system_message: bool = False,
    every_reply: bool = False,
) -> MaskReport:
    """Collate batches spread over the trainer's processed dataset (and over every source, `sources` giving
    each dataset row's source) with the trainer's own collator and check every row: labels, the decoded
    supervised text against the row's reply, one BOS, the system header (core/training/template_check.py),
    and a pad token that is not the end-of-turn token. Multi-turn samples (earlier turns in the prompt) are
    checked the same way: only the last reply is supervised, or, with `every_reply` (loss_turns="all"), every
    assistant turn and nothing else. With `data_system_message` the system header must hold each row's own system
    message (kept from the data) instead of `system_prompt`."""
    from llama_sft_dagster.core.training.chat_format import conversation
    from llama_sft_dagster.core.training.template_check import pad_problem, template_problems

    tok = trainer.processing_class
    dataset = trainer.train_dataset if split == "train" else trainer.eval_dataset
    bs = trainer.args.per_device_train_batch_size if split == "train" else trainer.args.per_device_eval_batch_size
    end_header, eot = tok.convert_tokens_to_ids("<|end_header_id|>"), tok.convert_tokens_to_ids("<|eot_id|>")
    blanks = blank_token_ids(tok)
    header = tok.encode("<|start_header_id|>assistant<|end_header_id|>", add_special_tokens=False)
    has_text = "completion" in dataset.column_names or "messages" in dataset.column_names
    report = MaskReport()
    problem = pad_problem(tok, getattr(trainer.data_collator, "pad_token_id", tok.pad_token_id))
    if problem:
        report.pad_errors += 1
        _note(report, problem)
    if sources is not None and len(sources) != len(dataset):
        raise ValueError(f"{len(sources)} sources for {len(dataset)} {split} rows")
    for b, indices in enumerate(sample_batches(len(dataset), bs, max_batches, sources)):
        rows = dataset.select(indices)
        keys = [k for k in ("input_ids", "labels", "seq_lengths") if k in dataset.column_names]
        batch = trainer.data_collator([{k: r[k] for k in keys} for r in rows])
        samples, boundaries = collated_samples(batch, rows, f"{split} batch {b}")
        report.add(boundaries)
        for i, (ids, labels, attn) in enumerate(samples):
            name = f"{split} row {indices[i]}" if i < len(indices) else f"{split} batch {b} sample {i}"
            part = check_row(ids, labels, attn, end_header, eot, blanks, name, header if every_reply else None)
            if has_text and not part.truncated_rows:
                # no clean-up: it would join MultiWOZ's "train ." into "train." and report a false mismatch
                got = tok.decode([t for t in labels if t != IGNORE_INDEX], clean_up_tokenization_spaces=False)
                if got != supervised_text(rows[i], every_reply):
                    part.text_mismatch += 1
                    _note(part, f"{name}: supervised text {got[:80]!r} != reply")
            expected_system = system_prompt
            if data_system_message and has_text and i < len(indices):
                expected_system = conversation(rows[i])[0]["content"]
            if expected_system is not None:
                content = [t for t, a in zip(ids, attn or [1] * len(ids), strict=True) if a]
                for message in template_problems(tok, content, expected_system):
                    part.template_errors += 1
                    _note(part, f"{name}: {message}")
            if sources is not None and i < len(indices):
                report.sources_checked[sources[indices[i]]] = report.sources_checked.get(sources[indices[i]], 0) + 1
            report.add(part)
    missing = sorted(set(sources or []) - set(report.sources_checked))
    if missing:
        report.unchecked_sources += len(missing)
        _note(report, f"{split}: no sample of source(s) {missing} was checked")
    return report


def length_report(lengths: Sequence[int], max_length: int) -> dict:
    """How many templated samples exceed `max_length` (the trainer would cut them silently)."""
    import numpy as np

    if not lengths:
        return {"samples": 0, "over_max_length": 0, "max_length": max_length}
    arr = np.asarray(lengths)
    return {
        "samples": int(arr.size),
        "over_max_length": int((arr > max_length).sum()),
        "max_length": max_length,
        "templated_tokens_max": int(arr.max()),
        "templated_tokens_p50": float(np.percentile(arr, 50)),
        "templated_tokens_p95": float(np.percentile(arr, 95)),
    }
