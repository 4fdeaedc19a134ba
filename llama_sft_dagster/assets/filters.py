"""Filters group: the seed's four row filters, each streaming its input in batches.

Each asset writes `data.parquet` (kept) and `rejects.parquet` (dropped rows with stage, reason and
detail), and reports rows_in / rows_out / dropped_<reason>.
"""

import dagster as dg

from llama_sft_dagster.assets._metadata import stage_result
from llama_sft_dagster.assets.model_paths import load_base_tokenizer
from llama_sft_dagster.config.data import (LanguageConfig, ParrotingConfig, TokenLimitConfig, WordCountConfig,
                                      code_version_of)
from llama_sft_dagster.core.data import filters
from llama_sft_dagster.core.data.stages import columns, run_stage
from llama_sft_dagster.resources.artifacts import ArtifactStore


def _run(artifacts: ArtifactStore, stage: str, upstream: str, decide) -> dg.MaterializeResult:
    out = run_stage(stage, artifacts.upstream(upstream, stage), artifacts.asset_dir(stage), decide)
    return stage_result(out.kept_path, out.counts, {"rejects_path": dg.MetadataValue.path(str(out.rejects_path))})


@dg.asset(group_name="filters", kinds={"parquet"}, deps=["raw_pairs"], code_version=code_version_of("1", WordCountConfig),
          description="Keeps pairs whose instruction has >4 and response >5 whitespace words (seed).")
def word_count_filtered(config: WordCountConfig, artifacts: ArtifactStore) -> dg.MaterializeResult:
    def decide(batch):
        return filters.word_count_decisions(*columns(batch), config.min_instruction_words, config.min_response_words)

    return _run(artifacts, "word_count_filtered", "raw_pairs", decide)


@dg.asset(group_name="filters", kinds={"parquet"}, deps=["word_count_filtered", "base_model"],
          code_version=code_version_of("1", TokenLimitConfig),
          description="Keeps pairs of at most 580 tokens (instruction + ' ' + response, with BOS) under the base model's tokenizer (seed).")
def token_limit_filtered(config: TokenLimitConfig, artifacts: ArtifactStore) -> dg.MaterializeResult:
    tokenizer = load_base_tokenizer(artifacts)

    def decide(batch):
        return filters.token_limit_decisions(*columns(batch), tokenizer, config.max_tokens)

    return _run(artifacts, "token_limit_filtered", "word_count_filtered", decide)


@dg.asset(group_name="filters", kinds={"parquet"}, deps=["token_limit_filtered"], code_version=code_version_of("1", LanguageConfig),
          description="Keeps pairs lingua detects as English among English/Chinese/French, newlines removed (seed).")
def english_filtered(config: LanguageConfig, artifacts: ArtifactStore) -> dg.MaterializeResult:
    def decide(batch):
        return filters.language_decisions(*columns(batch), tuple(config.languages), config.keep_language)

    return _run(artifacts, "english_filtered", "token_limit_filtered", decide)


@dg.asset(group_name="filters", kinds={"parquet"}, deps=["english_filtered"], code_version=code_version_of("1", ParrotingConfig),
          description="Drops pairs whose response parrots the instruction: word-set Jaccard similarity >= 0.85 (seed).")
def parroting_filtered(config: ParrotingConfig, artifacts: ArtifactStore) -> dg.MaterializeResult:
    def decide(batch):
        return filters.parroting_decisions(*columns(batch), config.max_jaccard_similarity)

    return _run(artifacts, "parroting_filtered", "english_filtered", decide)
