"""Seed-faithful baseline: the seed's data code as written, on the benchmark corpus.

The seed builds one in-memory `datasets.Dataset.from_list` of {instruction, response} dicts (no other
columns, no on-disk cache) and runs one `Dataset.filter` per stage with a per-row predicate:
`len(text.split())` word counts, `len(tokenizer(instruction + " " + response).input_ids) <= 580` with
the base model's tokenizer loaded through `transformers.AutoTokenizer`, one lingua `detect_language_of`
per row on the newline-stripped text, nltk `jaccard_distance` of the lower-cased word sets, and per row
one datasketch `MinHash` built, `MinHashLSH.query`'d and then `insert`ed. Then `train_test_split`.

The MinHash shingles are the project's (word 5-grams of instruction + " " + response, lower-cased) with
datasketch's default hash family and seed, so its kept set is comparable row for row. Thresholds come
from the project's config defaults, which are the seed's values.

Run through `benchmarks/data_graph.py`. Each stage's kept rows (instruction, response) are written to
`<out>/<stage>.parquet` after the stage's clock stops, for the agreement check.
"""

from __future__ import annotations

from itertools import count
from pathlib import Path

import pyarrow.parquet as pq

from llama_sft_dagster.config.data import (
    DedupConfig,
    LanguageConfig,
    ParrotingConfig,
    SplitConfig,
    TokenLimitConfig,
    WordCountConfig,
)
from llama_sft_dagster.core.data.dedup import word_shingles


def run_baseline(raw: Path, tokenizer_dir: Path, out: Path, meter) -> None:
    import datasets
    from datasketch import MinHash, MinHashLSH
    from lingua import Language, LanguageDetectorBuilder
    from nltk.metrics import jaccard_distance
    from transformers import AutoTokenizer

    datasets.disable_progress_bars()
    wc, tl, lang, par = WordCountConfig(), TokenLimitConfig(), LanguageConfig(), ParrotingConfig()
    dd, sp = DedupConfig(), SplitConfig()
    out.mkdir(parents=True, exist_ok=True)

    def save(stage: str, ds) -> None:  # outside the stage's clock: the seed keeps the dataset in memory
        ds.to_parquet(str(out / f"{stage}.parquet"))

    with meter.stage("load") as rec:
        table = pq.read_table(raw, columns=["instruction", "response"])
        # the seed's list of {instruction, response} dicts, built from the CSV/JSON sources
        ds = datasets.Dataset.from_list(table.to_pylist())
        rec["rows_out"] = len(ds)

    def stage(name: str, predicate, factory: bool = False):
        """One `Dataset.filter`; with `factory`, `predicate()` builds the predicate inside the clock."""
        nonlocal ds
        with meter.stage(name) as rec:
            ds = ds.filter(predicate() if factory else predicate)
            rec["rows_out"] = len(ds)
        save(name, ds)

    stage(
        "word_count_filtered",
        lambda x: (
            len(x["instruction"].split()) > wc.min_instruction_words
            and len(x["response"].split()) > wc.min_response_words
        ),
    )

    def token_predicate():
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)  # timed: the seed loads it too
        return lambda x: len(tokenizer(x["instruction"] + " " + x["response"]).input_ids) <= tl.max_tokens

    stage("token_limit_filtered", token_predicate, factory=True)

    def language_predicate():
        detector = LanguageDetectorBuilder.from_languages(*[getattr(Language, n) for n in lang.languages]).build()
        keep = getattr(Language, lang.keep_language)
        return lambda x: (
            detector.detect_language_of((x["instruction"] + " " + x["response"]).replace("\n", " ")) == keep
        )

    stage("english_filtered", language_predicate, factory=True)
    stage(
        "parroting_filtered",
        lambda x: (
            1 - jaccard_distance(set(x["instruction"].lower().split()), set(x["response"].lower().split()))
            < par.max_jaccard_similarity
        ),
    )

    def dedup_predicate():
        lsh, keys = MinHashLSH(threshold=dd.threshold, num_perm=dd.num_perm), count()

        def first_of_cluster(x) -> bool:
            m = MinHash(num_perm=dd.num_perm, seed=dd.seed)
            for shingle in word_shingles(x["instruction"] + " " + x["response"], dd.shingle_size):
                m.update(shingle)
            if lsh.query(m):
                return False
            lsh.insert(str(next(keys)), m)
            return True

        return first_of_cluster

    stage("deduplicated_pairs", dedup_predicate, factory=True)

    with meter.stage("split") as rec:
        parts = ds.train_test_split(test_size=sp.validation_fraction, seed=sp.seed)
        parts["train"].to_parquet(str(out / "train.parquet"))
        parts["test"].to_parquet(str(out / "validation.parquet"))
        rec["rows_out"] = len(parts["train"]) + len(parts["test"])
