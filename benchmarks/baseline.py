"""Seed-faithful baseline: the seed's filter functions, applied the way the seed applies them.

One `datasets.Dataset.filter` per stage with a per-row predicate (no batching), one lingua call per
row, one datasketch MinHash built per row and queried, then inserted, against a `MinHashLSH`.
The MinHash shingles are the project's (word 5-grams of instruction + " " + response, lower-cased)
with datasketch's default hash family and seed, so its kept set is comparable row for row.
Thresholds come from the project's config defaults, which are the seed's values.

Run through `benchmarks/data_graph.py`; writes each stage's kept pair_ids to `<out>/<stage>.parquet`.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from llama_sft_dagster.config.data import DedupConfig, LanguageConfig, ParrotingConfig, SplitConfig, TokenLimitConfig, WordCountConfig
from llama_sft_dagster.core.data.dedup import word_shingles


def run_baseline(raw: Path, tokenizer_dir: Path, out: Path, meter) -> None:
    import datasets
    from datasketch import MinHash, MinHashLSH
    from lingua import Language, LanguageDetectorBuilder
    from nltk.metrics import jaccard_distance
    from transformers import AutoTokenizer

    datasets.disable_progress_bars()
    wc, tl, lang, par, dd, sp = WordCountConfig(), TokenLimitConfig(), LanguageConfig(), ParrotingConfig(), DedupConfig(), SplitConfig()
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "hf_cache"

    def save(stage: str, ds, record: dict) -> None:
        record["rows_out"] = len(ds)
        pq.write_table(pa.table({"pair_id": ds["pair_id"]}), out / f"{stage}.parquet")

    with meter.stage("load") as rec:
        ds = datasets.Dataset.from_parquet(str(raw), cache_dir=str(cache))
        rec["rows_out"] = len(ds)

    with meter.stage("word_count_filtered") as rec:
        ds = ds.filter(lambda x: len(x["instruction"].split()) > wc.min_instruction_words
                       and len(x["response"].split()) > wc.min_response_words)
        save("word_count_filtered", ds, rec)

    with meter.stage("token_limit_filtered") as rec:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        ds = ds.filter(lambda x: len(tokenizer(x["instruction"] + " " + x["response"]).input_ids) <= tl.max_tokens)
        save("token_limit_filtered", ds, rec)

    with meter.stage("english_filtered") as rec:
        detector = LanguageDetectorBuilder.from_languages(*[getattr(Language, n) for n in lang.languages]).build()
        keep = getattr(Language, lang.keep_language)
        ds = ds.filter(lambda x: detector.detect_language_of((x["instruction"] + " " + x["response"]).replace("\n", " ")) == keep)
        save("english_filtered", ds, rec)

    with meter.stage("parroting_filtered") as rec:
        ds = ds.filter(lambda x: 1 - jaccard_distance(set(x["instruction"].lower().split()), set(x["response"].lower().split()))
                       < par.max_jaccard_similarity)
        save("parroting_filtered", ds, rec)

    with meter.stage("deduplicated_pairs") as rec:
        lsh = MinHashLSH(threshold=dd.threshold, num_perm=dd.num_perm)

        def first_of_cluster(x) -> bool:
            m = MinHash(num_perm=dd.num_perm, seed=dd.seed)
            for shingle in word_shingles(x["instruction"] + " " + x["response"], dd.shingle_size):
                m.update(shingle)
            if lsh.query(m):
                return False
            lsh.insert(x["pair_id"], m)
            return True

        ds = ds.filter(first_of_cluster)
        save("deduplicated_pairs", ds, rec)

    with meter.stage("split") as rec:
        parts = ds.train_test_split(test_size=sp.validation_fraction, seed=sp.seed)
        parts["train"].to_parquet(str(out / "train.parquet"))
        parts["test"].to_parquet(str(out / "validation.parquet"))
        rec["rows_out"] = len(parts["train"]) + len(parts["test"])
