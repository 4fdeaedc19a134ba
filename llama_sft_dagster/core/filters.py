"""The four row filters of the seed, as batch functions over parallel lists of strings.

Each filter takes `instructions` and `responses` (equal-length sequences: Python lists or Arrow
columns turned into lists) and returns `Decisions`: per row a drop reason (None keeps the row) and a
short detail that explains it. Counting, rejects files and the accounting identity live in
`core.accounting`, not here.

Thresholds are the seed's (see the Config classes in `llama_sft_dagster.config`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
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


def token_counts(tokenizer, texts: Sequence[str], batch_size: int = 4096) -> list[int]:
    """Token counts with special tokens (BOS), using the fast tokenizer's batch call."""
    counts: list[int] = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(list(texts[start : start + batch_size]), add_special_tokens=True)
        counts.extend(len(ids) for ids in enc["input_ids"])
    return counts


def token_limit_decisions(
    instructions: Sequence[str], responses: Sequence[str], tokenizer, max_tokens: int
) -> Decisions:
    """Seed rule: keep if len(tokenizer(instruction + " " + response).input_ids) <= max_tokens (580)."""
    _check_lengths(instructions, responses)
    texts = [f"{ins} {resp}" for ins, resp in zip(instructions, responses)]
    out = Decisions()
    for n in token_counts(tokenizer, texts):
        if n > max_tokens:
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
    out = Decisions()
    for lang in detector.detect_languages_in_parallel_of(texts):
        name = lang.name if lang is not None else "UNKNOWN"
        if name == keep_language.upper():
            out.keep()
        else:
            out.drop(f"language_{name.lower()}", f"detected={name}")
    return out


# --- parroting (Jaccard) ----------------------------------------------------------------------


def word_jaccard_similarity(instruction: str, response: str) -> float:
    """1 - nltk jaccard_distance of the lower-cased whitespace word sets (seed's measure)."""
    from nltk.metrics import jaccard_distance

    a, b = set(instruction.lower().split()), set(response.lower().split())
    if not a and not b:
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


FilterFn = Callable[[Sequence[str], Sequence[str]], Decisions]
