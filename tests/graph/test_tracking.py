"""MLflow tracking resource on a real SQLite store: run status, params, secrets, unreachable-store fallback."""

import logging
import os

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from llama_sft_dagster.core.tracking.params import flatten_params, looks_secret, safe_params
from llama_sft_dagster.core.training.monitoring import TrainingMonitor, mlflow_families
from llama_sft_dagster.core.training.series import diag_name
from llama_sft_dagster.resources.tracking import MlflowTracking
from support.tiny_lora_training import train_tiny

UNREACHABLE = "http://127.0.0.1:9"  # discard port: nothing listens on loopback here


@pytest.fixture
def tracking(tmp_path):
    return MlflowTracking(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment_name="test-sft")


def _runs(tracking):
    client = MlflowClient(tracking_uri=tracking.resolved_uri())
    experiment = client.get_experiment_by_name(tracking.experiment_name)
    return client, client.search_runs([experiment.experiment_id])


def test_flatten_params_nests_with_dots():
    assert flatten_params({"train": {"lr": 1e-4, "targets": ["q_proj", "v_proj"]}, "seed": 3}) == {
        "train.lr": 1e-4,
        "train.targets": ["q_proj", "v_proj"],
        "seed": 3,
    }
    assert flatten_params({"stages": [{"name": "a"}]}, "config") == {"config.stages.0.name": "a"}


@pytest.mark.parametrize(
    "key,value,secret",
    [
        ("hub_token", None, True),
        ("model.HF_TOKEN", "x", True),
        ("mlflow.password", "x", True),
        ("openai_api_key", "x", True),
        ("aws.secret_access_key", "x", True),
        ("pad_token", "<|eot_id|>", True),  # errs on the side of leaving out; the name is still recorded
        ("repo", "hf_AbCdEf0123456789", True),
        ("max_new_tokens", 64, False),
        ("tokenizer_name", "llama", False),
        ("learning_rate", 2e-4, False),
        ("author", "someone", False),
        ("lora_target_modules", "q_proj", False),
    ],
)
def test_looks_secret(key, value, secret):
    assert looks_secret(key, value) is secret


def test_safe_params_prefixes_redacts_and_truncates():
    kept, redacted = safe_params({"lr": 1e-4, "hub_token": "hf_x", "note": "a" * 7000, "src": "hf_secret"})
    assert set(kept) == {"config.lr", "config.note"}
    assert kept["config.lr"] == "0.0001"
    assert len(kept["config.note"]) == 6000 and kept["config.note"].endswith("...[truncated]")
    assert sorted(redacted) == ["config.hub_token", "config.src"]


def test_relative_sqlite_uri_resolves_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = MlflowTracking(tracking_uri="sqlite:///state/mlflow.db").resolved_uri()
    assert uri == f"sqlite:///{tmp_path / 'state' / 'mlflow.db'}"
    assert (tmp_path / "state").is_dir()


def test_default_store_is_sqlite_under_state_dir(isolated_state):
    assert MlflowTracking().resolved_uri() == f"sqlite:///{(isolated_state / 'mlflow.db').resolve()}"


def test_run_finished_with_params_tags_metrics_and_no_secrets(tracking):
    params = {"train": {"learning_rate": 2e-4, "lora_r": 16}, "hub_token": "hf_abc", "repo_id": "hf_abcdef"}
    with tracking.start_run("train_adapter", params=params, dagster_run_id="dg-123", train_data_version="v-abc") as run:
        assert run is not None
        assert tracking.report_to() == ["tensorboard", "mlflow"]
        mlflow.log_metrics({"monitor/token_efficiency": 0.5}, step=1)
    assert mlflow.active_run() is None
    client, runs = _runs(tracking)
    assert len(runs) == 1
    got = runs[0]
    assert got.info.status == "FINISHED"
    assert got.data.params == {"config.train.learning_rate": "0.0002", "config.train.lora_r": "16"}
    assert got.data.tags["dagster.run_id"] == "dg-123"
    assert got.data.tags["data.train_version"] == "v-abc"
    assert got.data.tags["sft.redacted_params"] == "config.hub_token,config.repo_id"
    assert "hf_abc" not in str(got.data)
    assert got.data.metrics == {"monitor/token_efficiency": 0.5}
    assert tracking.report_to() == ["tensorboard"]
    # the experiment opens in MLflow's "Model training" view, not the GenAI (traces) one
    assert (
        client.get_experiment_by_name(tracking.experiment_name).tags["mlflow.experimentKind"]
        == "custom_model_development"
    )


def test_exception_ends_run_failed_and_propagates(tracking):
    with pytest.raises(RuntimeError, match="boom"):
        with tracking.start_run("train_adapter", params={"a": 1}):
            raise RuntimeError("boom")
    assert mlflow.active_run() is None
    assert [r.info.status for r in _runs(tracking)[1]] == ["FAILED"]


def test_interrupt_ends_run_killed(tracking):
    with pytest.raises(KeyboardInterrupt):
        with tracking.start_run("train_adapter"):
            raise KeyboardInterrupt
    assert [r.info.status for r in _runs(tracking)[1]] == ["KILLED"]


