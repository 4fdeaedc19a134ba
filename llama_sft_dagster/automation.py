"""Jobs, the retraining schedule and the new-raw-data sensor.

- `sft_pipeline`: every asset but the rank sweep, raw data -> merged model -> evaluation -> champion
  (`dagster job execute -j sft_pipeline`).
- `rank_sweep`: the partitioned `lora_rank_sweep` (one run per rank); `rank_sweep_report` is materialized
  after it, on its own (a partitioned and an unpartitioned asset cannot share a job).
- `retrain_automation` (Dagster's declarative automation, run by the daemon; RUNNING by default): after the
  tick of SFT_RETRAIN_CRON (default weekly, Monday 03:00 UTC) it requests the missing or stale assets, then
  after each of its runs the children that became stale, in waves as `make stale` does: a rerun that gives
  identical data ends the wave there, so it never reaches the GPU for nothing. On an instance that never
  trained it requests nothing and says how to start the first run (FIRST_RUN_HINT).
- `raw_data_sensor` (every SFT_RAW_DATA_CHECK_SECONDS, default 3600): computes each raw source's
  version (file hash, hub commit, archive ETag) and records an observation when it changed, which
  makes the raw assets stale; the next scheduled tick (or `sft-materialize-stale`) rebuilds the chain.
- `dead_run_sensor` (every 60 s, housekeeping/dead_runs.py): fails killed runs and frees their `gpu` pool slots.
"""

import os
import warnings

import dagster as dg

from llama_sft_dagster.assets.source_table import SOURCES, with_source_resources
from llama_sft_dagster.assets.sources import source_versions
from llama_sft_dagster.config.profiles import recipes_text
from llama_sft_dagster.housekeeping.dead_runs import dead_run_sensor
from llama_sft_dagster.housekeeping.stale_plan import own_reasons, stale_resolver

# tags Dagster sets, spelled out: its constants live in private modules (dagster._core.storage.tags,
# dagster._core.definitions.data_version); an observation can carry a data version only as this tag
DATA_VERSION_TAG = "dagster/data_version"
AUTOMATION_TAG = "dagster/from_automation_condition"  # on every run declarative automation launches

# weekly: new raw data arrives rarely, and a full-profile retrain holds the GPU for hours
DEFAULT_RETRAIN_CRON = "0 3 * * 1"
DEFAULT_RAW_DATA_CHECK_SECONDS = 3600

# by tag, not by key: a graph without the sweep (tests build data-only ones) still resolves the jobs; not by
# group either, since the code location puts every asset in one group (definitions.one_group)
SWEEP = dg.AssetSelection.tag("sft/sweep", "adapter") | dg.AssetSelection.tag("sft/sweep", "report")
PIPELINE = dg.AssetSelection.all() - SWEEP
sft_pipeline = dg.define_asset_job(
    "sft_pipeline",
    selection=PIPELINE,
    description="The whole graph but the rank sweep: raw data -> filters -> split -> adapter -> merged model -> "
    "evaluation -> champion -> run_report." + recipes_text(),
)
rank_sweep_job = dg.define_asset_job(
    "rank_sweep",
    selection=dg.AssetSelection.tag("sft/sweep", "adapter"),
    description="One LoRA adapter per rank (choose the partitions); then materialize rank_sweep_report.",
)


def retrain_cron() -> str:
    return os.environ.get("SFT_RETRAIN_CRON", DEFAULT_RETRAIN_CRON)


FIRST_RUN_HINT = (
    "never trained on this instance: the scheduled retraining starts only after a first run. Start it with "
    "`make demo` (demo profile), `dagster asset materialize --select '*'`, or the sft_pipeline job in the UI"
)


class TrainedOnce(dg.AutomationCondition):
    """True once `key` has ever been materialized on the instance: the first (full-profile: 16 GB download, hours
    of GPU) run is always someone's decision, never a cron tick's."""

    def __init__(self, key: str = "train_adapter"):
        self.key = dg.AssetKey(key)

    @property
    def name(self) -> str:
        return FIRST_RUN_HINT if self.key == dg.AssetKey("train_adapter") else f"{self.key.to_user_string()} built"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        trained = context.asset_graph_view.instance.get_latest_materialization_event(self.key) is not None
        if not trained and context.key == self.key:  # once per tick, in the sensor's tick log
            context.log.info(f"retraining skipped: {FIRST_RUN_HINT}")
        subset = context.candidate_subset if trained else context.get_empty_subset()
        return dg.AutomationResult(context, true_subset=subset)


class MissingOrStale(dg.AutomationCondition):
    """Dagster's own stale status (the web UI's): missing, a new code version or config override, or a parent
    whose data version differs from the one this asset was built from. It looks one level up, so
    evaluating it after each run follows a change down the chain in waves, as `make stale` does, and stops
    where a rerun gave identical data."""

    @property
    def name(self) -> str:
        return "missing_or_stale"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        view = context.asset_graph_view
        reasons = own_reasons(
            stale_resolver(view.instance, view.asset_graph), view.instance, view.asset_graph, context.key
        )
        subset = context.candidate_subset if reasons else context.get_empty_subset()
        return dg.AutomationResult(context, true_subset=subset)


def retrain_condition(cron: str | None = None, first_run: str = "train_adapter") -> dg.AutomationCondition:
    """The retraining's condition for each asset: after a first run, when the weekly tick passes (or a parent
    was just rebuilt by this automation: the next wave), if the asset is missing or stale, and nothing it
    reads is running or missing."""
    rebuilt_by_automation = dg.AutomationCondition.newly_updated() & dg.AutomationCondition.executed_with_tags(
        tag_keys={AUTOMATION_TAG}
    )
    trigger = dg.AutomationCondition.cron_tick_passed(cron or retrain_cron(), "UTC").with_label(
        "weekly tick passed"
    ) | dg.AutomationCondition.any_deps_match(rebuilt_by_automation).with_label("a parent was rebuilt (next wave)")
    return (
        TrainedOnce(first_run)
        & trigger
        & MissingOrStale()
        & ~dg.AutomationCondition.in_progress()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.any_deps_missing()
    ).with_label("scheduled retraining, in waves")


def retrain_automation(
    cron: str | None = None, first_run: str = "train_adapter"
) -> dg.AutomationConditionSensorDefinition:
    """The daemon's automation sensor that runs the retraining (RUNNING by default: it never starts the first
    run, and reruns only what the data versions say changed)."""
    with warnings.catch_warnings():  # use_user_code_server and default_condition are beta in Dagster 1.13
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.AutomationConditionSensorDefinition(
            "retrain_automation",
            target=PIPELINE.without_checks(),  # a pipeline asset's checks ride along with it
            default_condition=retrain_condition(cron, first_run),
            use_user_code_server=True,  # the stale status is computed in the code location (own_reasons)
            default_status=dg.DefaultSensorStatus.RUNNING,
            minimum_interval_seconds=30,
            run_tags={"sft/trigger": "retrain-automation"},
            description=f"Retraining in waves when something changed, after the {cron or retrain_cron()} tick (UTC); "
            "skips until a first run trained (see FIRST_RUN_HINT).",
        )


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


schedules = []  # the retraining is the retrain_automation sensor (declarative automation), not a schedule
sensors = [raw_data_sensor, retrain_automation(), dead_run_sensor]
jobs = [sft_pipeline, rank_sweep_job]
