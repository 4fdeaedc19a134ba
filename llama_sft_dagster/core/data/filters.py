"""The four row filters of the seed, as batch functions over parallel lists of strings.

Each filter takes `instructions` and `responses` (equal-length sequences: Python lists or Arrow
columns turned into lists) and returns `Decisions`: per row a drop reason (None keeps the row) and a
short detail that explains it. Counting, rejects files and the accounting identity live in
`core.accounting`, not here.

Thresholds are the seed's (see the Config classes in `llama_sft_dagster.config.data`).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache


@dataclass
class Decisions:
    reasons: list[str | None] = field(default_factory=list)
    details: list[str | None] = field(default_factory=list)

    def keep(self, detail: str | None = None) -> None:
        self.reasons.append(None)
        self.details.append(detail)

    def drop(self, reason: str, detail: str | None = None) -> None:
        self.reasons.append(reason)
        self.details.append(detail)


def _check_lengths(instructions: Sequence[str], responses: Sequence[str]) -> None:
    if len(instructions) != len(responses):
        raise ValueError(f"{len(instructions)} instructions but {len(responses)} responses")


# --- word count -------------------------------------------------------------------------------


def word_count_decisions(
    instructions: Sequence[str], responses: Sequence[str], min_instruction_words: int, min_response_words: int
) -> Decisions:
    """Seed rule: keep if the instruction has MORE than `min_instruction_words` whitespace words and
    the response MORE than `min_response_words` (seed: >4 and >5)."""
    _check_lengths(instructions, responses)
    out = Decisions()
    for ins, resp in zip(instructions, responses):
        n_ins, n_resp = len(ins.split()), len(resp.split())
        if n_ins <= min_instruction_words:
            out.drop("short_instruction", f"instruction_words={n_ins}")
        elif n_resp <= min_response_words:
            out.drop("short_response", f"response_words={n_resp}")
        else:
            out.keep()
    return out


# --- token limit ------------------------------------------------------------------------------


def _fast_backend(tokenizer):
    """The `tokenizers.Tokenizer` behind a transformers fast tokenizer, when calling it directly gives
    the same ids as `tokenizer(texts)`: no truncation or padding configured on the backend."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not hasattr(backend, "encode_batch_fast"):
        return None
    if backend.truncation is not None or backend.padding is not None:
        return None
    return backend


def _is_byte_level_bpe(backend) -> bool:
    """True for byte-level BPE without a normalizer (Llama-3, GPT-2 style): every token then covers at
    least one UTF-8 byte of the input, so a text of B bytes has at most B tokens plus special tokens."""
    spec = json.loads(backend.to_str())
    return (spec.get("normalizer") is None and spec.get("model", {}).get("type") == "BPE"
            and '"ByteLevel"' in json.dumps(spec.get("pre_tokenizer")))


def token_counts(tokenizer, texts: Sequence[str], batch_size: int = 4096) -> list[int]:
    """Token counts with special tokens (BOS), using the fast tokenizer's batch call."""
    backend = _fast_backend(tokenizer)
    counts: list[int] = []
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start : start + batch_size])
        if backend is not None:  # the Rust batch call without building offsets or Python BatchEncodings
            counts.extend(len(enc) for enc in backend.encode_batch_fast(chunk, add_special_tokens=True))
        else:
            counts.extend(len(ids) for ids in tokenizer(chunk, add_special_tokens=True)["input_ids"])
    return counts


def token_limit_decisions(
    instructions: Sequence[str], responses: Sequence[str], tokenizer, max_tokens: int
) -> Decisions:
    """Seed rule: keep if len(tokenizer(instruction + " " + response).input_ids) <= max_tokens (580).

    With a byte-level BPE tokenizer, a text whose UTF-8 length plus special tokens (plus one for a
    possible prefix space) is within `max_tokens` cannot exceed it, so only longer texts are tokenized:
    same decisions, and every dropped row still gets its exact count.
    """
    _check_lengths(instructions, responses)
    texts = [f"{ins} {resp}" for ins, resp in zip(instructions, responses)]
    backend = _fast_backend(tokenizer)
    if backend is not None and _is_byte_level_bpe(backend):
        bound = max_tokens - backend.num_special_tokens_to_add(False) - 1
        to_count = [i for i, t in enumerate(texts) if len(t.encode("utf-8")) > bound]
    else:
        to_count = range(len(texts))
    counted = dict(zip(to_count, token_counts(tokenizer, [texts[i] for i in to_count])))
    out = Decisions()
    for i in range(len(texts)):
        n = counted.get(i)
        if n is not None and n > max_tokens:
            out.drop("too_many_tokens", f"tokens={n}")
        else:
            out.keep()
    return out


# --- language ---------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def language_detector(languages: tuple[str, ...]):
    """A lingua detector restricted to `languages` (upper-case lingua names, e.g. "ENGLISH")."""
    from lingua import Language, LanguageDetectorBuilder

    try:
        chosen = [getattr(Language, name.upper()) for name in languages]
    except AttributeError as exc:
        raise ValueError(f"languages: {exc.args[0]!r} is not a lingua Language name") from exc
    if len(chosen) < 2:
        raise ValueError("languages: lingua needs at least two languages to choose between")
    return LanguageDetectorBuilder.from_languages(*chosen).build()


def language_decisions(
    instructions: Sequence[str], responses: Sequence[str], languages: tuple[str, ...], keep_language: str = "ENGLISH"
) -> Decisions:
    """Seed rule: detect the language of instruction+response with newlines removed; keep ENGLISH.

    Uses lingua's multi-threaded batch call. Undetectable text (e.g. only digits) is dropped as
    `language_unknown`, as the seed's `== Language.ENGLISH` test would drop it.
    """
    _check_lengths(instructions, responses)
    detector = language_detector(tuple(languages))
    texts = [f"{ins} {resp}".replace("\n", " ") for ins, resp in zip(instructions, responses)]
    unique = list(dict.fromkeys(texts))  # lingua is deterministic: repeated texts are detected once
    detected = dict(zip(unique, detector.detect_languages_in_parallel_of(unique)))
    out = Decisions()
    for lang in (detected[t] for t in texts):
        name = lang.name if lang is not None else "UNKNOWN"
        if name == keep_language.upper():
            out.keep()
        else:
            out.drop(f"language_{name.lower()}", f"detected={name}")
    return out


# --- parroting (Jaccard) ----------------------------------------------------------------------


def word_jaccard_similarity(instruction: str, response: str) -> float:
    """1 - nltk `jaccard_distance` of the lower-cased whitespace word sets (the seed's measure)."""
    from nltk.metrics import jaccard_distance  # nltk's package import takes ~1.5 s: paid once, on first use

    a, b = set(instruction.lower().split()), set(response.lower().split())
    if not (a or b):
        return 1.0  # two empty texts are identical; nltk would divide by zero
    return 1.0 - jaccard_distance(a, b)


def parroting_decisions(instructions: Sequence[str], responses: Sequence[str], max_similarity: float) -> Decisions:
    """Seed rule: drop if the response repeats the instruction: similarity >= max_similarity (0.85)."""
    _check_lengths(instructions, responses)
    out = Decisions()
    for ins, resp in zip(instructions, responses):
        sim = word_jaccard_similarity(ins, resp)
        if sim >= max_similarity:
            out.drop("parroting", f"jaccard={sim:.3f}")
        else:
            out.keep()
    return out
