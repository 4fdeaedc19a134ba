"""Faults on the training side: a SIGKILLed `train_adapter` resumes, an unreachable MLflow does not stop
training, half-written checkpoints are skipped, empty splits fail early with a clear message.

The slow tests share one demo run of the whole graph (tests/support/demo_state.py) and train on private copies.
"""

import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from llama_sft_dagster.core.training.trainer import RUN_CONFIG, last_complete_checkpoint, resume_checkpoint
from support.demo_state import build_demo_state, copy_artifacts, instance_at
from support.paths import REPO
from support.resources import project_resources

KILL_CONFIG = {"max_steps": 12, "eval_steps": 4, "save_steps": 4}  # not the demo run's 10 steps (`_ours`)


@pytest.fixture(scope="module")
def demo_state(tmp_path_factory):
    return build_demo_state(tmp_path_factory)


def _digest(folder) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _materialize(state, names, run_config=None, **overrides):
    from llama_sft_dagster.definitions import all_assets, all_checks

    with instance_at(state / "dagster_home") as instance:
        return dg.materialize(
            [*all_assets, *all_checks],
            selection=names,
            resources=project_resources(state, **overrides),
            instance=instance,
            run_config=run_config or {},
            raise_on_error=False,
        )


def _metadata(result, asset):
    return {k: v.value for k, v in result.asset_materializations_for_node(asset)[-1].metadata.items()}


# --- half-written checkpoints (pure folder logic) ---------------------------------------------------


def _checkpoint(folder, step, complete=True):
    (folder / f"checkpoint-{step}").mkdir(parents=True)
    if complete:
        (folder / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")


def test_half_written_checkpoint_is_skipped_and_removed(tmp_path):
    """A kill between the Trainer's save_model and its trainer_state.json leaves checkpoint-N without the
    state file; transformers' own get_last_checkpoint would pick it and resume would fail on every rerun."""
    ck = tmp_path / "ck"
    _checkpoint(ck, 5)
    _checkpoint(ck, 10)
    _checkpoint(ck, 15, complete=False)
    (ck / RUN_CONFIG).write_text(json.dumps({"fingerprint": "fp", "completed": False}))
    assert resume_checkpoint(ck, "fp") == str(ck / "checkpoint-10")
    assert not (ck / "checkpoint-15").exists() and (ck / "checkpoint-5").exists()


def test_only_half_written_checkpoints_start_fresh(tmp_path):
    _checkpoint(tmp_path, 5, complete=False)
    assert last_complete_checkpoint(tmp_path) is None and not (tmp_path / "checkpoint-5").exists()


# --- a real SIGKILL mid-training --------------------------------------------------------------------


def _start_training(state):
    """`dagster asset materialize --select train_adapter` in its own process group, on the copied store."""
    env = {
        **os.environ,
        "SFT_STATE_DIR": str(state),
        "DAGSTER_HOME": str(state / "dagster_home"),
        "SFT_PROFILE": "demo",
    }
    (state / "dagster_home").mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "dagster",
        "asset",
        "materialize",
        "-m",
        "llama_sft_dagster.definitions",
        "--select",
        "train_adapter",
        "--config-json",
        json.dumps({"ops": {"train_adapter": {"config": KILL_CONFIG}}}),
    ]
    log = open(state / "killed_run.log", "wb")
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _ours(state_file) -> bool:
    try:  # the copied store holds the demo run's checkpoints (max_steps 10) until the new run clears them
        return json.loads(state_file.read_text())["max_steps"] == KILL_CONFIG["max_steps"]
    except (OSError, ValueError, KeyError):
        return False


def _wait_for_checkpoint(proc, checkpoints, log, timeout=300):
    deadline = time.time() + timeout
    while not any(_ours(f) for f in checkpoints.glob("checkpoint-*/trainer_state.json")):
        if proc.poll() is not None or time.time() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"no checkpoint before exit/timeout (rc={proc.poll()}):\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