def test_unreachable_store_warns_once_and_yields_none(caplog):
    tracking = MlflowTracking(tracking_uri=UNREACHABLE, probe_timeout_s=2)
    body_ran = False
    with caplog.at_level(logging.WARNING, logger="llama_sft_dagster.resources.tracking"):
        with tracking.start_run("train_adapter", params={"lr": 1}) as run:
            assert run is None
            assert tracking.report_to() == ["tensorboard"]
            body_ran = True
    assert body_ran
    warnings = [r for r in caplog.records if r.name == "llama_sft_dagster.resources.tracking"]
    assert len(warnings) == 1 and "could not start" in warnings[0].getMessage()


def test_unwritable_sqlite_path_falls_back(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    tracking = MlflowTracking(tracking_uri=f"sqlite:///{blocker / 'sub' / 'mlflow.db'}")
    with caplog.at_level(logging.WARNING):
        with tracking.start_run("train_adapter") as run:
            assert run is None
    assert "could not start" in caplog.text


@pytest.mark.slow
def test_training_logs_trainer_and_monitor_metrics_into_one_run(tracking, tmp_path):
    monitor = TrainingMonitor(tmp_path / "tb", log_every=2, deep_every=3)
    with tracking.start_run("train_adapter", params={"lora_r": 8}, dagster_run_id="dg-1") as run:
        trainer, _ = train_tiny(monitor, tmp_path / "out", max_steps=4, report_to=tracking.report_to())
        assert mlflow.active_run().info.run_id == run.info.run_id  # transformers did not end our run
    client, runs = _runs(tracking)
    assert len(runs) == 1  # transformers' MLflowCallback logged into our run, it did not start its own
    got = runs[0]
    assert got.info.status == "FINISHED"
    assert {
        "loss",
        "grad_norm",
        "train_monitor/token_efficiency",
        "train_monitor/grad_norm/mean_over_modules",
        "train_monitor/stable_rank/mean_over_modules",
        "train_monitor/lora_drift/mean_over_modules",
        "train_monitor/memory/rss_gb",
    } <= set(got.data.metrics)
    # per-module series are folded into one per family for MLflow (TensorBoard keeps every module)
    assert {diag_name(k) for k in mlflow_families(dict.fromkeys(monitor.tags, 0.0))} <= set(got.data.metrics)
    assert "grad_norm/q_proj" in monitor.tags and "train_monitor/grad_norm/q_proj" not in got.data.metrics
    assert got.data.params["config.lora_r"] == "8" and "learning_rate" in got.data.params
    steps = [m.step for m in client.get_metric_history(got.info.run_id, "train_monitor/grad_norm/mean_over_modules")]
    assert steps == [2, 4]


@pytest.mark.slow
def test_training_proceeds_with_tensorboard_when_store_unreachable(tmp_path, caplog):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tracking = MlflowTracking(tracking_uri=UNREACHABLE, probe_timeout_s=2)
    monitor = TrainingMonitor(tmp_path / "tb", log_every=2, deep_every=2)
    with tracking.start_run("train_adapter") as run:
        assert run is None
        trainer, _ = train_tiny(monitor, tmp_path / "out", max_steps=2, report_to=tracking.report_to())
    assert trainer.state.global_step == 2
    assert mlflow.active_run() is None
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tags = {"train_monitor/token_efficiency", "train_monitor/grad_norm/q_proj", "train_monitor/eff_rank_entropy/q_proj"}
    assert tags <= set(acc.Tags()["scalars"])


def test_silent_server_is_asked_once_with_the_probe_timeout(caplog):
    """A loopback server that accepts connections and never answers: the client asks once (MLflow's default
    is 7 retries with backoff) with a read timeout of probe_timeout_s (its default: 120 s), then falls back.
    What the client was told is read from MLflow's settings at the moment each request arrives."""
    import socket
    import threading

    arrivals, stop = [], threading.Event()
    before = os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT")

    def serve(server):
        held = []
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])  # kept open, never answered
            except TimeoutError:
                continue
            arrivals.append(
                (os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT"), os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES"))
            )
        for conn in held:
            conn.close()

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        thread = threading.Thread(target=serve, args=(server,), daemon=True)
        thread.start()
        tracking = MlflowTracking(tracking_uri=f"http://127.0.0.1:{server.getsockname()[1]}", probe_timeout_s=1)
        try:
            with caplog.at_level(logging.WARNING, logger="llama_sft_dagster.resources.tracking"):
                with tracking.start_run("train_adapter") as run:
                    assert run is None
        finally:
            stop.set()
            thread.join(10)
    assert arrivals == [("1", "0")]
    assert "could not start" in caplog.text and tracking.report_to() == ["tensorboard"]
    assert os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT") == before  # restored after the probe


