"""The model card of the shared demo run (tests/support/demo_state.py; no pipeline run of its own): README.md in
the merged model's folder, in Hugging Face's format, each section carrying the run's own figures, and the same
text in MLflow with the registered version (its description, and an artifact of the training run)."""

import json
from pathlib import Path

import dagster as dg
import pytest

from support.demo_state import TRAIN_CONFIG, build_demo_state, instance_at


@pytest.fixture(scope="module")
def demo_state(tmp_path_factory):
    return build_demo_state(tmp_path_factory)


@pytest.mark.slow
def test_the_demo_runs_model_card_carries_its_figures(demo_state, tmp_path):
    from mlflow.tracking import MlflowClient

    from llama_sft_dagster.assets.evaluation import DECISION_FILE, SUMMARY_FILE
    from llama_sft_dagster.config.evaluation import ChampionConfig
    from llama_sft_dagster.core.data.storage import read_parquet
    from llama_sft_dagster.core.report.losses import sig4
    from llama_sft_dagster.core.report.model_card import LLAMA_NOTICE, split_front_matter
    from llama_sft_dagster.resources.artifacts import ArtifactStore
    from llama_sft_dagster.resources.model_registry import CARD_ARTIFACT_DIR

    store = ArtifactStore(root=str(demo_state / "artifacts"))
    card = store.path("merged_model", "model") / "README.md"
    front, body = split_front_matter(card.read_text())
    decision = json.loads(store.path("champion_model", DECISION_FILE).read_text())
    summary = json.loads(store.path("adapter_evaluation", SUMMARY_FILE).read_text())

    # front matter: the demo's base is local, so no hub base_model and no Llama licence is claimed for it
    assert front["library_name"] == "transformers" and "base_model" not in front and front["license"] == "other"
    assert {"lora", "sft", "trl"} <= set(front["tags"]) and front["datasets"] == []
    name = ChampionConfig().registered_model_name
    assert body.splitlines()[1] == f"# {name} v{decision['version']}"
    assert "tiny Llama-architecture model" in body and LLAMA_NOTICE in body
    # data lineage: both demo sources with where they were read and their raw tables' data versions (the
    # instance's record), and the funnel's real counts
    with instance_at(demo_state / "dagster_home") as instance:
        for source in ("bitext", "multiwoz"):
            event = instance.get_latest_materialization_event(dg.AssetKey(f"{source}_raw"))
            raw_version = event.asset_materialization.tags["dagster/data_version"]
            # `make demo` observes the sources before it reads them: the card gives the observed version
            observed = instance.fetch_observations(dg.AssetKey(f"{source}_source"), limit=1).records
            version = observed[0].asset_observation.tags["dagster/data_version"] if observed else "not observed"
            assert f"| {source} | demo | {version} |" in body, version
            assert f"| {source} | demo | {version} | {raw_version} |" in body
    sft_rows = sum(read_parquet(store.path("sft_dataset", f"{s}.parquet")).num_rows for s in ("train", "validation"))
    kept = read_parquet(store.path("train_pairs")).num_rows + read_parquet(store.path("validation_pairs")).num_rows
    assert f"| sft_dataset (samples) | {kept} | {sft_rows} |" in body  # the unit in the label where not pairs
    # training: the run's own config (the shared run trains 10 steps, not the default)
    assert f"| max_steps | {TRAIN_CONFIG['max_steps']} |" in body and "| lora_r | " in body
    # evaluation: the glossary's losses with this run's figures, and the decision
    loss = summary["evaluation_loss_tuned"]
    assert f"| evaluation_loss | {sig4(summary['evaluation_loss_base']):.4g} | {sig4(loss):.4g} |" in body
    assert "| validation | overall |" in body and f"Champion decision: {decision['reason']}" in body
    assert "Not evaluated yet" not in body
    for heading in ("## Data lineage", "## Training", "## Evaluation", "## Intended use", "## Limits"):
        assert heading in body

    # MLflow: the version's description is the card's body, and the run the version points at holds it as an artifact
    uri = f"sqlite:///{demo_state / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = client.get_model_version(name, str(decision["version"]))
    assert version.description == body.strip()  # the Markdown the registry page renders; the file keeps the YAML
    assert version.run_id == summary["training_mlflow_run_id"]
    logged = [a.path for a in client.list_artifacts(version.run_id, CARD_ARTIFACT_DIR)]
    assert logged == [f"{CARD_ARTIFACT_DIR}/README.md"]
    downloaded = client.download_artifacts(version.run_id, logged[0], str(tmp_path))
    assert Path(downloaded).read_text() == card.read_text()
