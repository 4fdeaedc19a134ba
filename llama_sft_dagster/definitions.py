"""The Dagster code location: `dagster dev` (see workspace.yaml) or `dagster asset materialize --select ...`.

Profile: `SFT_PROFILE=demo` (default, offline), `SFT_PROFILE=rehearsal` (offline, CPU: the full profile's
code with Llama 3.1's real tokenizer and the real data samples) or `SFT_PROFILE=full` (hub data,
Llama-3.1-8B-Instruct, GPU).
"""

import os

import dagster as dg

from llama_sft_dagster import automation
from llama_sft_dagster.assets import checks, evaluation, model, rank_sweep, raw, report, sources, split, training
from llama_sft_dagster.assets.filters import data_stage_assets
from llama_sft_dagster.cli.console_log import console
from llama_sft_dagster.resources.artifacts import ArtifactStore
from llama_sft_dagster.resources.data_sources import BitextSource, MultiwozSource
from llama_sft_dagster.housekeeping.pool_guard import GpuPoolGuard
from llama_sft_dagster.resources.gpu import GpuResource
from llama_sft_dagster.resources.hub import HuggingFaceHub
from llama_sft_dagster.resources.tracking import MlflowTracking
from llama_sft_dagster.config.k8s import step_executor

DATA_MODULES = [raw, model, split]


def build_resources() -> dict:
    # The hub token only ever comes from the environment, and only the gated Llama weights need it: an
    # EnvVar of an unset variable would fail every run, public data included, so it is passed only when
    # set (base_model then says in one line to set HF_TOKEN; core/sources/hub.py).
    token = {"token": dg.EnvVar("HF_TOKEN")} if os.environ.get("HF_TOKEN") else {}
    return {
        "artifacts": ArtifactStore(),
        "bitext": BitextSource(),  # a public dataset
        "multiwoz": MultiwozSource(),
        "hub": HuggingFaceHub(**token),
        "gpu": GpuResource(),
        "pool_guard": GpuPoolGuard(),
        "tracking": MlflowTracking(),
    }


# Unbound assets and checks (tests materialize them with their own resources). all_assets is the pipeline
# (sft_pipeline); the rank sweep is partitioned, so it has a job of its own (automation.rank_sweep_job).
all_assets = [*dg.load_assets_from_modules([*DATA_MODULES, training, evaluation, report]), *data_stage_assets]
sweep_assets = dg.load_assets_from_modules([rank_sweep])
all_checks = [*checks.accounting_checks, *dg.load_asset_checks_from_modules([training, evaluation])]
sft_pipeline = automation.sft_pipeline

defs = dg.Definitions(
    assets=[*sources.raw_sources, *all_assets, *sweep_assets],
    asset_checks=all_checks,
    resources=build_resources(),
    jobs=automation.jobs,
    schedules=automation.schedules,
    sensors=automation.sensors,
    executor=step_executor(),  # SFT_EXECUTOR=k8s: a pod per step (deploy/, README "Scaling out")
    loggers={"console": console},  # a failed step as one line, a failed run ending with its cause
)
