"""The data chain, declared once: raw_pairs -> the seed's four filters -> near-duplicate removal.

Everything that needs the order of the row-dropping stages derives it from `DATA_STAGES`: the filter
and dedup assets (assets/filters.py), their accounting checks (assets/checks.py), the empty-split
message, the benchmarks (benchmarks/project.py) and the tests. Each stage names its upstream, its typed
config, and how to build its per-batch decision function from that config; descriptions are rendered
from the config defaults, so a changed default cannot leave a stale number in the UI.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pyarrow as pa

from llama_sft_dagster.config.data import (
    DedupConfig,
    LanguageConfig,
    ParrotingConfig,
    TokenLimitConfig,
    WordCountConfig,
)
from llama_sft_dagster.core.data import filters
from llama_sft_dagster.core.data.dedup import NearDuplicateIndex
from llama_sft_dagster.core.data.filters import Decisions
from llama_sft_dagster.core.data.stages import columns

Decide = Callable[[pa.Table], Decisions]

FIRST_INPUT = "raw_pairs"  # the chain's input: every instruction/response pair with provenance


def word_count_decide(config: WordCountConfig, tokenizer_dir: Path) -> Decide:
    return lambda batch: filters.word_count_decisions(
        *columns(batch), config.min_instruction_words, config.min_response_words
    )


def token_limit_decide(config: TokenLimitConfig, tokenizer_dir: Path) -> Decide:
    # the base model's own tokenizer, as the seed; plain `tokenizers` where that gives the same ids
    limit = filters.TokenLimit(filters.counting_tokenizer(tokenizer_dir), config.max_tokens)

    def decide(batch: pa.Table) -> Decisions:
        return limit.decisions(*columns(batch))

    # how many texts the byte-length bound could not settle (those were tokenized), for the metadata
    decide.extra_metadata = lambda: {"texts_tokenized": limit.counted}
    return decide


def language_decide(config: LanguageConfig, tokenizer_dir: Path) -> Decide:
    return lambda batch: filters.language_decisions(*columns(batch), tuple(config.languages), config.keep_language)


def parroting_decide(config: ParrotingConfig, tokenizer_dir: Path) -> Decide:
    return lambda batch: filters.parroting_decisions(*columns(batch), config.max_jaccard_similarity)


def dedup_decide(config: DedupConfig, tokenizer_dir: Path) -> Decide:
    index = NearDuplicateIndex(config.threshold, config.num_perm, config.shingle_size, config.seed, config.backend)
    return lambda batch: index.add_batch(batch.column("pair_id").to_pylist(), *columns(batch))


@dataclass(frozen=True)
class DataStage:
    name: str  # the asset: noun for the data it holds
    upstream: str
    config: type[dg.Config]
    decide: Callable[[dg.Config, Path], Decide]  # (config, base tokenizer folder) -> per-batch decisions
    description: str  # format string over the config's fields
    group: str = "filters"
    needs_tokenizer: bool = False  # the token filter counts with the base model's tokenizer (base_tokenizer)

    def describe(self, config: dg.Config | None = None) -> str:
        return self.description.format(**(config or self.config()).model_dump())


def _chain(*stages: tuple) -> tuple[DataStage, ...]:
    """Link each stage to the one before it, so the order is written once."""
    out, upstream = [], FIRST_INPUT
    for name, config, decide, description, extra in stages:
        out.append(DataStage(name, upstream, config, decide, description, **extra))
        upstream = name
    return tuple(out)


DATA_STAGES = _chain(
    (
        "word_count_filtered",
        WordCountConfig,
        word_count_decide,
        "Keeps pairs whose instruction has more than {min_instruction_words} and whose response has more than "
        "{min_response_words} whitespace words (defaults: the seed's >4 / >5).",
        {},
    ),
    (
        "token_limit_filtered",
        TokenLimitConfig,
        token_limit_decide,
        "Keeps pairs of at most {max_tokens} tokens (instruction + ' ' + response, with BOS) under the base model's "
        "tokenizer (default: the seed's 580).",
        {"needs_tokenizer": True},
    ),
    (
        "english_filtered",
        LanguageConfig,
        language_decide,
        "Keeps pairs lingua detects as {keep_language} among {languages}, newlines removed (default: the seed's).",
        {},
    ),
    (
        "parroting_filtered",
        ParrotingConfig,
        parroting_decide,
        "Drops pairs whose response parrots the instruction: word-set Jaccard similarity >= {max_jaccard_similarity} "
        "(default: the seed's 0.85).",
        {},
    ),
    (
        "deduplicated_pairs",
        DedupConfig,
        dedup_decide,
        "Drops near-duplicates ({backend} MinHashLSH, Jaccard threshold {threshold}, {num_perm} permutations, word "
        "{shingle_size}-grams), keeping the first of each cluster in input order (defaults: the seed's 0.8 / 128).",
        {"group": "dedup_split"},
    ),
)
STAGE_NAMES = [s.name for s in DATA_STAGES]
LAST_STAGE = DATA_STAGES[-1].name  # the split reads this one
