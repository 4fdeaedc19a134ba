"""The profile is chosen when the Definitions are built (`build_defs(profile)`, or `defs` as Dagster loads it,
reading SFT_PROFILE then), not when the modules are imported: one interpreter builds every profile, and the
launchpad shows the built profile's defaults."""

import dagster as dg

from llama_sft_dagster import definitions
from llama_sft_dagster.config.profiles import config_for
from llama_sft_dagster.config.training import MergeCheckConfig, TokenizerConfig, TrainConfig


def config_default(defs: dg.Definitions, key, field: str):
    if isinstance(key, dg.AssetCheckKey):
        node = next(c for c in defs.asset_checks if key in c.check_keys).node_def
    else:
        node = defs.resolve_assets_def(key).node_def
    return node.config_schema.config_type.fields[field].default_value


def test_demo_and_full_definitions_in_one_interpreter_show_their_own_defaults():
    built = {p: definitions.build_defs(p) for p in ("demo", "full", "rehearsal")}
    merge_check = dg.AssetCheckKey(dg.AssetKey("merged_model"), "merged_model_logits")
    for profile, defs in built.items():
        train, base, merge = (config_for(profile, c)() for c in (TrainConfig, TokenizerConfig, MergeCheckConfig))
        assert config_default(defs, "train_adapter", "learning_rate") == train.learning_rate
        assert config_default(defs, "train_adapter", "max_steps") == train.max_steps
        assert config_default(defs, "base_tokenizer", "model_id") == base.model_id
        assert config_default(defs, merge_check, "probe_dtype") == merge.probe_dtype
        assert defs.resources["gpu"].allow_cpu_training == (profile != "full")
    # the values themselves differ (read from config/training.py: the seed's in full, small ones in demo)
    assert config_default(built["demo"], "train_adapter", "learning_rate") != config_default(
        built["full"], "train_adapter", "learning_rate"
    )
    assert config_default(built["full"], "base_tokenizer", "model_id") == "meta-llama/Llama-3.1-8B-Instruct"
    # code versions include the config defaults, so a profile's assets are versioned by its own defaults
    versions = {p: d.resolve_assets_def("train_adapter").code_versions_by_key for p, d in built.items()}
    assert len({str(v) for v in versions.values()}) == 3
    # an asset whose config does not depend on the profile has the same version in every build
    assert len({str(d.resolve_assets_def("word_count_filtered").code_versions_by_key) for d in built.values()}) == 1


def test_dagster_loads_the_lazy_definitions_of_the_active_profile(monkeypatch):
    from dagster._core.definitions.reconstruct import repository_def_from_target_def

    monkeypatch.setenv("SFT_PROFILE", "full")
    repo = repository_def_from_target_def(definitions.defs)  # as the code server loads `-m ...definitions`
    node = repo.assets_defs_by_key[dg.AssetKey("train_adapter")].node_def
    assert (
        node.config_schema.config_type.fields["learning_rate"].default_value
        == config_for("full", TrainConfig)().learning_rate
    )
