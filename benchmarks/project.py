"""The project's own data path, measured two ways (run through `benchmarks/data_graph.py`):

- `run_project`: what each data asset body does — `core.stages.run_stage` over Parquet with the real
  filter functions and config defaults, `NearDuplicateIndex` for dedup, the content-hash split written
  as two Parquet files — without Dagster around it;
- `run_dagster`: `dg.materialize` of the real filter, dedup and split assets on a SQLite-backed
  Dagster instance, reading the same raw_pairs Parquet and tokenizer folder from the artifact root.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from llama_sft_dagster.config.data import DedupConfig, LanguageConfig, ParrotingConfig, SplitConfig, TokenLimitConfig, WordCountConfig
from llama_sft_dagster.core.data import filters
from llama_sft_dagster.core.data.dedup import NearDuplicateIndex
from llama_sft_dagster.core.data.split import is_validation
from llama_sft_dagster.core.data.stages import columns, run_stage
from llama_sft_dagster.core.data.storage import read_parquet, write_parquet

FILTER_STAGES = ["word_count_filtered", "token_limit_filtered", "english_filtered", "parroting_filtered"]
DATA_ASSETS = FILTER_STAGES + ["deduplicated_pairs", "train_pairs", "validation_pairs"]


def run_project(root: Path, backend: str, meter) -> None:
    """`root` is an artifact root holding raw_pairs/data.parquet and base_model/model (tokenizer)."""
    from transformers import AutoTokenizer

    wc, tl, lang, par, sp = WordCountConfig(), TokenLimitConfig(), LanguageConfig(), ParrotingConfig(), SplitConfig()
    dd = DedupConfig(backend=backend)

    def stage(name: str, upstream: str, decide) -> None:
        with meter.stage(name) as rec:
            out = run_stage(name, root / upstream / "data.parquet", root / name, decide() if callable(decide) else decide)
            rec["rows_out"] = out.counts.rows_out

    stage("word_count_filtered", "raw_pairs",
          lambda: lambda b: filters.word_count_decisions(*columns(b), wc.min_instruction_words, wc.min_response_words))

    def token_decide():
        tokenizer = AutoTokenizer.from_pretrained(root / "base_model" / "model")  # timed: the asset loads it too
        return lambda b: filters.token_limit_decisions(*columns(b), tokenizer, tl.max_tokens)

    stage("token_limit_filtered", "word_count_filtered", token_decide)
    stage("english_filtered", "token_limit_filtered",
          lambda: lambda b: filters.language_decisions(*columns(b), tuple(lang.languages), lang.keep_language))
    stage("parroting_filtered", "english_filtered",
          lambda: lambda b: filters.parroting_decisions(*columns(b), par.max_jaccard_similarity))

    def dedup_decide():
        index = NearDuplicateIndex(dd.threshold, dd.num_perm, dd.shingle_size, dd.seed, dd.backend)
        return lambda b: index.add_batch(b.column("pair_id").to_pylist(), *columns(b))

    stage("deduplicated_pairs", "parroting_filtered", dedup_decide)

    with meter.stage("split") as rec:
        table = read_parquet(root / "deduplicated_pairs" / "data.parquet")
        mask = pa.array(is_validation(*columns(table), sp.validation_fraction, sp.seed))
        write_parquet(table.filter(pc.invert(mask)), root / "train_pairs" / "data.parquet")
        write_parquet(table.filter(mask), root / "validation_pairs" / "data.parquet")
        rec["rows_out"] = table.num_rows


def run_dagster(root: Path, backend: str, meter) -> None:
    import dagster as dg

    from llama_sft_dagster.definitions import all_assets, build_resources
    from llama_sft_dagster.resources.artifacts import ArtifactStore

    with meter.stage("dagster_materialize") as rec, dg.DagsterInstance.local_temp() as instance:
        result = dg.materialize(
            all_assets, selection=DATA_ASSETS, instance=instance,
            resources=build_resources() | {"artifacts": ArtifactStore(root=str(root))},
            run_config={"ops": {"deduplicated_pairs": {"config": {"backend": backend}}}},
        )
        rec["success"] = result.success
        rec["rows_out"] = sum(read_parquet(root / n / "data.parquet", columns=["pair_id"]).num_rows
                              for n in ("train_pairs", "validation_pairs"))
