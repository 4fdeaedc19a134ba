"""Base vs tuned on one evaluation set: the rows (validation split + held-out MultiWOZ dialogues), their
scores under both models, and the fixed generation samples. Used by adapter_evaluation (and, for the
champion comparison, `score_model` alone).

An evaluation row: {"pair_id", "set" ("validation" | "held_out"), "source", "intent", "category",
"prompt", "completion"} (or "messages" instead of prompt/completion, as sft_dataset wrote it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import pyarrow as pa

from llama_sft_dagster.core.data.pairs import PairExtractor
from llama_sft_dagster.core.training.chat_format import conversation, prompt_completion_row

GROUP_COLUMNS = ("source", "intent", "category")


def validation_rows(sft_rows: Sequence[Mapping], pairs: pa.Table) -> list[dict]:
    """sft_dataset's validation rows with their pair's source/intent/category (joined on pair_id)."""
    info = {r["pair_id"]: r for r in pairs.select(["pair_id", *GROUP_COLUMNS]).to_pylist()}
    missing = [r["pair_id"] for r in sft_rows if r["pair_id"] not in info]
    if missing:
        raise ValueError(
            f"{len(missing)} sft_dataset validation rows have no pair in validation_pairs "
            f"(first: {missing[0]!r}); rebuild sft_dataset"
        )
    return [{**{c: info[r["pair_id"]][c] for c in GROUP_COLUMNS}, **r, "set": "validation"} for r in sft_rows]


def held_out_rows(
    turns: pa.Table, max_pairs: int, system_prompt: str, source: tuple[str, PairExtractor]
) -> tuple[list[dict], dict]:
    """Pairs of held-out dialogue turns of `source` (name, its extractor: the training corpus's pairing rule),
    at most `max_pairs` of them chosen by a hash of pair_id (stable across runs); returns (rows, counts)."""
    from llama_sft_dagster.core.data.pairs import extract_pairs

    name, extractor = source
    pairs, _, counts = extract_pairs([(name, extractor, turns)])
    rows = sorted(pairs.to_pylist(), key=lambda r: hashlib.sha256(r["pair_id"].encode()).hexdigest())
    kept = rows[:max_pairs]
    out = [
        {
            "pair_id": r["pair_id"],
            "set": "held_out",
            **{c: r[c] for c in GROUP_COLUMNS},
            **prompt_completion_row(r["instruction"], r["response"], system_prompt),
        }
        for r in kept
    ]
    return out, {
        "held_out_turns": counts["rows_in"],
        "held_out_pairs": pairs.num_rows,
        "held_out_pairs_evaluated": len(out),
    }


def score_model(model_dir, plan, rows: Sequence[Mapping], *, max_length: int, batch_size: int) -> list[dict]:
    """Per-row reply-token scores of one model (loaded, scored, released)."""
    from llama_sft_dagster.core.evaluation.scoring import load_model, score_rows

    model, tokenizer = load_model(model_dir, plan)
    try:
        return score_rows(model, tokenizer, rows, max_length=max_length, batch_size=batch_size)
    finally:
        del model


def replies(model_dir, plan, prompts: Sequence[list[dict]], *, max_new_tokens: int, batch_size: int) -> list[str]:
    from llama_sft_dagster.core.evaluation.scoring import generate_replies, load_model

    model, tokenizer = load_model(model_dir, plan)
    try:
        return generate_replies(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    finally:
        del model


def base_vs_tuned(
    base_dir,
    tuned_dir,
    plan,
    rows: Sequence[Mapping],
    sample_idx: Sequence[int],
    *,
    max_length: int,
    batch_size: int,
    max_new_tokens: int,
) -> tuple[list[dict], list[dict]]:
    """(scored rows with base_/tuned_ nll, tokens, correct; generation samples) of both models."""
    from llama_sft_dagster.core.evaluation.samples import sample_group

    prompts = [conversation(rows[i])[:-1] for i in sample_idx]
    scored, generated = {}, {}
    for name, folder in (("base", base_dir), ("tuned", tuned_dir)):
        scored[name] = score_model(folder, plan, rows, max_length=max_length, batch_size=batch_size)
        generated[name] = replies(folder, plan, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    table = [
        {
            "pair_id": r["pair_id"],
            "set": r["set"],
            **{c: r[c] for c in GROUP_COLUMNS},
            **{f"{m}_{k}": scored[m][i][k] for m in scored for k in ("nll", "tokens", "correct")},
        }
        for i, r in enumerate(rows)
    ]
    samples = [
        {
            "pair_id": rows[i]["pair_id"],
            "set": rows[i]["set"],
            "group": sample_group(rows[i]),
            "prompt": prompts[n][-1]["content"],
            "reference": conversation(rows[i])[-1]["content"],
            "base_reply": generated["base"][n],
            "tuned_reply": generated["tuned"][n],
        }
        for n, i in enumerate(sample_idx)
    ]
    return table, samples


def model_scores(table: Sequence[Mapping], model: str) -> list[dict]:
    """The scored-row view metrics.aggregate reads, for one model ("base" or "tuned") of a base_vs_tuned table."""
    return [
        {
            "set": r["set"],
            **{c: r[c] for c in GROUP_COLUMNS},
            **{k: r[f"{model}_{k}"] for k in ("nll", "tokens", "correct")},
        }
        for r in table
    ]


def score_adapter(
    base_dir, adapter_dir, plan, rows: Sequence[Mapping], *, max_length: int, batch_size: int
) -> list[dict]:
    """Per-row scores of base + adapter (merged in memory, as merged_model would write it)."""
    from peft import PeftModel

    from llama_sft_dagster.core.evaluation.scoring import load_model, score_rows

    base, tokenizer = load_model(base_dir, plan)
    model = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload().eval()
    return score_rows(model, tokenizer, rows, max_length=max_length, batch_size=batch_size)