def test_resource_in_a_dagster_run_tags_the_run_id(tracking):
    import dagster as dg

    @dg.asset
    def tracked(context: dg.AssetExecutionContext, mlflow_tracking: MlflowTracking) -> None:
        with mlflow_tracking.start_run("tracked", params={"lora_r": 4}, dagster_run_id=context.run.run_id):
            mlflow.log_metric("x", 1.0)

    result = dg.materialize([tracked], resources={"mlflow_tracking": tracking})
    assert result.success
    (got,) = _runs(tracking)[1]
    assert got.info.status == "FINISHED"
    assert got.data.tags["dagster.run_id"] == result.run_id


# --- the MLflow server goes away during training (resources/tracking.py training_run, core/tracking/spool.py) ---


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from support.mlflow_server import MlflowServer

    srv = MlflowServer(tmp_path_factory.mktemp("mlflow_server")).start()
    MlflowClient(tracking_uri=srv.uri).search_experiments()  # its first request creates the schema (seconds)
    yield srv
    srv.close()
    assert not srv.listening(), "the server's port is given back"


def _rank0(run, tracking, steps, spool_retry_s=0.0):
    """What rank 0 does (launch/train.py): log each step's metrics through a MetricSpool."""
    from llama_sft_dagster.core.tracking.spool import MetricSpool

    spool = MetricSpool(run.spool, tracking.resolved_uri(), run.run_id, retry_every_s=spool_retry_s, timeout_s=10)
    for step in steps:
        spool.log({"train/loss": 10.0 - step, "monitor/token_efficiency": 0.5}, step)
    return spool


def _losses(uri, run_id):
    return [(m.step, m.value) for m in MlflowClient(tracking_uri=uri).get_metric_history(run_id, "train/loss")]


def test_server_stopped_mid_training_and_back_nothing_lost(server, tmp_path, caplog):
    tracking = MlflowTracking(tracking_uri=server.uri, experiment_name="outage", probe_timeout_s=10)
    plot = tmp_path / "loss.png"
    plot.write_bytes(b"png")
    with caplog.at_level(logging.WARNING):
        with tracking.training_run("train_adapter", tmp_path / "spool.jsonl", params={"lora_r": 8}) as run:
            spool = _rank0(run, tracking, [1, 2])
            server.stop()
            for step in (3, 4):
                spool.log({"train/loss": 10.0 - step, "monitor/token_efficiency": 0.5}, step)
            server.start()
            spool.close()  # the server answers again: the backlog goes
            server.stop()
            spool.log({"train/loss": 5.0}, 5)  # down again until the end of training
            server.start()
            run.add_artifacts([plot], "plots")
    assert run.status == "replayed" and run.buffered == 2 + 2 + 1, run
    assert _losses(server.uri, run.run_id) == [(s, 10.0 - s) for s in range(1, 6)], "every value, once"
    got = MlflowClient(tracking_uri=server.uri).get_run(run.run_id)
    assert got.info.status == "FINISHED" and got.data.params["config.lora_r"] == "8"
    assert [a.path for a in MlflowClient(tracking_uri=server.uri).list_artifacts(run.run_id, "plots")] == [
        "plots/loss.png"
    ]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2 and all("did not take the metrics" in w for w in warnings), warnings


def test_server_down_at_the_start_back_at_the_end_the_run_is_created_then(server, tmp_path):
    tracking = MlflowTracking(tracking_uri=server.uri, experiment_name="outage", probe_timeout_s=10)
    server.stop()
    try:
        with tracking.training_run("train_adapter", tmp_path / "spool.jsonl", params={"lora_r": 4}) as run:
            assert run.run_id == ""
            _rank0(run, tracking, [1, 2, 3]).close()
            server.start()
    finally:
        server.listening() or server.start()
    assert run.status == "replayed" and run.buffered == 6 and run.run_id
    assert _losses(server.uri, run.run_id) == [(1, 9.0), (2, 8.0), (3, 7.0)]
    assert MlflowClient(tracking_uri=server.uri).get_run(run.run_id).data.params["config.lora_r"] == "4"


def test_server_down_at_the_end_the_run_goes_to_the_local_store_with_a_warning(server, tmp_path, caplog):
    local = f"sqlite:///{tmp_path / 'local' / 'mlflow.db'}"
    tracking = MlflowTracking(tracking_uri=server.uri, experiment_name="outage", probe_timeout_s=10, local_uri=local)
    try:
        with caplog.at_level(logging.WARNING, logger="llama_sft_dagster.resources.tracking"):
            with tracking.training_run("train_adapter", tmp_path / "spool.jsonl", params={"lora_r": 2}) as run:
                spool = _rank0(run, tracking, [1, 2])
                server.stop()
                spool.log({"train/loss": 7.0}, 3)
    finally:
        server.start()
    assert run.status == "local" and run.buffered == 1 and run.local_store == local
    assert _losses(local, run.local_run_id) == [(1, 9.0), (2, 8.0), (3, 7.0)], "the whole run, locally"
    got = MlflowClient(tracking_uri=local).get_run(run.local_run_id)
    assert got.info.status == "FINISHED" and got.data.tags["sft.server_run_id"] == run.run_id
    assert got.data.params["config.lora_r"] == "2"
    (warning,) = [r.getMessage() for r in caplog.records if "local store" in r.getMessage()]
    assert server.uri in warning and local in warning and "1 never reached the server" in warning
