"""Jobs, the retraining schedule and the new-raw-data sensor.

- `sft_pipeline`: every asset but the rank sweep, raw data -> merged model -> evaluation -> champion
  (`dagster job execute -j sft_pipeline`).
- `rank_sweep`: the partitioned `lora_rank_sweep` (one run per rank); `rank_sweep_report` is materialized
  after it, on its own (a partitioned and an unpartitioned asset cannot share a job).
- `retrain_schedule` (cron from SFT_RETRAIN_CRON, default weekly, Monday 03:00 UTC): requests the
  assets that are missing or stale plus everything downstream of them, one run; when nothing changed
  it skips, so no run starts and no GPU is taken.
- `raw_data_sensor` (every SFT_RAW_DATA_CHECK_SECONDS, default 3600): computes each raw source's
  version (file hash, hub commit, archive ETag) and records an observation when it changed, which
  makes the raw assets stale; the next scheduled tick (or `sft-materialize-stale`) rebuilds the chain.
- `dead_run_sensor` (every 60 s, housekeeping/dead_runs.py): fails killed runs and frees their `gpu` pool slots.
"""

import os

import dagster as dg
from dagster._core.definitions.data_version import DATA_VERSION_TAG

from llama_sft_dagster.assets.source_table import SOURCES, with_source_resources
from llama_sft_dagster.assets.sources import source_versions
from llama_sft_dagster.housekeeping.dead_runs import dead_run_sensor
from llama_sft_dagster.housekeeping.stale_plan import plan, stale_resolver

# weekly: new raw data arrives rarely, and a full-profile retrain holds the GPU for hours
DEFAULT_RETRAIN_CRON = "0 3 * * 1"
DEFAULT_RAW_DATA_CHECK_SECONDS = 3600

# by group and tag, not by key: a graph without the sweep (tests build data-only ones) still resolves the jobs
SWEEP = dg.AssetSelection.groups("rank_sweep")
PIPELINE = dg.AssetSelection.all() - SWEEP
sft_pipeline = dg.define_asset_job(
    "sft_pipeline",
    selection=PIPELINE,
    description="The whole graph but the rank sweep: raw data -> filters -> split -> adapter -> merged model -> "
    "evaluation -> champion.",
)
rank_sweep_job = dg.define_asset_job(
    "rank_sweep",
    selection=dg.AssetSelection.tag("sft/sweep", "adapter"),
    description="One LoRA adapter per rank (choose the partitions); then materialize rank_sweep_report.",
)


def retrain_cron() -> str:
    return os.environ.get("SFT_RETRAIN_CRON", DEFAULT_RETRAIN_CRON)


def stale_run_request(instance: dg.DagsterInstance, asset_graph) -> dg.RunRequest | dg.SkipReason:
    """One run over what is missing or stale and everything downstream of it, or a reason to skip."""
    planned = plan(instance, asset_graph, PIPELINE.resolve(asset_graph), whole_chain=True)
    if not planned:
        return dg.SkipReason("every asset is up to date: nothing to run")
    causes = "; ".join(f"{p.name}: {p.reasons[0]}" for p in planned if not p.reasons[0].startswith("downstream"))
    return dg.RunRequest(
        asset_selection=[p.key for p in planned], tags={"sft/trigger": "stale-only", "sft/causes": causes[:1000]}
    )


@dg.schedule(
    job=sft_pipeline,
    cron_schedule=retrain_cron(),
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Retrains when something changed: requests only missing/stale assets and their downstream.",
)
def retrain_schedule(context: dg.ScheduleEvaluationContext):
    return stale_run_request(context.instance, context.repository_def.asset_graph)


def source_observations(instance: dg.DagsterInstance, asset_graph, resources: dict) -> list[dg.AssetObservation]:
    """Observations for the raw sources whose current version differs from the last one recorded;
    `resources`: {resource key: resource} of every source of the sources table."""
    resolver = stale_resolver(instance, asset_graph)
    events = []
    for name, version in source_versions(SOURCES, resources).items():
        if resolver.get_current_data_version(dg.AssetKey(name)).value != version:
            events.append(
                dg.AssetObservation(asset_key=name, tags={DATA_VERSION_TAG: version}, metadata={"version": version})
            )
    return events


def raw_data_sensor(context: dg.SensorEvaluationContext, **resources):
    events = source_observations(context.instance, context.repository_def.asset_graph, resources)
    if not events:
        return dg.SkipReason("raw sources unchanged")
    return dg.SensorResult(asset_events=events)


# one resource parameter per source of the sources table (each injected by its resource key)
raw_data_sensor = dg.sensor(
    minimum_interval_seconds=int(os.environ.get("SFT_RAW_DATA_CHECK_SECONDS", DEFAULT_RAW_DATA_CHECK_SECONDS)),
    default_status=dg.DefaultSensorStatus.RUNNING,
    asset_selection=[s.source_asset for s in SOURCES],
    description="Records a new version of a raw source when its content/revision changed (no run by itself).",
)(with_source_resources(raw_data_sensor, SOURCES))


schedules = [retrain_schedule]
sensors = [raw_data_sensor, dead_run_sensor]
jobs = [sft_pipeline, rank_sweep_job]
