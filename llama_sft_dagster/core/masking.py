"""Loss-masking verification on collated batches, and the templated-length report.

Nothing here trusts the trainer's settings: `reply_mask` finds the assistant reply in the token ids
themselves (after the LAST `<|end_header_id|>` and its blank-line tokens, through the first
`<|eot_id|>`), and `check_batch` compares it with the labels the collator produced. A label outside
the reply that is not -100 is a leak (the model learns to write the prompt); a reply token that is
-100 is a hole (the model never learns it, or never learns to stop when it is `<|eot_id|>`).
Pure logic on lists; `verify_trainer_masking` feeds it the trainer's real processed dataset and
real collator.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

IGNORE_INDEX = -100  # transformers' "no loss here" label


@dataclass
class MaskReport:
    rows: int = 0
    positions: int = 0          # every position of every collated row, padding included
    padding: int = 0            # attention_mask == 0
    supervised: int = 0         # labels != -100
    reply_tokens: int = 0       # positions the ids say are reply (+ <|eot_id|>)
    leaked: int = 0             # supervised but outside the reply
    unsupervised_reply: int = 0 # reply tokens labelled -100
    label_mismatch: int = 0     # supervised label != input id (labels are not shifted in HF causal LMs)
    truncated_rows: int = 0     # reply cut by max_length (no <|eot_id|> left)
    text_mismatch: int = 0      # decoded supervised text != the row's reply
    examples: list[str] = field(default_factory=list)

    def add(self, other: "MaskReport") -> None:
        for k, v in asdict(other).items():
            if k == "examples":
                self.examples.extend(v[: max(0, 5 - len(self.examples))])
            else:
                setattr(self, k, getattr(self, k) + v)

    @property
    def ok(self) -> bool:
        return self.rows > 0 and self.reply_tokens > 0 and not (
            self.leaked or self.unsupervised_reply or self.label_mismatch or self.text_mismatch)

    def metrics(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k != "examples"}
        out["token_efficiency"] = self.supervised / self.positions if self.positions else 0.0
        out["padding_share"] = self.padding / self.positions if self.positions else 0.0
        return out


def reply_mask(ids: Sequence[int], end_header_id: int, eot_id: int, blank_ids: set[int]) -> tuple[list[bool], bool]:
    """(mask of reply positions, truncated). `ids` are one row's non-padding tokens.

    The reply starts after the last `<|end_header_id|>` and the blank-line tokens the template puts
    after it (`blank_ids`: ids that decode to whitespace only), and ends with the first `<|eot_id|>`
    after that, inclusive. No `<|eot_id|>` means max_length cut the reply: it runs to the end.
    """
    mask = [False] * len(ids)
    headers = [i for i, t in enumerate(ids) if t == end_header_id]
    if not headers:
        return mask, False
    start = headers[-1] + 1
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


def check_row(ids: Sequence[int], labels: Sequence[int], attention: Sequence[int] | None, end_header_id: int,
              eot_id: int, blank_ids: set[int], row_name: str = "row") -> MaskReport:
    """Compare one collated row's labels with the reply its ids contain."""
    attention = attention if attention is not None else [1] * len(ids)
    keep = [i for i, a in enumerate(attention) if a]
    r = MaskReport(rows=1, positions=len(ids), padding=len(ids) - len(keep))
    content = [ids[i] for i in keep]
    mask, r.truncated_rows = reply_mask(content, end_header_id, eot_id, blank_ids)
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


def blank_token_ids(tokenizer) -> set[int]:
    """Ids of (non-special) tokens that decode to whitespace only, e.g. the template's "\\n\\n"."""
    special = set(tokenizer.all_special_ids)
    return {i for tok, i in tokenizer.get_vocab().items()
            if i not in special and tokenizer.decode([i]).strip() == "" and tokenizer.decode([i]) != ""}


def verify_trainer_masking(trainer, max_batches: int = 8, split: str = "train") -> MaskReport:
    """Collate the first `max_batches` batches of the trainer's processed dataset with its own collator
    and check every row; also compare the decoded supervised text with each row's reply."""
    from llama_sft_dagster.core.chat_format import reply_text

    tok = trainer.processing_class
    dataset = trainer.train_dataset if split == "train" else trainer.eval_dataset
    bs = trainer.args.per_device_train_batch_size if split == "train" else trainer.args.per_device_eval_batch_size
    end_header, eot = tok.convert_tokens_to_ids("<|end_header_id|>"), tok.convert_tokens_to_ids("<|eot_id|>")
    blanks = blank_token_ids(tok)
    has_text = "completion" in dataset.column_names or "messages" in dataset.column_names
    report = MaskReport()
    for b in range(min(max_batches, -(-len(dataset) // bs))):
        rows = dataset.select(range(b * bs, min((b + 1) * bs, len(dataset))))
        batch = trainer.data_collator([{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows])
        attn = batch.get("attention_mask")
        for i, row in enumerate(rows):
            ids, labels = batch["input_ids"][i].tolist(), batch["labels"][i].tolist()
            part = check_row(ids, labels, attn[i].tolist() if attn is not None else None, end_header, eot, blanks,
                             row_name=f"{split} row {b * bs + i}")
            if has_text and not part.truncated_rows:
                got = tok.decode([t for t in labels if t != IGNORE_INDEX])
                if got != reply_text(row).strip() + "<|eot_id|>":
                    part.text_mismatch += 1
                    _note(part, f"{split} row {b * bs + i}: supervised text {got[:80]!r} != reply")
            report.add(part)
    return report


def length_report(lengths: Sequence[int], max_length: int) -> dict:
    """How many templated samples exceed `max_length` (the trainer would cut them silently)."""
    import numpy as np

    if not lengths:
        return {"samples": 0, "over_max_length": 0, "max_length": max_length}
    arr = np.asarray(lengths)
    return {"samples": int(arr.size), "over_max_length": int((arr > max_length).sum()), "max_length": max_length,
            "templated_tokens_max": int(arr.max()), "templated_tokens_p50": float(np.percentile(arr, 50)),
            "templated_tokens_p95": float(np.percentile(arr, 95))}
