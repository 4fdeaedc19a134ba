"""The tokenizer apart from the weights: the data stages read `base_tokenizer` (a few MB), only training and
what follows it read `base_model` (16 GB for the 8B), and the hub model depends on no data."""

import dagster as dg
import pytest

from llama_sft_dagster import definitions
from llama_sft_dagster.assets import model
from llama_sft_dagster.assets._versioned import for_profile
from llama_sft_dagster.assets.data_chain import FIRST_INPUT, STAGE_NAMES
from llama_sft_dagster.core.training.llama31 import LLAMA31_8B_INSTRUCT, REHEARSAL_SHAPE, rehearsal_config
from llama_sft_dagster.resources.artifacts import ArtifactStore
from llama_sft_dagster.resources.gpu import GpuResource
from llama_sft_dagster.resources.hub import HuggingFaceHub

DATA_ASSETS = {"bitext_raw", "multiwoz_raw", FIRST_INPUT, *STAGE_NAMES, "train_pairs", "validation_pairs"}


def _ancestors(graph, name: str) -> set[str]:
    seen, todo = set(), [dg.AssetKey(name)]
    while todo:
        for parent in graph.get(todo.pop()).parent_keys:
            if parent.to_user_string() not in seen:
                seen.add(parent.to_user_string())
                todo.append(parent)
    return seen


@pytest.mark.parametrize("profile", ["full", "rehearsal", "demo"])
def test_data_stages_need_only_the_tokenizer_and_the_hub_model_needs_no_data(profile):
    graph = definitions.build_defs(profile).resolve_asset_graph()
    for reader in ("token_limit_filtered", "sft_dataset"):
        assert "base_tokenizer" in _ancestors(graph, reader)
        assert "base_model" not in _ancestors(graph, reader), reader
    assert {"base_model", "sft_dataset"} <= _ancestors(graph, "train_adapter")
    model_inputs = _ancestors(graph, "base_model")
    if profile == "demo":  # the demo's tokenizer and tiny model are trained on the demo corpus
        assert FIRST_INPUT in model_inputs
    else:
        assert model_inputs == {"base_tokenizer"}
        assert not _ancestors(graph, "base_tokenizer") & DATA_ASSETS


def _fake_hub(monkeypatch) -> list[dict]:
    """A hub whose main moves from a... to b... after the first lookup; snapshot downloads write the real Llama 3.1
    tokenizer folder (config.json included). Returns the list of download calls."""
    import shutil

    import huggingface_hub

    from support.paths import shared_file

    heads, downloads = iter(["a" * 40, "b" * 40]), []

    class Api:
        def model_info(self, model_id, revision=None, timeout=None, token=None):
            sha = revision if revision and len(revision) == 40 else next(heads)
            return type("Info", (), {"sha": sha, "gated": "manual"})()

    def snapshot_download(repo_id, **kw):
        downloads.append(kw)
        shutil.copytree(shared_file("llama31_tokenizer"), kw["local_dir"], dirs_exist_ok=True)
        rehearsal_config({k: LLAMA31_8B_INSTRUCT[k] for k in REHEARSAL_SHAPE}).save_pretrained(kw["local_dir"])
        return str(kw["local_dir"])

    monkeypatch.setattr(huggingface_hub, "HfApi", Api)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return downloads


def _materialize(tmp_path, gpu: GpuResource):
    store = ArtifactStore(root=str(tmp_path / "artifacts"))
    assets = [for_profile(a, "full") for a in (model.base_tokenizer, model.base_model)]
    resources = {"artifacts": store, "hub": HuggingFaceHub(token="tok"), "gpu": gpu}
    return store, dg.materialize(assets, resources=resources, raise_on_error=False)


def test_hub_tokenizer_is_fetched_alone_and_the_weights_at_its_revision(tmp_path, monkeypatch):
    """The hub's main moves between the two downloads: the weights still come at the tokenizer's commit."""
    downloads = _fake_hub(monkeypatch)
    store, result = _materialize(tmp_path, GpuResource(device="cpu", allow_cpu_training=True))
    assert result.success
    tokenizer_kw, weights_kw = downloads
    assert not any("safetensors" in p for p in tokenizer_kw["allow_patterns"])  # no weights for the data stages
    assert "*.safetensors" in weights_kw["allow_patterns"]
    assert tokenizer_kw["revision"] == weights_kw["revision"] == "a" * 40
    meta = result.asset_materializations_for_node("base_model")[-1].metadata
    assert meta["revision"].value == "a" * 40 and meta["model_id"].value == "meta-llama/Llama-3.1-8B-Instruct"
    assert (store.path("base_tokenizer", "tokenizer") / "tokenizer.json").is_file()


def test_full_profile_on_a_cpu_stops_before_any_download_in_one_line(tmp_path, monkeypatch):
    downloads = _fake_hub(monkeypatch)
    _, result = _materialize(tmp_path, GpuResource(device="auto", allow_cpu_training=False))
    assert not result.success and downloads == []
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.step_failure_data.error.message
    assert "refusing to train on the CPU" in message and "allow_cpu_training=True" in message
