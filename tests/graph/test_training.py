"""Demo-profile training end to end, read from the session's demo run (tests/support/demo_state.py: `make
demo`'s command, base_tokenizer, base_model -> sft_dataset (+ checks) -> train_adapter -> merged_model (+ check)
-> evaluation): its Dagster instance, real MLflow SQLite store and real TensorBoard logs.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest

from llama_sft_dagster.core.data.storage import write_parquet
from llama_sft_dagster.core.training.device import CPU_MALLOC_TUNABLES
from support.demo_state import TRAIN_CONFIG, build_demo_state, copy_artifacts, instance_at
from support.resources import project_resources

pytestmark = pytest.mark.slow


class DemoRunRecord:
    """What the demo run recorded on its instance: each asset's latest materialization metadata and each check's
    latest evaluation (the same events `dg.materialize`'s result would give)."""

    def __init__(self, state: Path):
        self.state = state
        with instance_at(state / "dagster_home") as instance:
            self.metadata = {
                key.path[-1]: {k: v.value for k, v in event.asset_materialization.metadata.items()}
                for key in instance.get_asset_keys()
                if (event := instance.get_latest_materialization_event(key)) is not None
            }
            self.run_id = instance.get_latest_materialization_event(dg.AssetKey("train_adapter")).run_id
            self.checks = {}
            for key in build_demo_checks():
                record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key]).get(key)
                if record is not None and record.event is not None:
                    self.checks[key.name] = record.event.dagster_event.event_specific_data


def build_demo_checks() -> list[dg.AssetCheckKey]:
    from llama_sft_dagster.definitions import build_defs

    return list(build_defs("demo").resolve_asset_graph().asset_check_keys)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The session's demo run (trained once for the whole suite): its artifacts root and what it recorded."""
    state = build_demo_state(tmp_path_factory)
    return state / "artifacts", DemoRunRecord(state)


def _metadata(run: DemoRunRecord, asset: str) -> dict:
    return run.metadata[asset]


def _check(run: DemoRunRecord, name: str):
    assert name in run.checks, name
    return run.checks[name]


def test_training_loss_goes_down_and_best_checkpoint_is_lowest_eval(trained):
    root, result = trained
    meta = _metadata(result, "train_adapter")
    assert meta["final_train_loss"] < meta["first_train_loss"]
    states = (root / "train_adapter" / "checkpoints").glob("checkpoint-*/trainer_state.json")
    state = json.loads(max(states, key=lambda f: int(f.parent.name.rsplit("-", 1)[1])).read_text())  # the last
    evals = [(h["eval_loss"], h["step"]) for h in state["log_history"] if "eval_loss" in h]
    assert len(evals) == TRAIN_CONFIG["max_steps"] // TRAIN_CONFIG["eval_steps"]
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
    assert meta["glibc_tunables"] == CPU_MALLOC_TUNABLES  # as the training process saw its environment on the CPU
    assert {"loss_plot", "grad_norm_plot", "effective_rank_plot"} <= meta.keys()
    assert not list((root / "train_adapter" / "current" / "adapter").glob("*.bin"))


def test_masking_and_length_checks(trained):
    _, result = trained
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
    root, result = trained
    check = _check(result, "merged_model_logits")
    assert check.passed, check.metadata
    assert check.metadata["max_abs_diff_merged_vs_adapter"].value <= 1e-4
    from llama_sft_dagster.core.training.merge import merge_lora

    out = root / "merged_model" / "current" / "model"  # versioned assets: `current` is the published version
    before = (out / "model.safetensors").stat().st_mtime_ns
    merge_lora(root / "train_adapter" / "current" / "adapter", out)
    assert (out / "model.safetensors").stat().st_mtime_ns == before


def test_masking_check_fails_on_completion_only_loss_with_messages(trained, tmp_path):
    """The known-broken TRL setup: completion_only_loss on plain `messages` rows supervises every token."""
    from llama_sft_dagster.assets import training

    state = copy_artifacts(trained[0].parent, tmp_path / "state", validation_rows=None)
    root, resources = state / "artifacts", project_resources(state)
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
        (check,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "sft_dataset_label_masking"]
        assert not check.passed
        assert check.metadata["train_leaked"].value > 0
    finally:
        fmt_path.write_text(good)
        for split in ("train", "validation"):
            (root / "sft_dataset" / f"good_{split}.parquet").replace(root / "sft_dataset" / f"{split}.parquet")


# the monitor's diagnostics, under train_monitor/ in TensorBoard (every module) and MLflow (core/training/series.py)
MONITOR_KEYS = {
    "train_monitor/token_efficiency",
    "train_monitor/padding_share",
    "train_monitor/grad_norm/q_proj",
    "train_monitor/grad_norm/down_proj",
    "train_monitor/lora_drift/v_proj",
    "train_monitor/eff_rank_entropy/o_proj",
    "train_monitor/eff_rank_nuc_frob/q_proj",
    "train_monitor/stable_rank/up_proj",
}
# the Trainer's series under the glossary's names, in both tools
TRAINER_KEYS = {"train_loss", "eval_loss", "learning_rate", "grad_norm"}
# MLflow gets each per-module family as one series (monitoring.mlflow_families)
MLFLOW_KEYS = {
    "train_monitor/token_efficiency",
    "train_monitor/padding_share",
    "train_monitor/grad_norm/lora_total",
    "train_monitor/grad_norm/mean_over_modules",
    "train_monitor/lora_drift/mean_over_modules",
    "train_monitor/eff_rank_entropy/mean_over_modules",
    "train_monitor/stable_rank/mean_over_modules",
    *TRAINER_KEYS,
}


def test_mlflow_run_finished_and_tensorboard_carry_the_monitor_metrics(trained):
    import mlflow
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, result = trained
    meta = _metadata(result, "train_adapter")
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{result.state / 'mlflow.db'}")
    run = client.get_run(meta["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert meta["mlflow_status"] == "live" and meta["mlflow_metrics_buffered"] == 0, "the store took every value"
    assert MLFLOW_KEYS <= run.data.metrics.keys()
    assert not [k for k in run.data.metrics if k.endswith("_proj")], "per-module series belong in TensorBoard"
    assert run.data.tags["dagster.run_id"] == result.run_id
    from llama_sft_dagster.assets.adapter_training import tensorboard_run_folder
    from llama_sft_dagster.config.training import TrainConfig

    assert run.data.params["config.train.lora_r"] == str(TrainConfig().lora_r)  # the full config is logged
    # one link to the run's curves (a URL, no second path-valued entry); its folder sits beside the version
    # folders: every run's curves side by side
    assert "tensorboard_run" not in meta and meta["tensorboard"].startswith("http")
    run_dir = root / "train_adapter" / "tensorboard" / tensorboard_run_folder(meta["tensorboard"])
    assert run_dir.is_dir()
    events = sorted(run_dir.rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event files"
    tags = set()
    for f in events:
        acc = EventAccumulator(str(f))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    assert MONITOR_KEYS | TRAINER_KEYS <= tags
    assert any(t.startswith("train_monitor/act_norm/layer_") for t in tags)
    # the losses sort first in both tools (they list series by name), the diagnostics after them
    assert sorted(tags)[:4] == sorted(TRAINER_KEYS) and sorted(run.data.metrics)[:4] == sorted(TRAINER_KEYS)
    assert not {t for t in tags | set(run.data.metrics) if "/" in t and not t.startswith("train_monitor/")}