@pytest.mark.slow
def test_sigkill_mid_training_resumes_from_the_latest_checkpoint(demo_state, tmp_path):
    import mlflow

    state = copy_artifacts(demo_state, tmp_path / "state")
    checkpoints, adapter = (
        state / "artifacts" / "train_adapter" / "checkpoints",
        state / "artifacts" / "train_adapter" / "current" / "adapter",
    )
    previous_adapter = _digest(adapter)
    proc = _start_training(state)
    _wait_for_checkpoint(proc, checkpoints, state / "killed_run.log")
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    # the previous adapter is untouched: the killed run had not reached save_best_adapter
    assert _digest(adapter) == previous_adapter
    killed_at = last_complete_checkpoint(checkpoints)
    step = int(killed_at.rsplit("-", 1)[1])
    assert 0 < step < KILL_CONFIG["max_steps"]
    # SIGKILL runs no `finally`: the killed process's MLflow run is left RUNNING (see README)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{state / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("llama-sft")
    killed_runs = client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'")
    assert len(killed_runs) == 1

    from llama_sft_dagster.resources.gpu import GpuResource

    # same resources as the CLI's Definitions (GpuResource() = device "auto"), so the run fingerprint matches
    result = _materialize(
        state, ["train_adapter"], {"ops": {"train_adapter": {"config": KILL_CONFIG}}}, gpu=GpuResource()
    )
    assert result.success
    meta = _metadata(result, "train_adapter")
    assert meta["resumed_from"] == killed_at
    assert meta["global_steps"] == KILL_CONFIG["max_steps"]
    # the resumed process logged only steps after the checkpoint: it did not restart at step 1
    losses = client.get_metric_history(meta["mlflow_run_id"], "train_loss")
    assert losses and min(m.step for m in losses) > step and max(m.step for m in losses) == KILL_CONFIG["max_steps"]
    # the resumed run found the killed process gone and closed its MLflow run
    assert client.get_run(killed_runs[0].info.run_id).info.status == "KILLED"
    assert _digest(adapter) != previous_adapter and (adapter / "adapter_model.safetensors").is_file()
    assert not list(adapter.parent.glob(".adapter.*"))  # no temporary folder left beside it
    # KILL_CONFIG is not the demo run's config, so the checkpoints folder was cleared; the demo run's
    # TensorBoard folder (the Trainer's curves beside the monitor's) is elsewhere and stays
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    earlier = [p.name for p in (demo_state / "artifacts" / "train_adapter" / "tensorboard").iterdir()]
    assert earlier
    for name in earlier:
        accumulator = EventAccumulator(str(state / "artifacts" / "train_adapter" / "tensorboard" / name))
        accumulator.Reload()
        assert {"train_loss", "eval_loss", "learning_rate"} <= set(accumulator.Tags()["scalars"]), name


def test_runs_left_running_by_a_dead_process_are_marked_killed(tmp_path):
    """Only this host's RUNNING runs of the same name whose pid has exited; live or foreign ones stay."""
    import socket

    import mlflow

    from llama_sft_dagster.resources.tracking import MlflowTracking

    tracking = MlflowTracking(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = mlflow.MlflowClient(tracking_uri=tracking.resolved_uri())
    with tracking.start_run("train_adapter"):
        pass  # creates the experiment
    experiment_id = client.get_experiment_by_name(tracking.experiment_name).experiment_id
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])  # exits, not reaped until wait(): state Z
    while (
        Path(f"/proc/{zombie.pid}").exists() and Path(f"/proc/{zombie.pid}/stat").read_text().split(") ")[1][0] != "Z"
    ):
        time.sleep(0.05)
    host = socket.gethostname()
    try:
        left = {
            name: client.create_run(
                experiment_id, run_name=run_name, tags={"sft.host": h, "sft.pid": str(pid)}
            ).info.run_id
            for name, run_name, h, pid in [
                ("dead", "train_adapter", host, dead.pid),
                ("live", "train_adapter", host, live.pid),
                ("zombie", "train_adapter", host, zombie.pid),
                ("other_host", "train_adapter", host + "-x", dead.pid),
                ("other_name", "evaluate", host, dead.pid),
            ]
        }
        with tracking.start_run("train_adapter") as run:
            assert run is not None
        status = {name: client.get_run(run_id).info.status for name, run_id in left.items()}
    finally:
        live.kill()
        live.wait()
        zombie.wait()
    assert status == {
        "dead": "KILLED",
        "live": "RUNNING",
        "zombie": "KILLED",
        "other_host": "RUNNING",
        "other_name": "RUNNING",
    }


# --- MLflow unreachable, end to end ------------------------------------------------------------------


