"""Typed config of the data stages, one class per stage, defaults = the seed's values.

Field names follow the libraries that use them. A run can override any field from the launchpad or
`dagster asset materialize --config`; each asset's code version folds in the defaults
(core/versions.py), so changing a default marks that stage (and, through data versions, its downstream) stale.
"""

import dagster as dg
from pydantic import Field, model_validator


class WordCountConfig(dg.Config):
    min_instruction_words: int = Field(
        4, ge=0, description="Keep if the instruction has MORE whitespace words than this (seed: >4)."
    )
    min_response_words: int = Field(
        5, ge=0, description="Keep if the response has MORE whitespace words than this (seed: >5)."
    )


class TokenLimitConfig(dg.Config):
    max_tokens: int = Field(
        580,
        gt=0,
        description="Keep if tokenizer(instruction + ' ' + response) with special tokens has at most this many "
        "tokens (seed: 580, measured with the base model's tokenizer).",
    )


class LanguageConfig(dg.Config):
    languages: list[str] = Field(
        default_factory=lambda: ["ENGLISH", "CHINESE", "FRENCH"],
        description="lingua languages the detector chooses between (seed: ENGLISH, CHINESE, FRENCH).",
    )
    keep_language: str = Field("ENGLISH", description="Rows detected as this language are kept.")

    @model_validator(mode="after")
    def _keep_is_detectable(self):
        if self.keep_language.upper() not in {x.upper() for x in self.languages}:
            raise ValueError(f"keep_language {self.keep_language!r} is not among languages {self.languages}")
        return self


class ParrotingConfig(dg.Config):
    max_jaccard_similarity: float = Field(
        0.85,
        gt=0.0,
        le=1.0,
        description="Drop if word-set Jaccard similarity of instruction and response is >= this (seed: 0.85).",
    )


class DedupConfig(dg.Config):
    threshold: float = Field(0.8, gt=0.0, le=1.0, description="MinHashLSH Jaccard threshold (seed: 0.8).")
    num_perm: int = Field(128, gt=0, description="MinHash permutations (seed: 128).")
    shingle_size: int = Field(
        5, gt=0, description="Word n-gram size of the shingles (5; see core/data/dedup.py for why words)."
    )
    seed: int = Field(1, description="MinHash hash seed (datasketch default 1).")
    backend: str = Field(
        "datasketch",
        description="MinHash implementation: 'datasketch' (reference, bit-exact with the seed) or 'rensa' "
        "(Rust, faster; same band layout, different hash family: ~0.989 kept-set agreement, see README).",
    )


class SplitConfig(dg.Config):
    validation_fraction: float = Field(0.05, gt=0.0, lt=1.0, description="Share of samples in validation (seed: 95/5).")
    seed: int = Field(42, description="Seed of the content hash that decides each sample's side.")
