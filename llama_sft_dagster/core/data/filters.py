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
from pathlib import Path


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
    reasons, details = out.reasons, out.details  # appended inline: per-row method calls cost ~40% here
    # split(None, k) stops after k splits: it returns k + 1 items exactly when there are more than k words,
    # and all of them (the exact count for the drop detail) otherwise, without splitting a long response
    for ins, resp in zip(instructions, responses):
        n_ins = len(ins.split(None, min_instruction_words))
        if n_ins <= min_instruction_words:
            reasons.append("short_instruction")
            details.append(f"instruction_words={n_ins}")
            continue
        n_resp = len(resp.split(None, min_response_words))
        if n_resp <= min_response_words:
            reasons.append("short_response")
            details.append(f"response_words={n_resp}")
        else:
            reasons.append(None)
            details.append(None)
    return out


# --- token limit ------------------------------------------------------------------------------


# Tokenizer classes whose `from_pretrained` uses tokenizer.json as saved (transformers 5 rebuilds the
# post-processor only when tokenizer_config.json sets add_bos_token / add_eos_token, see
# `TokenizersBackend.__init__`), so `tokenizers.Tokenizer.from_file` gives the same ids without importing
# transformers (~1.5 s) and its wrapper (~3 s for Llama 3's 128K vocabulary on 2 cores).
PLAIN_TOKENIZER_CLASSES = {"PreTrainedTokenizerFast", "TokenizersBackend"}


@lru_cache(maxsize=4)
def _load_counting_tokenizer(folder: str, stamp: tuple):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))


def counting_tokenizer(folder: Path):
    """The tokenizer of a save_pretrained folder, for counting tokens: the `tokenizers.Tokenizer` of its
    tokenizer.json when that gives the same ids as `AutoTokenizer` (see PLAIN_TOKENIZER_CLASSES), else
    the `AutoTokenizer`. Loaded once per process and file version (size and mtime)."""
    folder = Path(folder)
    tok_json, cfg_json = folder / "tokenizer.json", folder / "tokenizer_config.json"
    cfg = json.loads(cfg_json.read_text()) if cfg_json.exists() else {}
    plain = (
        tok_json.exists()
        and cfg.get("tokenizer_class", "PreTrainedTokenizerFast") in PLAIN_TOKENIZER_CLASSES
        and "add_bos_token" not in cfg
        and "add_eos_token" not in cfg
    )
    if plain:
        st = tok_json.stat()
        tok = _load_counting_tokenizer(str(folder.resolve()), (st.st_size, st.st_mtime_ns))
        if tok.post_processor is not None:
            return tok
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def _fast_backend(tokenizer):
    """The `tokenizers.Tokenizer` to call directly (itself, or the one behind a transformers fast
    tokenizer) when it gives the same ids as `tokenizer(texts)`: no truncation or padding configured."""
    backend = tokenizer if hasattr(tokenizer, "encode_batch_fast") else getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not hasattr(backend, "encode_batch_fast"):
        return None
    if backend.truncation is not None or backend.padding is not None:
        return None
    return backend


def _is_byte_level_bpe(backend) -> bool:
    """True for byte-level BPE without a normalizer (Llama-3, GPT-2 style): every token then covers at
    least one UTF-8 byte of the input, so a text of B bytes has at most B tokens plus special tokens.
    Reads only the pre-tokenizer's JSON (serializing the whole tokenizer costs ~0.5 s for Llama 3)."""
    from tokenizers.models import BPE

    if backend.normalizer is not None or not isinstance(backend.model, BPE) or backend.pre_tokenizer is None:
        return False
    return b'"ByteLevel"' in backend.pre_tokenizer.__getstate__()


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


class TokenLimit:
    """The seed's token rule for one tokenizer, set up once per stage and applied batch by batch.

    With a byte-level BPE tokenizer, a text whose UTF-8 length plus special tokens (plus one for a
    possible prefix space) is within `max_tokens` cannot exceed it, so only longer texts are tokenized:
    same decisions, and every dropped row still gets its exact count. `counted` / `rows` say how many
    texts the bound could not settle.
    """

    def __init__(self, tokenizer, max_tokens: int):
        self.tokenizer, self.max_tokens = tokenizer, max_tokens
        backend = _fast_backend(tokenizer)
        self.byte_bound = None
        if backend is not None and _is_byte_level_bpe(backend):
            self.byte_bound = max_tokens - backend.num_special_tokens_to_add(False) - 1
        self.rows = self.counted = 0

    def decisions(self, instructions: Sequence[str], responses: Sequence[str]) -> Decisions:
        _check_lengths(instructions, responses)
        texts = [f"{ins} {resp}" for ins, resp in zip(instructions, responses)]
        if self.byte_bound is not None:
            bound = self.byte_bound
            # str.isascii() is a flag lookup in CPython: ASCII texts skip the UTF-8 encode
            to_count = [i for i, t in enumerate(texts) if (len(t) if t.isascii() else len(t.encode("utf-8"))) > bound]
        else:
            to_count = range(len(texts))
        counts = token_counts(self.tokenizer, [texts[i] for i in to_count])
        self.rows += len(texts)
        self.counted += len(counts)
        out = Decisions([None] * len(texts), [None] * len(texts))
        for i, n in zip(to_count, counts):
            if n > self.max_tokens:
                out.reasons[i], out.details[i] = "too_many_tokens", f"tokens={n}"
        return out


def token_limit_decisions(
    instructions: Sequence[str], responses: Sequence[str], tokenizer, max_tokens: int
) -> Decisions:
    """Seed rule: keep if len(tokenizer(instruction + " " + response).input_ids) <= max_tokens (580).
    One batch; stages that see many batches build one `TokenLimit` instead."""
    return TokenLimit(tokenizer, max_tokens).decisions(instructions, responses)


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
    """1 - nltk `jaccard_distance` of the lower-cased whitespace word sets (the seed's measure).

    nltk's formula, `(len(a | b) - len(a & b)) / len(a | b)`, written out: the same float operations
    (bit-identical, see tests/unit/test_perf_equivalence.py) without nltk's ~1.5 s package import."""
    a, b = set(instruction.lower().split()), set(response.lower().split())
    union = len(a | b)
    if not union:
        return 1.0  # two empty texts are identical; nltk would divide by zero
    return 1.0 - (union - len(a & b)) / union


def parroting_decisions(instructions: Sequence[str], responses: Sequence[str], max_similarity: float) -> Decisions:
    """Seed rule: drop if the response repeats the instruction: similarity >= max_similarity (0.85)."""
    _check_lengths(instructions, responses)
    out = Decisions()
    reasons, details = out.reasons, out.details
    for ins, resp in zip(instructions, responses):
        sim = word_jaccard_similarity(ins, resp)
        if sim >= max_similarity:
            reasons.append("parroting")
            details.append(f"jaccard={sim:.3f}")
        else:
            reasons.append(None)
            details.append(None)
    return out
