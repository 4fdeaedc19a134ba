"""Champion promotion on a real MLflow SQLite registry: a retrained, worse challenger is registered but
does not take the `champion` alias, and the champion's files survive retention across retrainings."""
import shutil
from pathlib import Path

import dagster as dg
import pytest

from support.demo_state import build_demo_state, instance_at
from support.resources import project_resources

# the demo run trained 10 steps (demo_state.TRAIN_CONFIG); 3 steps of the same schedule learn less
WORSE = {"max_steps": 3, "eval_steps": 3, "save_steps": 3}


@pytest.fixture(scope="module")
def demo_state(tmp_path_factory):
    return build_demo_state(tmp_path_factory)[0]


def _champion(state):
    from llama_sft_dagster.config.evaluation import ChampionConfig
    from llama_sft_dagster.resources.model_registry import RegisteredModel

    return RegisteredModel(f"sqlite:///{state / 'mlflow.db'}", ChampionConfig().registered_model_name).champion()


@pytest.mark.slow
def test_worse_challenger_is_not_promoted_and_champion_files_survive(demo_state, tmp_path):
    from llama_sft_dagster.definitions import all_assets, all_checks
    from llama_sft_dagster.resources.artifacts import ArtifactStore

    state = tmp_path / "state"
    shutil.copytree(demo_state, state, symlinks=True, ignore=shutil.ignore_patterns("dagster_home"))
    champion = _champion(state)
    assert champion is not None and int(champion.version) == 1, "the demo run promotes its model (no champion before)"
    champion_adapter = ArtifactStore(root=str(state / "artifacts")).path("train_adapter", "adapter")
    store = ArtifactStore(root=str(state / "artifacts"), keep_versions=1)  # retention as tight as it goes
    resources = project_resources(state, artifacts=store)
    names = ["train_adapter", "merged_model", "adapter_evaluation", "champion_model"]
    with instance_at(tmp_path / "home") as instance:
        result = dg.materialize([*all_assets, *all_checks], selection=names, resources=resources, instance=instance,
                                run_config={"ops": {"train_adapter": {"config": WORSE}}}, raise_on_error=False)
        meta = {e.materialization.asset_key.path[-1]: e.materialization.metadata
                for e in result.get_asset_materialization_events()}
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        assert checks["adapter_evaluation_beats_base"], "the challenger must beat its base, so the registry decides"
        decision = meta["champion_model"]
        assert decision["promoted"].value is False
        assert "does not beat champion" in decision["reason"].value
        assert decision["challenger_version"].value == 2 and decision["champion_version"].value == 1
        assert decision["challenger_loss"].value > decision["champion_loss_before"].value
        # a second retraining: with keep_versions=1 the first challenger's adapter goes, the champion's stays
        again = dg.materialize([*all_assets], selection=["train_adapter"], resources=resources, instance=instance,
                               run_config={"ops": {"train_adapter": {"config": WORSE}}})
    assert again.success
    assert int(_champion(state).version) == 1 and _champion(state).source == champion.source
    assert (champion_adapter / "adapter_model.safetensors").exists() and (champion_adapter.parent / "PROMOTED").exists()
    kept = [p.name for p in store.versions("train_adapter")]
    assert kept == [champion_adapter.parent.name, store.path("train_adapter", "adapter").parent.name]
    assert not Path(meta["train_adapter"]["path"].value).exists()  # the first challenger's adapter was pruned
    merged = [p.name for p in store.versions("merged_model")]
    assert merged[0] == Path(champion.source).parent.name and len(merged) == 2
    assert (store.root_path() / "merged_model" / "versions" / merged[0] / "model" / "model.safetensors").exists()
