"""Staleness rules, one test each, on the real data graph with a real Dagster instance:
code versions everywhere, content data versions, a code bump, a threshold change, new raw data,
a launchpad override, a no-op rerun, and the stale-only command over a chain of stale levels."""

import importlib
import time

import dagster as dg
import pytest
from dagster._core.definitions.data_version import StaleStatus

from llama_sft_dagster.assets import filters
from llama_sft_dagster.cli.stale import materialize_stale
from llama_sft_dagster.config import data as config
from llama_sft_dagster.core.versions import table_version
from llama_sft_dagster.housekeeping import stale_plan
from support.staleness_graph import CHAIN, build_defs, bump_code_version, data_versions, write_sources

pytestmark = pytest.mark.slow  # each test materializes the data graph (~5 s)


@pytest.fixture
def built(tmp_path):
    """The data graph materialized once on small local sources: (defs, instance, bitext file, multiwoz folder)."""
    bitext, multiwoz = write_sources(tmp_path)
    defs = build_defs(tmp_path, bitext, multiwoz)
    instance = dg.DagsterInstance.ephemeral()
    summary = materialize_stale(defs, instance)
    assert summary.ok and set(CHAIN) <= set(summary.materialized)
    return defs, instance, bitext, multiwoz


def status(defs, instance, name: str) -> StaleStatus:
    return stale_plan.stale_resolver(instance, defs.resolve_asset_graph()).get_status(dg.AssetKey(name))


def test_every_asset_has_a_code_version():
    from llama_sft_dagster import definitions

    graph = definitions.build_defs().resolve_asset_graph()
    missing = [k.to_user_string() for k in graph.materializable_asset_keys if not graph.get(k).code_version]
    assert not missing, f"assets without code_version: {missing}"


def test_data_versions_are_content_hashes(built, tmp_path):
    defs, instance, _, _ = built
    versions = data_versions(instance)
    for name in CHAIN:
        assert versions[name] == table_version(tmp_path / "artifacts" / name / "data.parquet"), name


def test_noop_rerun_recomputes_nothing_and_identical_inputs_keep_versions(built):
    defs, instance, _, _ = built
    before = data_versions(instance)
    started = time.perf_counter()
    summary = materialize_stale(defs, instance)
    elapsed = time.perf_counter() - started
    assert summary.ok and summary.materialized == [] and summary.run_ids == []
    print(f"no-op rerun: {elapsed:.1f} s")  # a figure, not a test: speed is measured in benchmarks
    # forcing a stage to rerun on identical inputs yields the identical version: nothing goes stale
    job = defs.resolve_implicit_global_asset_job_def()
    assert job.execute_in_process(instance=instance, asset_selection=[dg.AssetKey("raw_pairs")]).success
    assert data_versions(instance) == before
    assert stale_plan.plan(instance, defs.resolve_asset_graph(), whole_chain=False) == []


def test_code_bump_makes_that_asset_stale_and_stops_where_content_is_unchanged(built, tmp_path):
    _, instance, bitext, multiwoz = built
    before = data_versions(instance)
    bumped = build_defs(tmp_path, bitext, multiwoz, bump_code_version("bitext_raw", "2"))
    planned = stale_plan.plan(instance, bumped.resolve_asset_graph(), whole_chain=False)
    assert [(p.name, p.reasons) for p in planned] == [("bitext_raw", ("bitext_raw has a new code version",))]
    # Dagster 1.13 looks one level up only: raw_pairs is not stale yet
    assert status(bumped, instance, "raw_pairs") == StaleStatus.FRESH
    # the dry run's whole-chain plan says which of them run for certain and which only if the data changes
    dry = stale_plan.plan(instance, bumped.resolve_asset_graph(), whole_chain=True)
    assert [p.name for p in dry if p.certain] == ["bitext_raw"] and len(dry) > 1
    text = stale_plan.format_dry_plan(dry)
    assert text.startswith(f"would materialize 1 asset(s) for certain, and {len(dry) - 1} more only if an upstream")
    assert "only if the data changes" in text and "raw_pairs: downstream of bitext_raw, which runs first" in text
    summary = materialize_stale(bumped, instance)
    # the rerun produced the same rows, so the content version is unchanged and nothing below reruns
    assert summary.materialized == ["bitext_raw"]
    assert data_versions(instance) == before


@pytest.fixture
def word_count_default_raised():
    """Edit the seed default in config.py as a user would (min_response_words 5 -> 12), then restore."""
    field = config.WordCountConfig.model_fields["min_response_words"]
    original = field.default
    field.default = 12
    config.WordCountConfig.model_rebuild(force=True)
    yield importlib.reload(filters)
    field.default = original
    config.WordCountConfig.model_rebuild(force=True)
    importlib.reload(filters)


def test_threshold_change_makes_that_filter_and_everything_downstream_stale_nothing_upstream(
    built, tmp_path, word_count_default_raised
):
    defs, instance, bitext, multiwoz = built
    before = data_versions(instance)
    changed = build_defs(tmp_path, bitext, multiwoz)
    graph = changed.resolve_asset_graph()
    old_code = defs.resolve_asset_graph().get(dg.AssetKey("word_count_filtered")).code_version
    assert graph.get(dg.AssetKey("word_count_filtered")).code_version not in (None, old_code)
    closure = [p.name for p in stale_plan.plan(instance, graph, whole_chain=True)]
    assert closure == CHAIN[2:], closure  # word_count_filtered and all below; no raw asset, no base_tokenizer
    summary = materialize_stale(changed, instance)
    assert summary.ok
    assert sorted(summary.materialized) == sorted(CHAIN[2:])
    after = data_versions(instance)
    assert all(after[n] == before[n] for n in CHAIN[:2]), "upstream changed"
    assert after["word_count_filtered"] != before["word_count_filtered"]
    assert len(summary.run_ids) >= 2, "expected several waves (one level per wave)"
    assert materialize_stale(changed, instance).materialized == []


