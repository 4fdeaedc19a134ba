"""recipes/own_conversations.yaml end to end through sft_dataset (no training: the data chain, a briefly
pretrained demo base model, the templating and its blocking checks), on the sample exports in examples/."""

from collections import Counter

import dagster as dg
import pyarrow.parquet as pq
import pytest
import yaml

from support.paths import REPO
from support.resources import project_resources

RECIPE = REPO / "recipes" / "own_conversations.yaml"
RECIPE_OPS = yaml.safe_load(RECIPE.read_text())["ops"]  # sft_dataset's multi-turn settings


def recipe_resources(root) -> dict:
    from llama_sft_dagster.assets.source_table import SOURCES

    config = yaml.safe_load(RECIPE.read_text())["resources"]
    built = {}
    for source in SOURCES:
        fields = dict(config.get(source.name, {}).get("config", {}))
        if fields.get("location", "none") not in ("none", "demo"):
            fields["location"] = str(REPO / fields["location"])  # the recipe's paths are relative to the repo
        built[source.name] = source.resource(**fields)
    return project_resources(root, **built)


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory):
    from llama_sft_dagster.definitions import all_assets, all_checks

    root = tmp_path_factory.mktemp("own_conversations")
    result = dg.materialize(
        [*all_assets, *all_checks],
        selection=dg.AssetSelection.assets("sft_dataset").upstream(),
        resources=recipe_resources(root),
        instance=dg.DagsterInstance.ephemeral(),
        run_config={"ops": RECIPE_OPS},  # sft_dataset reads base_tokenizer: no base model is built
    )
    return root / "artifacts", result


def test_every_example_form_reaches_the_pairs(recipe_run):
    artifacts, result = recipe_run
    assert result.success
    raw = pq.read_table(artifacts / "conversations_raw" / "data.parquet")
    files = set(raw.column("source_file").to_pylist())
    assert files == {
        "app_chats.parquet",
        "archive/chats_2025.jsonl.gz",
        "archive/tickets_2024.jsonl.zst",
        "chat_messages.jsonl",
        "helpdesk_tickets.csv",
        "sharegpt.json",
    }
    pairs = pq.read_table(artifacts / "raw_pairs" / "data.parquet")
    per_file = Counter(pairs.column("source_file").to_pylist())
    assert set(per_file) == files  # each form gave pairs: Customer/Agent mapped, question/answer columns mapped
    assert set(pairs.column("source").to_pylist()) == {"conversations"}
    assert pq.read_table(artifacts / "bitext_raw" / "data.parquet").num_rows == 0  # the walkthrough's sources off


def test_counts_and_checks(recipe_run):
    artifacts, result = recipe_run
    raw_pairs = {k: v.value for k, v in result.asset_materializations_for_node("raw_pairs")[-1].metadata.items()}
    assert raw_pairs["conversations_pairs_out"] > 100 and raw_pairs["bitext_pairs_out"] == 0
    assert raw_pairs["dropped_system_message"] == 40  # chat_messages.jsonl: one system message per chat, counted
    checks = {(e.asset_key.to_user_string(), e.check_name): e.passed for e in result.get_asset_check_evaluations()}
    assert checks[("raw_pairs", "rows_accounted_for")]
    # multi-turn samples (earlier turns as context): the masking check saw them, only the last reply supervised
    assert checks[("sft_dataset", "sft_dataset_label_masking")]
    sft = {k: v.value for k, v in result.asset_materializations_for_node("sft_dataset")[-1].metadata.items()}
    assert sft["train_samples_with_context"] > 0 and sft["train_context_turns"] > sft["train_samples_with_context"]
    for split in ("train", "validation"):
        assert pq.read_table(artifacts / "sft_dataset" / f"{split}.parquet").num_rows > 0


def masking_metadata(result) -> dict:
    (check,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "sft_dataset_label_masking"]
    assert check.passed, check.metadata
    return {k: v.value for k, v in check.metadata.items()}


def test_loss_on_every_reply_passes_the_masking_check(recipe_run):
    """sft_dataset again on the recipe's pairs with loss_turns='all': the blocking check now expects (and finds)
    every reply of each sample supervised, so more reply tokens than with the loss on the last reply only."""
    from llama_sft_dagster.definitions import all_assets, all_checks

    artifacts, last = recipe_run
    result = dg.materialize(
        [*all_assets, *all_checks],
        selection=dg.AssetSelection.assets("sft_dataset"),
        resources=recipe_resources(artifacts.parent),
        instance=dg.DagsterInstance.ephemeral(),
        run_config={"ops": {"sft_dataset": {"config": {**RECIPE_OPS["sft_dataset"]["config"], "loss_turns": "all"}}}},
    )
    assert result.success
    every, only_last = masking_metadata(result), masking_metadata(last)
    assert every["train_leaked"] == every["train_unsupervised_reply"] == 0
    assert every["train_reply_tokens"] > only_last["train_reply_tokens"]
