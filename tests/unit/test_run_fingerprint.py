"""A training run's fingerprint (what decides whether a checkpoint may be resumed) includes the launch shape:
a checkpoint written by 1 process is not resumed by 2 (another global batch), nor under another accelerate
config; the same settings give the same fingerprint in every call."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llama_sft_dagster.assets.adapter_training import FORMAT_FILE, SFT_SPLITS, build_job
from llama_sft_dagster.config.training import TrainConfig
from llama_sft_dagster.core.training.device import MachineFacts, plan_device
from llama_sft_dagster.resources.artifacts import ArtifactStore
from llama_sft_dagster.resources.gpu import GpuResource


@pytest.fixture
def artifacts(tmp_path):
    """An artifact store holding what build_job reads: sft_dataset's splits and format, a base model folder."""
    store = ArtifactStore(root=str(tmp_path / "artifacts"))
    dataset = tmp_path / "artifacts" / "sft_dataset"
    dataset.mkdir(parents=True)
    for split in SFT_SPLITS:
        # the batch planner reads the templated lengths
        table = pa.table({"messages": [f"{split} sample"], "templated_tokens": [12]})
        pq.write_table(table, dataset / f"{split}.parquet")
    fmt = {"dataset_format": "prompt_completion", "max_length": 512, "filter_on_templated_length": True}
    (dataset / FORMAT_FILE).write_text(json.dumps(fmt))
    model = tmp_path / "artifacts" / "base_model" / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text('{"hidden_size": 64}')
    return store


def run_fingerprint(artifacts, tmp_path, processes=1, launch_config="ddp", **train) -> str:
    plan = plan_device("cpu", MachineFacts(False))
    job, _, _, _ = build_job(
        TrainConfig(**train),
        artifacts,
        GpuResource(device="cpu", launch_config=launch_config),
        plan,
        processes,
        tmp_path / "out",
        "train_adapter",
    )
    return job.run_fingerprint


def test_the_fingerprint_changes_with_the_process_count_and_the_launch_config(artifacts, tmp_path):
    one = run_fingerprint(artifacts, tmp_path, processes=1)
    assert run_fingerprint(artifacts, tmp_path, processes=1) == one  # deterministic: a rerun resumes
    two = run_fingerprint(artifacts, tmp_path, processes=2)
    fsdp = run_fingerprint(artifacts, tmp_path, processes=1, launch_config="fsdp2")
    assert len({one, two, fsdp}) == 3
    assert run_fingerprint(artifacts, tmp_path, processes=2, launch_config="fsdp2") not in {one, two, fsdp}


def test_the_fingerprint_changes_with_training_config_data_and_base_model(artifacts, tmp_path):
    one = run_fingerprint(artifacts, tmp_path)
    assert run_fingerprint(artifacts, tmp_path, lora_r=TrainConfig().lora_r * 2) != one
    model_config = tmp_path / "artifacts" / "base_model" / "model" / "config.json"
    model_config.write_text('{"hidden_size": 128}')
    base_changed = run_fingerprint(artifacts, tmp_path)
    assert base_changed != one
    other = pa.table({"messages": ["other"], "templated_tokens": [12]})
    pq.write_table(other, tmp_path / "artifacts" / "sft_dataset" / "train.parquet")
    assert run_fingerprint(artifacts, tmp_path) not in {one, base_changed}
