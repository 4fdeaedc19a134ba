"""The Dagster code location: `dagster dev` (see workspace.yaml) or `dagster asset materialize --select ...`.

Profile: `SFT_PROFILE=demo` (default, offline) or `SFT_PROFILE=full` (hub data, Llama-3.1-8B-Instruct, GPU).
"""

import dagster as dg

from llama_sft_dagster import automation
from llama_sft_dagster.assets import checks, dedup_split, filters, model, raw, sources
from llama_sft_dagster.resources.artifacts import ArtifactStore
from llama_sft_dagster.resources.data_sources import BitextSource, MultiwozSource
from llama_sft_dagster.resources.hub import HuggingFaceHub
from llama_sft_dagster.settings import active_profile

DATA_MODULES = [raw, model, filters, dedup_split]


def build_resources() -> dict:
    hub_token = {"hf_token": dg.EnvVar("HF_TOKEN")} if active_profile() == "full" else {}
    return {
        "artifacts": ArtifactStore(),
        "bitext": BitextSource(**hub_token),
        "multiwoz": MultiwozSource(),
        "hub": HuggingFaceHub(**({"token": dg.EnvVar("HF_TOKEN")} if active_profile() == "full" else {})),
    }


# Unbound assets and checks (tests materialize them with their own resources).
all_assets = dg.load_assets_from_modules(DATA_MODULES)
all_checks = checks.accounting_checks
sft_pipeline = automation.sft_pipeline

defs = dg.Definitions(
    assets=[*sources.raw_sources, *all_assets],
    asset_checks=all_checks,
    resources=build_resources(),
    jobs=automation.jobs,
    schedules=automation.schedules,
    sensors=automation.sensors,
)
