"""Champion promotion on a real MLflow SQLite registry: a worse challenger is registered but does not take
the `champion` alias, and the champion's files survive retention across retrainings.

The challenger is made worse on purpose, not hoped to be: the same data and seed as the champion (the demo
run: 10 steps at the demo learning rate) but 3 steps, so it moves off the base model in the fine-tune's
direction (it must still beat its base: the blocking check) and stops far short of the champion. The test
asserts both facts from the figures, so a challenger that happened to tie or win would fail it loudly.
(A tie is not promoted either: tests/unit/test_evaluation.py covers the rule.)

Retention runs in the same retraining: an older version that was never promoted (a former challenger, planted
as a copy of the champion's folder without its PROMOTED marker) is deleted by the challenger's publish, while
the champion's older folder stays."""

import shutil
from pathlib import Path

import dagster as dg
import pytest

from support.demo_state import TRAIN_CONFIG, build_demo_state, instance_at
from support.resources import project_resources

# the champion's config (the demo run's) at under a third of its learning rate
WORSE = {**TRAIN_CONFIG, "learning_rate": 3e-4}
FORMER = "20000101T000000-former00"  # sorts before every real version: the oldest


@pytest.fixture(scope="module")
def demo_state(tmp_path_factory):
    return build_demo_state(tmp_path_factory)


def _champion(state):
    from llama_sft_dagster.config.evaluation import ChampionConfig
    from llama_sft_dagster.resources.model_registry import RegisteredModel

    return RegisteredModel(f"sqlite:///{state / 'mlflow.db'}", ChampionConfig().registered_model_name).champion()


def _plant_former_challenger(store, asset: str, champion_version: Path) -> Path:
    """An unpromoted version older than the champion's: what an earlier, not promoted retraining leaves."""
    former = store.root_path() / asset / "versions" / FORMER
    shutil.copytree(champion_version, former, symlinks=True, ignore=shutil.ignore_patterns("PROMOTED"))
    assert not (former / "PROMOTED").exists() and (champion_version / "PROMOTED").exists()
    return former


def _tensors_equal(a: Path, b: Path) -> bool:
    import torch
    from safetensors.torch import load_file

    x, y = (load_file(str(p / "adapter_model.safetensors")) for p in (a, b))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


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
    # the registry's source names the demo run's folder; its version's name is the same in this copy
    champion_merged = store.root_path() / "merged_model" / "versions" / Path(champion.source).parent.name
    former = {
        "train_adapter": _plant_former_challenger(store, "train_adapter", champion_adapter.parent),
        "merged_model": _plant_former_challenger(store, "merged_model", champion_merged),
    }
    resources = project_resources(state, artifacts=store)
    names = ["train_adapter", "merged_model", "adapter_evaluation", "champion_model"]
    with instance_at(tmp_path / "home") as instance:
        result = dg.materialize(
            [*all_assets, *all_checks],
            selection=names,
            resources=resources,
            instance=instance,
            run_config={"ops": {"train_adapter": {"config": WORSE}}},
            raise_on_error=False,
        )
        meta = {
            e.materialization.asset_key.path[-1]: e.materialization.metadata
            for e in result.get_asset_materialization_events()
        }
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        assert checks["adapter_evaluation_beats_base"], "the challenger must beat its base, so the registry decides"
        decision = meta["champion_model"]
        assert decision["promoted"].value is False
        assert "does not beat champion" in decision["reason"].value
        assert decision["challenger_version"].value == 2 and decision["champion_version"].value == 1
        challenger_adapter = Path(meta["train_adapter"]["path"].value)
        assert challenger_adapter != champion_adapter and not _tensors_equal(challenger_adapter, champion_adapter)
        # worse than the champion on the same rows (the champion re-scored), better than its base
        loss = decision["evaluation_loss_challenger"].value
        champion_loss = decision["evaluation_loss_champion_before"].value
        assert meta["adapter_evaluation"]["evaluation_loss_base"].value > loss > champion_loss, (loss, champion_loss)
        assert decision["registry"].value.endswith("/versions/2")
    # retention in that retraining: the former challenger's folders went, the champion's stayed beside the new ones
    assert int(_champion(state).version) == 1 and _champion(state).source == champion.source
    assert (champion_adapter / "adapter_model.safetensors").exists() and (champion_adapter.parent / "PROMOTED").exists()
    assert [p.name for p in store.versions("train_adapter")] == [
        champion_adapter.parent.name,
        challenger_adapter.parent.name,
    ]
    assert not former["train_adapter"].exists() and not former["merged_model"].exists()
    merged = [p.name for p in store.versions("merged_model")]
    assert merged[0] == champion_merged.name and len(merged) == 2
    assert (champion_merged / "model" / "model.safetensors").exists()
