"""Raw sources as observable source assets: their data version is the source's content or revision.

Observing them (`sft-materialize-stale` does it first; the `raw_data_sensor` does it on an interval;
the UI's "Observe sources") records a new version when the upstream data changed, which makes
`bitext_raw` / `multiwoz_raw` stale, and through content data versions everything below them.
"""

import warnings
from pathlib import Path

import dagster as dg

from llama_sft_dagster.config.profiles import state_dir
from llama_sft_dagster.core.sources import versions as source_versions
from llama_sft_dagster.resources.data_sources import BitextSource, MultiwozSource

# observable_source_asset is marked beta in 1.13 but is the documented way to version a source
warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*observable_source_asset.*")


def hub_revision_cache() -> Path:  # follows SFT_STATE_DIR, so tests and checkouts keep their own
    return state_dir() / "cache" / "hub_revisions.json"


def bitext_version(bitext: BitextSource) -> str:
    location = bitext.location
    if location == "none":
        return "none"
    if location == "demo":
        return f"demo:{source_versions.demo_version(bitext.demo_seed)}"
    if location.startswith("hf://"):
        dataset_id = location[len("hf://") :]
        sha = source_versions.cached_hub_revision(
            dataset_id, bitext.revision, bitext.hf_token, bitext.revision_check_interval_s, hub_revision_cache()
        )
        return f"hub:{sha}"
    return f"file:{source_versions.local_version(location)}"


def multiwoz_version(multiwoz: MultiwozSource) -> str:
    location = multiwoz.location
    if location == "none":
        return "none"
    if location == "demo":
        return f"demo:{source_versions.demo_version(multiwoz.demo_seed)}"
    # the splits read are part of the version: reading dev too is new raw data
    splits = ",".join(multiwoz.splits)
    if location == "archive":
        return f"archive:{multiwoz.archive_url}:{splits}"  # the URL pins a commit: a new commit is a new URL
    return f"file:{source_versions.local_version(location)}:{splits}"


@dg.observable_source_asset(
    description="Where Bitext rows come from (demo corpus, local file, or hub dataset); "
    "its data version is the file's content hash or the hub commit sha.",
)
def bitext_source(bitext: BitextSource) -> dg.DataVersion:
    return dg.DataVersion(bitext_version(bitext))


@dg.observable_source_asset(
    description="Where MultiWOZ 2.2 dialogues come from (demo corpus, local folder, "
    "or the published archive); its data version is the content hash or the pinned archive URL.",
)
def multiwoz_source(multiwoz: MultiwozSource) -> dg.DataVersion:
    return dg.DataVersion(multiwoz_version(multiwoz))


raw_sources = [bitext_source, multiwoz_source]