def test_new_raw_data_makes_the_chain_stale(built):
    defs, instance, bitext, _ = built
    before = data_versions(instance, CHAIN + ["multiwoz_raw"])
    write_sources(bitext.parent, bitext_rows=500)  # 100 more Bitext rows upstream
    summary = materialize_stale(defs, instance)
    assert summary.ok
    assert summary.observed_sources == ["bitext_source"]
    assert summary.waves[0][0].name == "bitext_raw"
    assert "bitext_raw has a new dependency data version (bitext_source)" in summary.waves[0][0].reasons
    assert set(CHAIN) <= set(summary.materialized)
    assert "multiwoz_raw" not in summary.materialized
    after = data_versions(instance, CHAIN + ["multiwoz_raw"])
    assert after["bitext_raw"] != before["bitext_raw"] and after["multiwoz_raw"] == before["multiwoz_raw"]


def test_stale_command_covers_three_stale_levels(built, capsys):
    defs, instance, bitext, _ = built
    write_sources(bitext.parent, bitext_rows=450)
    summary = materialize_stale(defs, instance, "*word_count_filtered")
    # Dagster sees one stale level at a time; the command follows the chain wave by wave
    assert [[p.name for p in w] for w in summary.waves] == [["bitext_raw"], ["raw_pairs"], ["word_count_filtered"]]
    printed = capsys.readouterr().out
    assert "raw_pairs: raw_pairs has a new dependency data version (bitext_raw)" in printed
    assert "word_count_filtered: word_count_filtered has a new dependency data version (raw_pairs)" in printed
    # token_limit_filtered was outside the selection: now (and only now) stale, by one level
    assert status(defs, instance, "token_limit_filtered") == StaleStatus.STALE


def test_one_run_builds_the_stale_chain_in_one_run_and_verbose_shows_dagsters_log(built, capfd):
    defs, instance, bitext, _ = built
    write_sources(bitext.parent, bitext_rows=450)
    summary = materialize_stale(defs, instance, "*word_count_filtered", one_run=True)
    # one run: the stale asset and everything downstream of it in the selection, not one level per wave
    assert [[p.name for p in w] for w in summary.waves] == [["bitext_raw", "raw_pairs", "word_count_filtered"]]
    assert summary.ok and len(summary.run_ids) == 1
    quiet = capfd.readouterr()
    assert "STEP_SUCCESS" not in quiet.out + quiet.err  # Dagster's debug log stays out by default
    assert materialize_stale(defs, instance, "*word_count_filtered").materialized == []  # nothing left stale

    write_sources(bitext.parent, bitext_rows=420)
    assert materialize_stale(defs, instance, "bitext_raw", verbose=True).materialized == ["bitext_raw"]
    loud = capfd.readouterr()
    assert "bitext_raw - STEP_SUCCESS" in loud.out + loud.err


def test_launchpad_override_counts_and_the_stale_path_restores_defaults(built):
    defs, instance, _, _ = built
    before = data_versions(instance)
    job = defs.resolve_implicit_global_asset_job_def()
    override = {"ops": {"word_count_filtered": {"config": {"min_response_words": 12}}}}
    assert job.execute_in_process(
        instance=instance, asset_selection=[dg.AssetKey("word_count_filtered")], run_config=override
    ).success
    planned = {p.name: p.reasons for p in stale_plan.plan(instance, defs.resolve_asset_graph(), whole_chain=False)}
    assert planned["word_count_filtered"] == (
        "word_count_filtered was built with run config {'min_response_words': 12}, "
        "not the defaults {'min_response_words': 5}",
    )
    assert planned["token_limit_filtered"] == (
        "token_limit_filtered has a new dependency data version (word_count_filtered)",
    )
    summary = materialize_stale(defs, instance)
    assert summary.ok and summary.materialized[0] == "word_count_filtered"
    assert data_versions(instance) == before  # defaults again: the original content and versions


def code_versions(modules) -> dict[str, str]:
    assets = [*dg.load_assets_from_modules(modules), *filters.data_stage_assets]
    return {
        k.to_user_string(): v
        for a in assets
        if isinstance(a, dg.AssetsDefinition)
        for k, v in a.code_versions_by_key.items()
    }


def test_lora_rank_change_reaches_train_adapter_only():
    """A new lora_r default changes train_adapter's code version and no other asset's; merged_model then
    goes stale through the adapter's new content version (the data-version rule tested above)."""
    from llama_sft_dagster.assets import model, raw, split, training
    from llama_sft_dagster.config import training as config_training

    modules = [raw, model, split, training]
    before = code_versions(modules)
    assert {"train_adapter", "merged_model"} <= before.keys()
    field = config_training.TrainConfig.model_fields["lora_r"]
    original = field.default
    try:
        field.default = original * 2
        config_training.TrainConfig.model_rebuild(force=True)
        after = code_versions([raw, model, split, importlib.reload(training)])
    finally:
        field.default = original
        config_training.TrainConfig.model_rebuild(force=True)
        importlib.reload(training)
    assert {k for k in before if before[k] != after[k]} == {"train_adapter"}