@pytest.mark.slow
def test_training_goes_on_without_mlflow(demo_state, tmp_path, caplog):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from llama_sft_dagster.core.tracking.spool import SPOOL_FILE, read_spool
    from llama_sft_dagster.resources.tracking import MlflowTracking

    state = copy_artifacts(demo_state, tmp_path / "state")
    shutil.rmtree(state / "artifacts" / "train_adapter")  # only this run's TensorBoard files below
    caplog.set_level(logging.WARNING)
    local = f"sqlite:///{tmp_path / 'local_mlflow.db'}"
    down = MlflowTracking(tracking_uri="http://127.0.0.1:9", probe_timeout_s=2, local_uri=local)  # port 9: refused
    started = time.monotonic()
    result = _materialize(
        state,
        ["train_adapter"],
        {"ops": {"train_adapter": {"config": {"max_steps": 4, "eval_steps": 4, "save_steps": 4}}}},
        tracking=down,
    )
    assert result.success, time.monotonic() - started
    meta = _metadata(result, "train_adapter")
    assert meta["global_steps"] == 4 and "mlflow_run_id" not in meta
    # the server never answered: the whole run, every metric value, is in the local store, and the run says so
    assert meta["mlflow_status"] == "local" and local in meta["mlflow"], meta
    client = MlflowClient(tracking_uri=local)
    run = client.get_run(meta["mlflow_local_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["sft.unreachable_server"] == "http://127.0.0.1:9"
    logged = {"eval_loss", "train_monitor/token_efficiency", "train_monitor/token_efficiency_whole_run"}
    assert logged <= set(run.data.metrics)
    (spool_file,) = (state / "artifacts" / "train_adapter").rglob(SPOOL_FILE)
    batches, _ = read_spool(spool_file)
    kept = {(k, b["step"], v) for b in batches for k, v in b["metrics"].items()}
    stored = {(k, m.step, m.value) for k in run.data.metrics for m in client.get_metric_history(run.info.run_id, k)}
    assert kept == stored, "every value rank 0 logged is in the local store"
    assert meta["mlflow_metrics_buffered"] == sum(len(b["metrics"]) for b in batches) > 0
    assert "plots/loss.png" in [a.path for a in client.list_artifacts(run.info.run_id, "plots")]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "MLflow" in r.getMessage()]
    assert any("could not start at http://127.0.0.1:9" in w and "mlflow_spool.jsonl" in w for w in warnings), warnings
    assert any("are in the local store" in w and local in w for w in warnings), warnings
    tags, tb_loss_steps = set(), set()
    for f in (state / "artifacts" / "train_adapter").rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(f))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
        tb_loss_steps |= {e.step for e in acc.Scalars("train_loss")} if "train_loss" in acc.Tags()["scalars"] else set()
    assert tb_loss_steps == {m.step for m in client.get_metric_history(run.info.run_id, "train_loss")}, "as TensorBoard"
    assert {"train_loss", "eval_loss", "train_monitor/token_efficiency"} <= tags, sorted(tags)


# --- everything filtered out at sft_dataset -------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("case", ["train_all_too_long", "validation_empty"])
def test_empty_sft_split_fails_at_sft_dataset(demo_state, tmp_path, case):
    from llama_sft_dagster.core.data.storage import read_parquet, write_parquet

    state = copy_artifacts(demo_state, tmp_path / "state")
    config = {}
    if case == "validation_empty":
        val = state / "artifacts" / "validation_pairs" / "data.parquet"
        write_parquet(read_parquet(val).slice(0, 0), val)
    else:
        config = {"max_length": 8, "filter_on_templated_length": True}  # the system prompt alone is longer
    result = _materialize(state, ["sft_dataset"], {"ops": {"sft_dataset": {"config": config}}})
    assert not result.success
    error = result.get_step_failure_events()[0].event_specific_data.error.cause  # under Dagster's step error
    assert error.cls_name == "EmptySftSplitError"
    if case == "validation_empty":
        assert "validation_pairs has 0 rows" in error.message
    else:
        assert "train rows were dropped ({'templated_too_long':" in error.message and "max_length=8" in error.message


def test_empty_split_message_names_the_cause():
    from collections import Counter

    from llama_sft_dagster.assets.training import empty_split_message
    from llama_sft_dagster.core.data.accounting import StageCounts

    assert "validation_pairs has 0 rows" in empty_split_message("validation", "validation_pairs", StageCounts(), 512)
    msg = empty_split_message("train", "train_pairs", StageCounts(3, 0, Counter(templated_too_long=3)), 64)
    assert "all 3 train rows" in msg and "max_length=64" in msg and "filter_on_templated_length=False" in msg
