"""End-to-end demo-profile training: base_tokenizer, base_model -> sft_dataset (+ checks) -> train_adapter ->
merged_model (+ check).

Train/validation pairs are built in the test from the demo corpus generator (PAIR_SCHEMA), so this runs
without the data assets. Real Dagster instance, real MLflow SQLite store, real TensorBoard logs.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest

from llama_sft_dagster.core.data.schema import PAIR_SCHEMA
from llama_sft_dagster.core.data.storage import write_parquet

pytestmark = pytest.mark.slow


def demo_pairs(n: int) -> pa.Table:
    from llama_sft_dagster.core.demo.corpus import generate_bitext_rows

    t = generate_bitext_rows(seed=13, n_rows=2 * n)
    rows = [
        {
            "pair_id": f"bitext:test:{i}",
            "source": "bitext",
            "instruction": ins,
            "response": res,
            "intent": None,
            "category": None,
            "services": None,
            "flags": None,
            "source_file": "test",
            "row_index": i,
            "dialogue_id": None,
            "turn_index": None,
        }
        for i, (ins, res) in enumerate(zip(t.column("instruction").to_pylist(), t.column("response").to_pylist()))
        if res and 5 < len(res.split()) < 120 and ins.isascii()
    ]
    return pa.Table.from_pylist(rows[:n], schema=PAIR_SCHEMA)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One demo training run shared by the assertions below (it is the slow part)."""
    from llama_sft_dagster.assets import model, training
    from llama_sft_dagster.housekeeping.pool_guard import GpuPoolGuard
    from llama_sft_dagster.resources.artifacts import ArtifactStore
    from llama_sft_dagster.resources.gpu import GpuResource
    from llama_sft_dagster.resources.hub import HuggingFaceHub
    from llama_sft_dagster.resources.tracking import MlflowTracking

    root = tmp_path_factory.mktemp("artifacts")
    pairs = demo_pairs(360)
    write_parquet(pairs, root / "raw_pairs" / "data.parquet")
    write_parquet(pairs.slice(0, 330), root / "train_pairs" / "data.parquet")
    write_parquet(pairs.slice(330), root / "validation_pairs" / "data.parquet")
    resources = {
        "artifacts": ArtifactStore(root=str(root)),
        "gpu": GpuResource(device="cpu", lock_dir=str(root / "locks")),
        "pool_guard": GpuPoolGuard(),
        "hub": HuggingFaceHub(),
        "tracking": MlflowTracking(tracking_uri=f"sqlite:///{root}/mlflow.db"),
    }
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [
            model.base_tokenizer,
            model.base_model,
            training.sft_dataset,
            training.train_adapter,
            training.merged_model,
            training.sft_dataset_label_masking,
            training.sft_dataset_templated_length,
            training.merged_model_logits,
        ],
        resources=resources,
        instance=instance,
        run_config={"ops": {"train_adapter": {"config": {"max_steps": 30, "eval_steps": 10, "save_steps": 10}}}},
    )
    return root, result, resources


def _metadata(result, asset: str) -> dict:
    mats = result.asset_materializations_for_node(asset)
    return {k: v.value for k, v in mats[-1].metadata.items()}


def _check(result, name: str):
    evals = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    assert len(evals) == 1, name
    return evals[0]


def test_training_loss_goes_down_and_best_checkpoint_is_lowest_eval(trained):
    root, result, _ = trained
    assert result.success
    meta = _metadata(result, "train_adapter")
    assert meta["final_train_loss"] < meta["first_train_loss"]
    state = json.loads(
        sorted((root / "train_adapter" / "checkpoints").glob("checkpoint-*/trainer_state.json"))[-1].read_text()
    )
    evals = [(h["eval_loss"], h["step"]) for h in state["log_history"] if "eval_loss" in h]
    assert len(evals) == 3
    assert meta["best_eval_step"] == min(evals)[1] and meta["best_eval_loss"] == pytest.approx(
        min(evals)[0], rel=1e-3
    )  # 4 significant digits
    # the saved adapter is the best checkpoint's, byte for byte in its weights
    from safetensors.torch import load_file

    best = load_file(
        root / "train_adapter" / "checkpoints" / f"checkpoint-{meta['best_eval_step']}" / "adapter_model.safetensors"
    )
    saved = load_file(root / "train_adapter" / "current" / "adapter" / "adapter_model.safetensors")
    assert best.keys() == saved.keys() and all((best[k] == saved[k]).all() for k in best)
    assert meta["mlflow_run_id"] and meta["trainable_params"] > 0 and meta["device"] == "cpu"
    assert meta["device_lock_wait_s"] >= 0
    assert (root / "locks" / "cpu.lock").read_text() == ""  # train_adapter took the device lock, then let go
    assert {"loss_plot", "grad_norm_plot", "effective_rank_plot"} <= meta.keys()
    assert not list((root / "train_adapter" / "current" / "adapter").glob("*.bin"))


