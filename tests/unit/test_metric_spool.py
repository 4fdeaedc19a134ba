"""core/tracking/spool.py: rank 0's metrics kept in a local spool when the MLflow server cannot take them, and
replayed later. 'Down' is a real 127.0.0.1 port with nothing listening; the store that takes them is a real MLflow
SQLite store (tests/graph/test_tracking.py runs the same against a real MLflow HTTP server stopped and restarted)."""

import json
import logging
import time

import pytest
from mlflow.tracking import MlflowClient

from llama_sft_dagster.cli.deploy import free_port
from llama_sft_dagster.core.tracking import spool as sp


@pytest.fixture
def down_uri():
    return f"http://127.0.0.1:{free_port()}"  # bound then released: nothing listens there


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory):
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}")
    return client, client.create_experiment("spool")  # MLflow's schema is created once (seconds)


@pytest.fixture
def store(sqlite_store):
    client, experiment_id = sqlite_store
    return client, client.create_run(experiment_id).info.run_id


def history(client, run_id, key):
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_server_down_training_goes_on_every_value_is_kept_then_replayed(tmp_path, down_uri, store, caplog):
    clock, path = Clock(), tmp_path / sp.SPOOL_FILE
    spool = sp.MetricSpool(path, down_uri, "run-on-the-down-server", retry_every_s=30, timeout_s=2, clock=clock)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger=sp.__name__):
        for step in (1, 2, 3):
            spool.log({"train/loss": 3.0 - step, "train/grad_norm": 0.5}, step)
            clock.now += 10  # within retry_every_s: no new attempt
    assert time.monotonic() - started < 5, "one attempt, no retries with backoff"
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and down_uri in warnings[0] and str(path) in warnings[0], warnings
    assert sp.counts(path) == sp.SpoolCounts(values=6, live=0, later=0)
    assert len(spool.pending) == 3 and not spool.flush()

    client, run_id = store
    assert sp.replay(path, client, run_id) == 6
    assert history(client, run_id, "train/loss") == [(1, 2.0), (2, 1.0), (3, 0.0)]
    assert sp.counts(path) == sp.SpoolCounts(values=6, live=0, later=6)
    assert sp.counts(path).buffered == 6 and sp.counts(path).unsent == 0
    assert sp.replay(path, client, run_id) == 0, "nothing sent twice"


def test_live_sends_are_acknowledged_and_a_retry_sends_the_backlog(tmp_path, store, down_uri):
    client, run_id = store
    clock, path = Clock(), tmp_path / sp.SPOOL_FILE
    spool = sp.MetricSpool(path, client.tracking_uri, run_id, retry_every_s=30, clock=clock)
    spool.log({"train/loss": 2.0}, 1)
    assert sp.counts(path) == sp.SpoolCounts(values=1, live=1, later=0)
    spool.tracking_uri, spool._client = down_uri, None  # the server goes away
    spool.log({"train/loss": 1.5}, 2)
    spool.tracking_uri, spool._client = client.tracking_uri, None  # ... and comes back
    spool.log({"train/loss": 1.2}, 3)  # within retry_every_s: kept, not tried
    assert len(spool.pending) == 2
    clock.now += 31
    spool.log({"train/loss": 1.0}, 4)  # retried: the backlog goes with it
    assert not spool.pending
    assert history(client, run_id, "train/loss") == [(1, 2.0), (2, 1.5), (3, 1.2), (4, 1.0)]
    assert sp.counts(path) == sp.SpoolCounts(values=4, live=1, later=3)


def test_no_run_yet_keeps_everything_without_trying(tmp_path, store, caplog):
    path = tmp_path / sp.SPOOL_FILE
    spool = sp.MetricSpool(path, "", "")  # the server was down when training started: no run to send to
    with caplog.at_level(logging.WARNING, logger=sp.__name__):
        spool.log({"eval/loss": 1.0}, 5)
        spool.close()
    assert not caplog.records and sp.counts(path).unsent == 1
    client, run_id = store
    assert sp.replay(path, client, run_id) == 1 and history(client, run_id, "eval/loss") == [(5, 1.0)]


def test_replay_all_batches_into_a_fresh_run(tmp_path, store):
    client, run_id = store
    path = tmp_path / sp.SPOOL_FILE
    spool = sp.MetricSpool(path, client.tracking_uri, run_id)
    spool.log({"a": 1.0}, 1)
    fresh = client.create_run(client.get_run(run_id).info.experiment_id).info.run_id
    assert sp.replay(path, client, fresh) == 0, "the server has them all"
    assert sp.replay(path, client, fresh, all_batches=True) == 1 and history(client, fresh, "a") == [(1, 1.0)]


def test_big_batches_go_in_mlflows_batch_size(tmp_path, store):
    client, run_id = store
    path = tmp_path / sp.SPOOL_FILE
    spool = sp.MetricSpool(path, "", "")
    spool.log({f"m{i}": float(i) for i in range(sp.MAX_METRICS_PER_BATCH + 5)}, 1)
    assert sp.replay(path, client, run_id) == sp.MAX_METRICS_PER_BATCH + 5
    assert len(client.get_run(run_id).data.metrics) == sp.MAX_METRICS_PER_BATCH + 5


def test_a_torn_last_line_is_skipped_a_torn_middle_line_names_the_line(tmp_path, caplog):
    path = tmp_path / sp.SPOOL_FILE
    good = json.dumps({"seq": 1, "step": 1, "timestamp": 1, "metrics": {"a": 1.0}})
    path.write_text(good + '\n{"seq": 2, "st')
    with caplog.at_level(logging.WARNING, logger=sp.__name__):
        assert sp.counts(path).values == 1
    assert "last line 2 is incomplete" in caplog.text
    path.write_text(good + '\n{"seq": 2, "st\n' + good + "\n")
    with pytest.raises(ValueError, match=r"mlflow_spool.jsonl: line 2 is not JSON"):
        sp.read_spool(path)
