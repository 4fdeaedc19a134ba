"""The scheduled retraining (automation.retrain_automation: declarative automation run by the daemon), on a real
instance and the real data graph: it never starts a first run, and after the weekly tick it reruns in waves what
the data versions say changed, as `make stale` does. Ticks are evaluated with dg.evaluate_automation_conditions at
chosen times (the daemon test in tests/e2e/test_deployment.py runs the sensor itself)."""

import datetime as dt

import dagster as dg
import pytest

from llama_sft_dagster import automation
from llama_sft_dagster.cli.stale import materialize_stale
from support.staleness_graph import build_defs, bump_code_version, data_versions, write_sources

SUNDAY = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)
MONDAY_0301 = dt.datetime(2026, 11, 30, 3, 1, tzinfo=dt.UTC)  # just after the default tick, Monday 03:00


def with_condition(defs: dg.Definitions, first_run: str) -> dg.Definitions:
    """The graph with retrain_condition on every asset, as retrain_automation's default_condition applies it."""
    condition = automation.retrain_condition(first_run=first_run)
    assets = [
        a.map_asset_specs(lambda s: s.replace_attributes(automation_condition=condition))
        if isinstance(a, dg.AssetsDefinition) and a.is_materializable
        else a
        for a in defs.assets
    ]
    return dg.Definitions(assets=assets, asset_checks=defs.asset_checks, resources=defs.resources)


def requested(result) -> set[str]:
    return {r.key.to_user_string() for r in result.results if not r.true_subset.is_empty}


def tick_after_cron(defs, instance):
    """Two evaluations, Sunday then just after Monday's tick: the second is the one the cron passed."""
    first = dg.evaluate_automation_conditions(defs, instance, evaluation_time=SUNDAY)
    assert requested(first) == set(), "nothing before the tick"
    return dg.evaluate_automation_conditions(defs, instance, evaluation_time=MONDAY_0301, cursor=first.cursor)


def run_as_automation(defs, instance, names):
    """What the daemon launches for a request: a run of those assets (checks ride along), tagged as automation's."""
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=instance,
        asset_selection=[dg.AssetKey(n) for n in names],
        tags={automation.AUTOMATION_TAG: "true"},
    )
    assert result.success


def test_default_status_is_running_and_cron_configurable(monkeypatch):
    sensor = automation.retrain_automation()
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert "0 3 * * 1" in sensor.description
    monkeypatch.setenv("SFT_RETRAIN_CRON", "0 4 * * *")
    assert "0 4 * * *" in automation.retrain_automation().description
    assert "cron_schedule=0 4 * * *" in str(automation.retrain_condition().get_snapshot())


@pytest.mark.slow
def test_fresh_instance_never_starts_the_first_run_and_says_how(tmp_path):
    bitext, multiwoz = write_sources(tmp_path)
    built = build_defs(tmp_path, bitext, multiwoz)
    defs = with_condition(built, first_run="train_adapter")
    with dg.instance_for_test() as instance:
        # raw_data_sensor (RUNNING by default) has recorded the sources' versions: the raw assets can run
        graph = built.resolve_asset_graph()
        for event in automation.source_observations(instance, graph, dict(built.resources)):
            instance.report_runless_asset_event(event)
        result = tick_after_cron(defs, instance)
        assert requested(result) == set(), "a fresh instance must not start the download and training by cron"
        (first,) = [r for r in result.results if r.key == dg.AssetKey("bitext_raw")]
        gate = first.child_results[0]
        assert gate.condition.name == automation.FIRST_RUN_HINT and gate.true_subset.is_empty
        assert "make demo" in automation.FIRST_RUN_HINT


@pytest.mark.slow
def test_waves_follow_data_versions_and_stop_where_the_data_is_identical(tmp_path):
    """A logic edit of the word-count filter that keeps the same rows reruns word_count_filtered only
    (make stale's waves); new raw data goes down the chain, wave by wave."""
    bitext, multiwoz = write_sources(tmp_path)
    built = build_defs(tmp_path, bitext, multiwoz)
    with dg.instance_for_test() as instance:
        assert materialize_stale(built, instance).ok  # the first run, someone's decision
        defs = with_condition(built, first_run="deduplicated_pairs")
        assert requested(tick_after_cron(defs, instance)) == set(), "nothing changed: no run"

        edited = with_condition(
            build_defs(tmp_path, bitext, multiwoz, bump_code_version("word_count_filtered", "edit-2")),
            first_run="deduplicated_pairs",
        )
        before = data_versions(instance)
        result = tick_after_cron(edited, instance)
        assert requested(result) == {"word_count_filtered"}
        run_as_automation(edited, instance, ["word_count_filtered"])
        assert data_versions(instance) == before, "the edit kept the same rows"
        after = dg.evaluate_automation_conditions(
            edited, instance, evaluation_time=MONDAY_0301 + dt.timedelta(minutes=1), cursor=result.cursor
        )
        assert requested(after) == set(), "identical data: the wave ends at word_count_filtered, nothing below reruns"

        write_sources(tmp_path, bitext_rows=500)  # new raw data, recorded by raw_data_sensor
        graph = edited.resolve_asset_graph()
        for event in automation.source_observations(instance, graph, dict(edited.resources)):
            instance.report_runless_asset_event(event)
        monday = MONDAY_0301 + dt.timedelta(days=7)
        quiet = dg.evaluate_automation_conditions(edited, instance, evaluation_time=monday - dt.timedelta(days=1))
        assert requested(quiet) == set(), "new raw data waits for the weekly tick"
        first_wave = dg.evaluate_automation_conditions(edited, instance, evaluation_time=monday, cursor=quiet.cursor)
        assert requested(first_wave) == {"bitext_raw"}, "multiwoz_raw did not change"
        run_as_automation(edited, instance, ["bitext_raw"])
        second_wave = dg.evaluate_automation_conditions(
            edited, instance, evaluation_time=monday + dt.timedelta(minutes=1), cursor=first_wave.cursor
        )
        assert requested(second_wave) == {"raw_pairs"}, "the next wave: the child whose parent's data changed"
