"""The rehearsal profile end to end on the CPU: the full profile's code and defaults with Llama 3.1's real
tokenizer and chat template, the real data samples (../shared/data) and a tiny random-init model with
Llama-3.1-8B-Instruct's config, through merged_model, in a fresh process (SFT_PROFILE is read at import).

Each §1 property of issue 9 is a blocking check of the run (masking: pad, one BOS, stock header, every
source sampled; merged_model_stops_on_eot) and is asserted here from the check results and the files;
tests/unit/test_llama31_template.py shows each check failing on broken input. The run is the session's
(tests/support/rehearsal_state.py), shared with tests/e2e/test_rehearsal_multiprocess.py."""

import json

import pytest

from llama_sft_dagster.core.training.device import CPU_MALLOC_TUNABLES
from llama_sft_dagster.resources.artifacts import ArtifactStore
from support.rehearsal_state import build_rehearsal_state

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    state, run = build_rehearsal_state(tmp_path_factory)
    return state / "artifacts", run


def test_runs_through_merged_model_with_every_check_passing(rehearsal):
    artifacts, run = rehearsal
    failed = {k: v["metadata"] for k, v in run["checks"].items() if not v["passed"]}
    assert run["success"] and not failed, failed
    assert {"sft_dataset_label_masking", "merged_model_logits", "merged_model_stops_on_eot"} <= set(run["checks"])
    assert (ArtifactStore(root=str(artifacts)).path("merged_model", "model") / "model.safetensors").is_file()
    assert run["assets"]["train_adapter"]["glibc_tunables"] == CPU_MALLOC_TUNABLES  # what the rank started with


def test_base_model_has_llama31_identity_and_tiny_widths(rehearsal):
    artifacts, _ = rehearsal
    config = json.loads((artifacts / "base_model" / "model" / "config.json").read_text())
    assert config["vocab_size"] == 128256 and config["bos_token_id"] == 128000
    assert config["eos_token_id"] == [128001, 128008, 128009] and config["rms_norm_eps"] == 1e-5
    assert config["rope_parameters"]["rope_type"] == "llama3" and config["tie_word_embeddings"] is False
    assert config["num_key_value_heads"] < config["num_attention_heads"] and config["hidden_size"] <= 64


def test_masking_check_covered_both_sources_with_the_reserved_pad_and_one_bos(rehearsal):
    meta = rehearsal[1]["checks"]["sft_dataset_label_masking"]["metadata"]
    for split in ("train", "eval"):
        assert meta[f"{split}_template_errors"] == meta[f"{split}_pad_errors"] == 0
        assert meta[f"{split}_leaked"] == meta[f"{split}_unsupervised_reply"] == meta[f"{split}_text_mismatch"] == 0
        assert meta[f"{split}_supervised"] == meta[f"{split}_reply_tokens"] > 0
    assert meta["train_samples_checked_bitext"] > 0 and meta["train_samples_checked_multiwoz"] > 0


def test_no_silent_truncation_and_merged_model_stops_on_eot(rehearsal):
    artifacts, run = rehearsal
    sft = run["assets"]["sft_dataset"]
    assert sft["train_over_max_length"] == sft["train_truncated_samples"] == 0  # over-long rows were dropped instead
    assert sft["train_rows_in"] == sft["train_rows_out"] + sft.get("train_dropped_templated_too_long", 0)
    stop = run["checks"]["merged_model_stops_on_eot"]["metadata"]
    assert stop["tokenizer_eos"] == "<|eot_id|>" and 128009 in json.loads(stop["generation_eos_token_id"])
    merge = run["checks"]["merged_model_logits"]["metadata"]
    assert merge["weights_passed"] and merge["weights_merged_dtype"] == "bfloat16"


def test_multiwoz_train_split_only_by_default(rehearsal):
    import pyarrow.parquet as pq

    artifacts, _ = rehearsal
    assert set(pq.read_table(artifacts / "multiwoz_raw" / "data.parquet").column("split").to_pylist()) == {"train"}
