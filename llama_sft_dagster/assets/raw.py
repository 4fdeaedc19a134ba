"""Raw group: a faithful copy of each source (one asset per row of assets/source_table.py), then the
instruction/response pairs of all of them (`raw_pairs`)."""

import dagster as dg

from llama_sft_dagster.assets._metadata import stage_result
from llama_sft_dagster.assets.source_table import SOURCES, RawSource, with_source_resources
from llama_sft_dagster.core.data.storage import write_parquet
from llama_sft_dagster.core.versions import code_version
from llama_sft_dagster.resources.artifacts import ArtifactStore


def write_raw(source: RawSource, resource, artifacts: ArtifactStore) -> dg.MaterializeResult:
    out = artifacts.asset_dir(source.raw_asset)  # first: claims the asset before the (maybe slow) load
    table = source.load(resource)
    path = write_parquet(table, out / "data.parquet")
    return stage_result(path, extra={"source": resource.location, **source.metadata(table)})


def raw_asset(source: RawSource) -> dg.AssetsDefinition:
    def materialize(artifacts: ArtifactStore, **resources) -> dg.MaterializeResult:
        return write_raw(source, resources[source.name], artifacts)

    return dg.asset(
        name=source.raw_asset,
        group_name="raw",
        kinds={"parquet"},
        deps=[source.source_asset],
        code_version=code_version(write_raw, source.reader.load, source.metadata),
        description=source.description,
    )(with_source_resources(materialize, [source]))


def write_pairs(artifacts: ArtifactStore) -> dg.MaterializeResult:
    from llama_sft_dagster.core.data.pairs import extract_pairs
    from llama_sft_dagster.core.data.storage import read_parquet

    raw = [(s.name, s.pairs, read_parquet(artifacts.upstream(s.raw_asset, "raw_pairs"))) for s in SOURCES]
    pairs, rejects, counts = extract_pairs(raw)
    out_dir = artifacts.asset_dir("raw_pairs")
    write_parquet(rejects, out_dir / "rejects.parquet")
    path = write_parquet(pairs, out_dir / "data.parquet")
    return stage_result(path, extra=pairs_metadata(counts))


def pairs_metadata(counts: dict) -> dict:
    """Counts with their units: each source counts its own (Bitext rows, dialogue turns; a turn pair uses two)."""
    from llama_sft_dagster.core.data.pairs import source_units

    detail = "\n".join(
        [
            "| count | n |",
            "|---|---:|",
            *(f"| {k} | {v:,} |" for k, v in counts.items() if k not in ("rows_in", "rows_out")),
        ]
    )
    dropped = {k: v for k, v in counts.items() if k.startswith("dropped_") and v}
    units = source_units(counts)
    return {
        **{f"{name}_{unit}_in": counts[f"{name}_{unit}_in"] for name, (unit, _) in units.items()},
        **{f"{name}_pairs_out": counts[f"{name}_pairs_out"] for name in units},
        "pairs_out": sum(counts[f"{name}_pairs_out"] for name in units),
        "rows_and_turns_in": counts["rows_in"],
        "rows_and_turns_used": counts["rows_out"],
        **dropped,
        "accounting": dg.MetadataValue.md(detail),
    }


raw_assets = [raw_asset(s) for s in SOURCES]
raw_pairs = dg.asset(
    name="raw_pairs",
    group_name="raw",
    kinds={"parquet"},
    deps=[s.raw_asset for s in SOURCES],
    code_version=code_version(write_pairs, *(s.pairs.extract for s in SOURCES)),
    description="Instruction/response pairs of every source: a Bitext row is a pair; in a dialogue or chat, each "
    "user turn followed by an assistant (MultiWOZ: SYSTEM) turn. Provenance kept on every pair.",
)(write_pairs)
