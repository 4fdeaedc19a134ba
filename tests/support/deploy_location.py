"""The code location the deployment tests serve over gRPC (`dagster api grpc -m support.deploy_location`): the
project's data graph over small local sources (support/staleness_graph.py, folder SFT_TEST_SOURCES), the
project's retraining automation on a minute cron over its first stages (so a test sees a daemon tick within a
minute and its waves end after two runs), the project's dead-run sensor, and `gpu_probe`: a step in the `gpu`
pool, as train_adapter is, that holds it SFT_PROBE_SECONDS and records its span in its metadata."""

import os
import time
from pathlib import Path

import dagster as dg

from llama_sft_dagster import automation
from llama_sft_dagster.housekeeping.dead_runs import dead_run_sensor
from llama_sft_dagster.housekeeping.pool_guard import GpuPoolGuard
from support.staleness_graph import build_defs

WAVE_ASSETS = ["bitext_raw", "multiwoz_raw", "raw_pairs"]


class ProbeConfig(dg.Config):
    seconds: float = float(os.environ.get("SFT_PROBE_SECONDS", "6"))


@dg.asset(pool="gpu", group_name="probe")
def gpu_probe(config: ProbeConfig, pool_guard: GpuPoolGuard) -> dg.MaterializeResult:
    start = time.time()
    time.sleep(config.seconds)
    return dg.MaterializeResult(metadata={"start": start, "end": time.time(), "pid": os.getpid()})


gpu_probe_job = dg.define_asset_job("gpu_probe_job", selection=["gpu_probe"])


def location() -> dg.Definitions:
    sources = Path(os.environ["SFT_TEST_SOURCES"])
    graph = build_defs(sources, sources / "bitext.parquet", sources / "multiwoz")
    retrain = dg.AutomationConditionSensorDefinition(
        "retrain_automation",
        target=dg.AssetSelection.assets(*WAVE_ASSETS).without_checks(),  # checks ride along
        default_condition=automation.retrain_condition("* * * * *", first_run="raw_pairs"),
        use_user_code_server=True,
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=10,
    )
    return dg.Definitions(
        assets=[*graph.assets, gpu_probe],
        asset_checks=graph.asset_checks,
        jobs=[gpu_probe_job],
        sensors=[retrain, dead_run_sensor],
        resources={**graph.resources, "pool_guard": GpuPoolGuard()},
    )


defs = location()
