"""The code location: `dagster dev` (see workspace.yaml) or `dagster asset materialize --select ...`.

Profile: `SFT_PROFILE=demo` (default, offline), `SFT_PROFILE=rehearsal` (offline, CPU: the full profile's
code with Llama 3.1's real tokenizer and the real data samples) or `SFT_PROFILE=full` (hub data,
Llama-3.1-8B-Instruct, GPU). Dagster loads `defs` lazily (`@dg.definitions`), which reads SFT_PROFILE then;
`build_defs("full")` builds any profile's Definitions in the same interpreter.
"""

import os

import dagster as dg

from llama_sft_dagster import automation
from llama_sft_dagster.assets import checks, evaluation, model, rank_sweep, raw, report, sources, split, training
from llama_sft_dagster.assets._versioned import for_profile
from llama_sft_dagster.assets.filters import data_stage_assets
from llama_sft_dagster.assets.source_table import source_resources
from llama_sft_dagster.config.executor import local_executor
from llama_sft_dagster.config.k8s import step_executor
from llama_sft_dagster.config.profiles import active_profile, check_profile, profile_defaults
from llama_sft_dagster.housekeeping.pool_guard import GpuPoolGuard
from llama_sft_dagster.logs.console import console
from llama_sft_dagster.resources.artifacts import ArtifactStore
from llama_sft_dagster.resources.gpu import GpuResource
from llama_sft_dagster.resources.hub import HuggingFaceHub
from llama_sft_dagster.resources.tracking import MlflowTracking

DATA_MODULES = [raw, model, split]
LINEAGE_GROUP = "llama_sft"


def one_group(assets: list) -> list:
    """Every asset in one Dagster group, its stage (raw, model, dedup_split, training...) kept as the tag `stage`.

    dagster-webserver 1.13 draws each group of a graph with more than one as a collapsed box until it is
    expanded by hand (ui-core asset-graph/layout.ts), so seven groups opened the lineage as seven boxes and no
    asset name; one group shows every asset. The catalog filters by stage with `tag:stage=training`."""

    def regroup(spec: dg.AssetSpec) -> dg.AssetSpec:
        return spec.replace_attributes(group_name=LINEAGE_GROUP, tags={**spec.tags, "stage": spec.group_name})

    observed = [a.with_attributes(group_name=LINEAGE_GROUP) for a in assets if isinstance(a, dg.SourceAsset)]
    return [*observed, *dg.map_asset_specs(regroup, [a for a in assets if not isinstance(a, dg.SourceAsset)])]


def build_resources(profile: str | None = None) -> dict:
    """The resources of `profile` (default: SFT_PROFILE): its data source locations and GPU policy."""
    profile = check_profile(profile or active_profile())
    # The hub token only ever comes from the environment, and only the gated Llama weights need it: an
    # EnvVar of an unset variable would fail every run, public data included, so it is passed only when
    # set (base_model then says in one line to set HF_TOKEN; core/sources/hub.py).
    token = {"token": dg.EnvVar("HF_TOKEN")} if os.environ.get("HF_TOKEN") else {}
    return {
        "artifacts": ArtifactStore(),
        **source_resources(profile),  # one per row of the sources table
        "hub": HuggingFaceHub(**token),
        "gpu": GpuResource(**profile_defaults(GpuResource, profile)),
        "pool_guard": GpuPoolGuard(),
        "tracking": MlflowTracking(),
    }


# Unbound assets and checks, with the defaults of SFT_PROFILE as imported (tests materialize them with their
# own resources); build_defs(profile) rebuilds those whose config defaults differ in another profile.
# all_assets is the pipeline (sft_pipeline); the rank sweep is partitioned, so it has a job of its own
# (automation.rank_sweep_job).
all_assets = [*dg.load_assets_from_modules([*DATA_MODULES, training, evaluation, report]), *data_stage_assets]
sweep_assets = dg.load_assets_from_modules([rank_sweep])
all_checks = [*checks.accounting_checks, *dg.load_asset_checks_from_modules([training, evaluation])]
sft_pipeline = automation.sft_pipeline


def build_defs(profile: str | None = None) -> dg.Definitions:
    """The code location's Definitions for `profile` (default: SFT_PROFILE, read now): the launchpad shows that
    profile's config defaults, and the code versions include them."""
    profile = check_profile(profile or active_profile())
    return dg.Definitions(
        assets=one_group([*sources.raw_sources, *(for_profile(a, profile) for a in [*all_assets, *sweep_assets])]),
        asset_checks=[for_profile(c, profile) for c in all_checks],
        resources=build_resources(profile),
        jobs=automation.jobs,
        schedules=automation.schedules,
        sensors=automation.sensors,
        # SFT_EXECUTOR=k8s: a pod per step (deploy/, README "Scaling out"); else step processes forked from a
        # server that imported the code location once (config/executor.py)
        executor=step_executor() or local_executor(),
        loggers={"console": console},  # a failed step as one line, a failed run ending with its cause
    )


@dg.definitions
def defs() -> dg.Definitions:
    """What `dagster dev` / `dagster asset materialize -m llama_sft_dagster.definitions` load."""
    return build_defs()