def test_masking_and_length_checks(trained):
    _, result, _ = trained
    masking = _check(result, "sft_dataset_label_masking")
    assert masking.passed
    meta = {k: v.value for k, v in masking.metadata.items()}
    assert meta["train_leaked"] == 0 and meta["train_unsupervised_reply"] == 0 and meta["train_reply_tokens"] > 0
    assert (
        0 < meta["train_token_efficiency_sampled_batches"] < 1 and 0 <= meta["train_padding_share_sampled_batches"] < 1
    )
    length = _check(result, "sft_dataset_templated_length")
    assert length.passed == (length.metadata["over_max_length"].value == 0)


def test_merge_check_passes_and_merge_returns_early(trained):
    root, result, _ = trained
    check = _check(result, "merged_model_logits")
    assert check.passed, check.metadata
    assert check.metadata["max_abs_diff_merged_vs_adapter"].value <= 1e-4
    from llama_sft_dagster.core.training.merge import merge_lora

    out = root / "merged_model" / "current" / "model"  # versioned assets: `current` is the published version
    before = (out / "model.safetensors").stat().st_mtime_ns
    merge_lora(root / "train_adapter" / "current" / "adapter", out)
    assert (out / "model.safetensors").stat().st_mtime_ns == before


def test_masking_check_fails_on_completion_only_loss_with_messages(trained):
    """The known-broken TRL setup: completion_only_loss on plain `messages` rows supervises every token."""
    from llama_sft_dagster.assets import training

    root, _, resources = trained
    fmt_path = root / "sft_dataset" / "format.json"
    good = fmt_path.read_text()
    from llama_sft_dagster.core.data.storage import read_parquet
    from llama_sft_dagster.core.training.chat_format import build_rows

    for split in ("train", "validation"):
        pairs = read_parquet(root / f"{split}_pairs" / "data.parquet")
        rows = build_rows(pairs.column("instruction").to_pylist(), pairs.column("response").to_pylist(), "messages")
        write_parquet(pa.Table.from_pylist(rows), root / "sft_dataset" / f"broken_{split}.parquet")
    try:
        # bypass SftDatasetConfig's validator, which rejects this combination up front
        fmt_path.write_text(
            json.dumps(
                {
                    **json.loads(good),
                    "dataset_format": "messages",
                    "completion_only_loss": True,
                    "assistant_only_loss": False,
                }
            )
        )
        for split in ("train", "validation"):
            (root / "sft_dataset" / f"{split}.parquet").rename(root / "sft_dataset" / f"good_{split}.parquet")
            (root / "sft_dataset" / f"broken_{split}.parquet").rename(root / "sft_dataset" / f"{split}.parquet")
        result = dg.materialize(
            [training.sft_dataset_label_masking, training.sft_dataset.to_source_asset()],
            resources=resources,
            selection=dg.AssetSelection.checks(training.sft_dataset_label_masking),
            raise_on_error=False,
        )
        check = _check(result, "sft_dataset_label_masking")
        assert not check.passed
        assert check.metadata["train_leaked"].value > 0
    finally:
        fmt_path.write_text(good)
        for split in ("train", "validation"):
            (root / "sft_dataset" / f"good_{split}.parquet").replace(root / "sft_dataset" / f"{split}.parquet")


MONITOR_KEYS = {
    "monitor/token_efficiency",
    "monitor/padding_share",
    "grad_norm/q_proj",
    "grad_norm/down_proj",
    "lora_drift/v_proj",
    "eff_rank_entropy/o_proj",
    "eff_rank_nuc_frob/q_proj",
    "stable_rank/up_proj",
}
# MLflow gets each per-module family as one series (monitoring.mlflow_families) and the Trainer's logs grouped
MLFLOW_KEYS = {
    "monitor/token_efficiency",
    "monitor/padding_share",
    "grad_norm/lora_total",
    "grad_norm/mean_over_modules",
    "lora_drift/mean_over_modules",
    "eff_rank_entropy/mean_over_modules",
    "stable_rank/mean_over_modules",
    "train/loss",
    "train/learning_rate",
    "eval/loss",
}


def test_mlflow_run_finished_and_tensorboard_carry_the_monitor_metrics(trained):
    import mlflow
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, result, resources = trained
    meta = _metadata(result, "train_adapter")
    client = mlflow.MlflowClient(tracking_uri=resources["tracking"].resolved_uri())
    run = client.get_run(meta["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert meta["mlflow_status"] == "live" and meta["mlflow_metrics_buffered"] == 0, "the store took every value"
    assert MLFLOW_KEYS <= run.data.metrics.keys()
    assert not [k for k in run.data.metrics if k.endswith("_proj")], "per-module series belong in TensorBoard"
    assert run.data.tags["dagster.run_id"] == result.run_id
    from llama_sft_dagster.config.training import TrainConfig

    assert run.data.params["config.train.lora_r"] == str(TrainConfig().lora_r)  # the full config is logged
    run_dir = Path(meta["tensorboard_run"])  # beside the version folders: every run's curves side by side
    assert run_dir.parent == root / "train_adapter" / "tensorboard"
    events = sorted(run_dir.rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event files"
    tags = set()
    for f in events:
        acc = EventAccumulator(str(f))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    assert MONITOR_KEYS | {"train/loss", "eval/loss", "train/learning_rate"} <= tags
    assert any(t.startswith("act_norm/layer_") for t in tags)
