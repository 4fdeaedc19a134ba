"""Every run-config recipe in recipes/ is valid for the sft_pipeline job (the launchpad) and for the asset job
`dagster asset materialize -c` builds, under the real config schema; the README lists each one."""

import dagster as dg
import pytest
import yaml

from support.paths import REPO

RECIPES = sorted((REPO / "recipes").glob("*.yaml"))


def test_the_four_common_variants_exist():
    assert {p.stem for p in RECIPES} >= {"full_seed", "small_rank", "multiwoz_only", "local_files"}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_validates_against_the_job_and_asset_job_schema(recipe):
    from llama_sft_dagster.definitions import build_defs

    defs = build_defs()

    config = yaml.safe_load(recipe.read_text())
    for job in (defs.resolve_job_def("sft_pipeline"), defs.resolve_implicit_global_asset_job_def()):
        assert dg.validate_run_config(job, config)
    assert f"recipes/{recipe.name}" in (REPO / "README.md").read_text(), f"README does not list {recipe.name}"


def test_a_misspelled_field_is_refused_by_the_same_validation():
    from llama_sft_dagster.definitions import build_defs

    defs = build_defs()

    config = yaml.safe_load((REPO / "recipes" / "small_rank.yaml").read_text())
    config["ops"]["train_adapter"]["config"]["lora_rank"] = config["ops"]["train_adapter"]["config"].pop("lora_r")
    with pytest.raises(dg.DagsterInvalidConfigError, match="lora_rank"):
        dg.validate_run_config(defs.resolve_job_def("sft_pipeline"), config)


def test_seed_recipe_holds_the_seeds_values():
    from llama_sft_dagster.config.training import TrainConfig

    train = yaml.safe_load((REPO / "recipes" / "full_seed.yaml").read_text())["ops"]["train_adapter"]["config"]
    seed = {
        "lora_r": 64,
        "lora_alpha": 128,
        "per_device_train_batch_size": 8,
        "gradient_accumulation_steps": 4,
        "learning_rate": 2e-4,
        "num_train_epochs": 3.0,
        "max_steps": -1,
        "eval_steps": 200,
        "save_steps": 200,
    }
    assert {k: train[k] for k in seed} == seed
    TrainConfig(**train)  # and the trainer config accepts them together (save_steps a multiple of eval_steps...)


def test_multiwoz_only_reads_no_bitext_rows():
    from llama_sft_dagster.resources.data_sources import BitextSource

    location = yaml.safe_load((REPO / "recipes" / "multiwoz_only.yaml").read_text())["resources"]["bitext"]["config"]
    assert BitextSource(**location).load().num_rows == 0
