"""Raw sources as observable source assets: their data version is the source's content or revision.

One per row of the sources table (assets/source_table.py), named `<name>_source`. Observing them
(`sft-materialize-stale` does it first; the `raw_data_sensor` does it on an interval; the UI's "Observe
sources") records a new version when the upstream data changed, which makes `<name>_raw` stale, and
through content data versions everything below it.
"""

import warnings

import dagster as dg

from llama_sft_dagster.assets.source_table import SOURCES, RawSource, with_source_resources

# observable_source_asset is marked beta in 1.13 but is the documented way to version a source
warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*observable_source_asset.*")


def source_versions(sources: list[RawSource] | tuple[RawSource, ...], resources: dict) -> dict[str, str]:
    """{source asset name: current version} of `sources`, each from its resource in `resources`."""
    return {s.source_asset: s.version(resources[s.name]) for s in sources}


def source_asset(source: RawSource) -> dg.SourceAsset:
    def observe(**resources) -> dg.DataVersion:
        return dg.DataVersion(source.version(resources[source.name]))

    observe.__name__ = source.source_asset
    return dg.observable_source_asset(name=source.source_asset, description=source.source_description)(
        with_source_resources(observe, [source])
    )


raw_sources = [source_asset(s) for s in SOURCES]
