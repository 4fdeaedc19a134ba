"""Raw group: faithful copies of the sources, then USER->SYSTEM / instruction->response pairs."""

import dagster as dg

from llama_sft_dagster.assets._metadata import stage_result
from llama_sft_dagster.assets._versioned import versioned_asset
from llama_sft_dagster.core.data.storage import write_parquet
from llama_sft_dagster.core.sources.multiwoz_files import skipped_files
from llama_sft_dagster.resources.artifacts import ArtifactStore
from llama_sft_dagster.resources.data_sources import BitextSource, MultiwozSource


@versioned_asset(
    group_name="raw",
    kinds={"parquet"},
    deps=["bitext_source"],
    description="Bitext customer-support rows as published (v11 schema; 2023-08 'tags' mapped to 'flags'), "
    "with file and row index.",
)
def bitext_raw(artifacts: ArtifactStore, bitext: BitextSource) -> dg.MaterializeResult:
    out = artifacts.asset_dir("bitext_raw")  # first: claims the asset before the (maybe slow) load
    table = bitext.load()
    path = write_parquet(table, out / "data.parquet")
    return stage_result(
        path, extra={"source": bitext.location, "intents": len(set(table.column("intent").to_pylist()))}
    )


@versioned_asset(
    group_name="raw",
    kinds={"parquet"},
    deps=["multiwoz_source"],
    description="MultiWOZ 2.2 turns, one row per turn, with dialogue id, split file and turn index.",
)
def multiwoz_raw(artifacts: ArtifactStore, multiwoz: MultiwozSource) -> dg.MaterializeResult:
    out = artifacts.asset_dir("multiwoz_raw")
    table = multiwoz.load()
    path = write_parquet(table, out / "data.parquet")
    skipped = skipped_files(table)  # every file of the folder not read, with the reason
    return stage_result(
        path,
        extra={
            "source": multiwoz.location,
            "dialogues": len(set(table.column("dialogue_id").to_pylist())),
            "skipped_files": len(skipped),
            "skipped_files_list": dg.MetadataValue.json(skipped),
        },
    )


@versioned_asset(
    group_name="raw",
    kinds={"parquet"},
    deps=[bitext_raw, multiwoz_raw],
    description="Instruction/response pairs: Bitext rows pass through; every consecutive MultiWOZ USER->SYSTEM "
    "turn pair. Provenance kept on every pair.",
)
def raw_pairs(artifacts: ArtifactStore) -> dg.MaterializeResult:
    from llama_sft_dagster.core.data.pairs import extract_pairs
    from llama_sft_dagster.core.data.storage import read_parquet

    bitext = read_parquet(artifacts.upstream("bitext_raw", "raw_pairs"))
    turns = read_parquet(artifacts.upstream("multiwoz_raw", "raw_pairs"))
    pairs, rejects, counts = extract_pairs(bitext, turns)
    out_dir = artifacts.asset_dir("raw_pairs")
    write_parquet(rejects, out_dir / "rejects.parquet")
    path = write_parquet(pairs, out_dir / "data.parquet")
    return stage_result(path, extra=pairs_metadata(counts))


def pairs_metadata(counts: dict) -> dict:
    """Counts with their units: Bitext is counted in rows, MultiWOZ in turns (a pair uses two turns)."""
    detail = "\n".join(
        [
            "| count | n |",
            "|---|---:|",
            *(f"| {k} | {v:,} |" for k, v in counts.items() if k not in ("rows_in", "rows_out")),
        ]
    )
    dropped = {k: v for k, v in counts.items() if k.startswith("dropped_") and v}
    return {
        "bitext_rows_in": counts["bitext_rows_in"],
        "multiwoz_turns_in": counts["multiwoz_turns_in"],
        "pairs_out": counts["bitext_pairs_out"] + counts["multiwoz_pairs_out"],
        "rows_and_turns_in": counts["rows_in"],
        "rows_and_turns_used": counts["rows_out"],
        **dropped,
        "accounting": dg.MetadataValue.md(detail),
    }
