"""The rank sweep on the demo run's data: two partitions through train_adapter's code path, then the report."""

import json

import dagster as dg
import pytest

from support.demo_state import build_demo_state, copy_artifacts, instance_at
from support.resources import project_resources

SWEEP_CONFIG = {"max_steps": 4, "eval_steps": 2, "save_steps": 2}


@pytest.fixture(scope="module")
def demo_state(tmp_path_factory):
    return build_demo_state(tmp_path_factory)


@pytest.mark.slow
def test_two_ranks_and_the_report(demo_state, tmp_path):
    from llama_sft_dagster.definitions import sweep_assets

    state = copy_artifacts(demo_state, tmp_path / "state")
    resources = project_resources(state)
    with instance_at(tmp_path / "home") as instance:
        for rank in ("8", "32"):
            result = dg.materialize(
                sweep_assets,
                selection=["lora_rank_sweep"],
                partition_key=rank,
                resources=resources,
                instance=instance,
                run_config={"ops": {"lora_rank_sweep": {"config": SWEEP_CONFIG}}},
            )
            assert result.success
        report = dg.materialize(sweep_assets, selection=["rank_sweep_report"], resources=resources, instance=instance)
    rows = {
        r: json.loads((state / "artifacts" / "lora_rank_sweep" / f"r{r}" / "sweep.json").read_text()) for r in (8, 32)
    }
    assert [rows[r]["lora_alpha"] for r in (8, 32)] == [16, 64]  # alpha = 2r
    assert all(rows[r]["global_steps"] == 4 and rows[r]["seed"] == 42 for r in rows)  # one budget, one seed
    assert rows[32]["trainable_params"] == 4 * rows[8]["trainable_params"]  # LoRA parameters grow linearly in r
    for r, row in rows.items():
        assert 0 < row["rank_utilisation"] <= 1 and row["entropy_rank_mean"] <= r
        assert row["intent_loss_min"] <= row["validation_loss"] <= row["intent_loss_max"]
    meta = report.asset_materializations_for_node("rank_sweep_report")[0].metadata
    assert meta["ranks"].value == 2 and meta["missing_ranks"].value == "16, 64, 128"
    table = meta["table"].value.splitlines()
    assert table[2].startswith("| 8 | 16 |") and table[3].startswith("| 32 | 64 |") and "plot" in meta


def test_sweep_is_outside_the_pipeline_job():
    from llama_sft_dagster.definitions import build_defs

    defs = build_defs()
    pipeline = defs.resolve_job_def("sft_pipeline").asset_layer.executable_asset_keys
    sweep = defs.resolve_job_def("rank_sweep").asset_layer.executable_asset_keys
    assert dg.AssetKey("adapter_evaluation") in pipeline and dg.AssetKey("champion_model") in pipeline
    assert not {dg.AssetKey("lora_rank_sweep"), dg.AssetKey("rank_sweep_report")} & pipeline
    assert sweep == {dg.AssetKey("lora_rank_sweep")}
