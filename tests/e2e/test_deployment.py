"""The team deployment (`make deploy-local`, llama_sft_dagster/cli/deploy.py) against its real servers:
Debian's PostgreSQL, the code location's gRPC server, dagster-webserver, dagster-daemon (queued runs, the `gpu`
pool, run monitoring) and an MLflow server. One deployment is shared by the module (started by the fixture,
stopped after, every port given back); it serves tests/support/deploy_location.py: the project's data graph,
its retraining automation on a minute cron, its dead-run sensor and `gpu_probe`, a step in the `gpu` pool.
Runs are submitted through the webserver's GraphQL API, as the UI does."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time

import dagster as dg
import psutil
import pytest

from llama_sft_dagster import automation
from llama_sft_dagster.cli import deploy
from llama_sft_dagster.cli.stale import materialize_stale
from llama_sft_dagster.housekeeping.dead_runs import executor_pid
from support.paths import REPO
from support.staleness_graph import write_sources

pytestmark = pytest.mark.slow
try:
    deploy.pg_bin("initdb")
except deploy.DeployError as e:
    pytest.skip(f"{e} (make test installs it: make postgres)", allow_module_level=True)

TERMINAL = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    root = tmp_path_factory.mktemp("deployment")
    sources = root / "sources"
    sources.mkdir()
    write_sources(sources)
    env = {"PYTHONPATH": str(REPO / "tests"), "SFT_TEST_SOURCES": str(sources), "SFT_PROBE_SECONDS": "6"}
    d = deploy.start(root / "state" / "deploy", module="support.deploy_location", extra_env=env)
    print(f"deployment ({', '.join(deploy.SERVICES)}) started in {d.started_s} s")  # shown by pytest -rP
    try:
        yield d
    finally:
        deploy.stop(d.root)
        for name, port in d.ports.items():
            with socket.socket() as s:
                assert s.connect_ex((deploy.HOST, port)) != 0, f"{name} port {port} still held after deploy-stop"


@pytest.fixture
def instance(deployment, monkeypatch):
    for key, value in deployment.env().items():
        if key in ("DAGSTER_HOME", "SFT_STATE_DIR", "MLFLOW_TRACKING_URI", "SFT_TEST_SOURCES"):
            monkeypatch.setenv(key, value)
    with dg.DagsterInstance.from_config(str(deployment.home)) as inst:
        yield inst


def client(d: deploy.Deployment):
    from dagster_graphql import DagsterGraphQLClient

    return DagsterGraphQLClient(deploy.HOST, port_number=d.ports["ui"], timeout=60)


def submit_probe(d, seconds: float | None = None) -> str:
    config = {"ops": {"gpu_probe": {"config": {"seconds": seconds}}}} if seconds else None
    return client(d).submit_job_execution("gpu_probe_job", run_config=config)


def wait_runs(instance, run_ids, statuses=TERMINAL, timeout_s=420) -> dict[str, dg.DagsterRun]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = {r: instance.get_run_by_id(r) for r in run_ids}
        if all(run.status in statuses for run in runs.values()):
            return runs
        time.sleep(1)
    raise AssertionError({r: run.status for r, run in runs.items()})


def wait_event(instance, run_id, event_type, timeout_s=300):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        records = instance.get_records_for_run(run_id, of_type=event_type).records
        if records:
            return records[0].event_log_entry
        time.sleep(0.5)
    raise AssertionError(f"no {event_type} in run {run_id}: {instance.get_run_by_id(run_id).status}")


def gpu_slots(instance):
    info = instance.event_log_storage.get_concurrency_info("gpu")
    return info.claimed_slots, info.pending_steps


def probe_spans(instance, run_ids) -> dict[str, tuple[float, float]]:
    records = instance.fetch_materializations(dg.AssetKey("gpu_probe"), limit=100).records
    return {
        r.run_id: (r.asset_materialization.metadata["start"].value, r.asset_materialization.metadata["end"].value)
        for r in records
        if r.run_id in run_ids
    }


def test_three_gpu_runs_at_once_hold_the_pool_one_at_a_time(deployment, instance, tmp_path):
    submitted = time.time()
    run_ids = [submit_probe(deployment) for _ in range(3)]
    runs = wait_runs(instance, run_ids)
    assert {r.status for r in runs.values()} == {dg.DagsterRunStatus.SUCCESS}, "all three finish"
    spans = probe_spans(instance, run_ids)
    assert len(spans) == 3, "nothing lost: one materialization per run"
    ordered = sorted(spans.values())
    for (_, end), (start, _) in zip(ordered, ordered[1:]):
        assert end <= start, f"two runs held the gpu pool at once: {ordered}"
    blocked = [
        e
        for r in run_ids
        for e in instance.all_logs(r, of_type=dg.DagsterEventType.ENGINE_EVENT)
        if "blocked by limit for pool gpu" in (e.message or "")
    ]
    assert blocked, "the pool, not chance, made runs wait"
    assert gpu_slots(instance) == ([], []), "no slot held after the runs"
    timeline = []
    for r in run_ids:
        record = instance.get_run_record_by_id(r)
        timeline.append(
            {
                "run": r[:8],
                "submitted": round(record.create_timestamp.timestamp() - submitted, 1),
                "run_started": round(record.start_time - submitted, 1),
                "gpu_held": [round(t - submitted, 1) for t in spans[r]],
                "run_ended": round(record.end_time - submitted, 1),
            }
        )
    (tmp_path / "queue_timeline.json").write_text(json.dumps(timeline, indent=1))
    print("three-run queue timeline (s after submission):", json.dumps(timeline))


def test_a_daemon_tick_runs_only_stale_assets_in_waves(deployment, instance):
    location = __import__("support.deploy_location", fromlist=["location"]).location()
    assert materialize_stale(location, instance, select="*raw_pairs").ok  # the first run, by hand
    write_sources(deployment.root.parents[1] / "sources", bitext_rows=500)  # new Bitext rows; MultiWOZ unchanged
    graph = location.resolve_asset_graph()
    for event in automation.source_observations(instance, graph, dict(location.resources)):
        instance.report_runless_asset_event(event)
    deadline, waves = time.monotonic() + 420, []
    while time.monotonic() < deadline and len(waves) < 2:
        records = instance.get_run_records(dg.RunsFilter(tags={automation.AUTOMATION_TAG: "true"}))
        done = [r.dagster_run for r in records if r.dagster_run.status in TERMINAL]
        waves = sorted(done, key=lambda run: instance.get_run_record_by_id(run.run_id).create_timestamp)
        time.sleep(2)
    assert [run.status for run in waves] == [dg.DagsterRunStatus.SUCCESS] * 2, waves
    selections = [{k.to_user_string() for k in run.asset_selection} for run in waves]
    assert selections == [{"bitext_raw"}, {"raw_pairs"}], "only the stale assets, one wave per run"


def kill_tree(pid: int) -> None:
    proc = psutil.Process(pid)
    for p in [*proc.children(recursive=True), proc]:
        p.kill()


def test_daemon_sigkilled_with_runs_queued_and_started_then_restarted(deployment, instance):
    started = submit_probe(deployment, seconds=60)
    wait_event(instance, started, dg.DagsterEventType.STEP_START)
    os.killpg(deployment.pids["daemon"], signal.SIGKILL)  # the daemon dies
    deployment.pids.pop("daemon")
    queued = [submit_probe(deployment) for _ in range(2)]
    time.sleep(5)
    assert {instance.get_run_by_id(r).status for r in queued} == {dg.DagsterRunStatus.QUEUED}, "no daemon, no dequeue"
    pid, _ = executor_pid(instance, started)
    kill_tree(pid)  # ... and the started run's worker with it
    deploy.start_service(deployment, "daemon")
    runs = wait_runs(instance, [started, *queued])
    assert runs[started].status == dg.DagsterRunStatus.FAILURE
    # who noticed: the code server that spawned the worker ("... was terminated by signal 9 (SIGKILL)"), or else
    # the project's dead-run sensor / GpuPoolGuard ("process N of this run is gone (killed?)")
    noticed = [
        e.message
        for e in instance.all_logs(started)
        if "SIGKILL" in (e.message or "") or "is gone" in (e.message or "")
    ]
    assert noticed, "the failure names the killed worker"
    assert {runs[r].status for r in queued} == {dg.DagsterRunStatus.SUCCESS}, "the queue resumed"
    deadline = time.monotonic() + 90  # run monitoring frees an ended run's slots after free_slots_after_run_end_seconds
    while gpu_slots(instance) != ([], []) and time.monotonic() < deadline:
        time.sleep(2)
    assert gpu_slots(instance) == ([], []), "no slot held by the dead run"
    print(f"killed worker noticed by: {noticed[0][:160]}")


def test_postgres_restarted_during_a_run(deployment, instance):
    run_id = submit_probe(deployment, seconds=15)
    wait_event(instance, run_id, dg.DagsterEventType.STEP_START)
    pg = deployment.root / "postgres"
    restart = [deploy.pg_bin("pg_ctl"), "-D", str(pg), "-m", "fast", "-w", "restart", "-l", str(pg / "server.log")]
    subprocess.run(deploy.as_db_owner(restart), check=True, capture_output=True)
    run = wait_runs(instance, [run_id])[run_id]
    if run.status == dg.DagsterRunStatus.FAILURE:
        failure = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        assert failure and failure[-1].message, "a failed run says why"
    else:
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert run_id in probe_spans(instance, [run_id]), "it carried on and recorded its result"
    in_progress = instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
    assert not in_progress and gpu_slots(instance) == ([], []), "the instance is consistent"
    # the webserver's pooled connections died with the server: its first request may fail once (seen:
    # "server closed the connection unexpectedly"), then it reconnects
    from dagster_graphql import DagsterGraphQLClientError

    errors = []
    for _ in range(3):
        try:
            after = submit_probe(deployment)
            break
        except DagsterGraphQLClientError as e:
            errors.append(str(e)[:120])
    assert len(errors) < 3, errors
    assert wait_runs(instance, [after])[after].status == dg.DagsterRunStatus.SUCCESS, "the deployment recovered"
    print(f"postgres restarted mid-run: the run ended {run.status.value}; webserver errors before recovery: {errors}")


# --- the MLflow server goes down during training and comes back --------------------------------------------------

OUTAGE_TRAINING = {"max_steps": 20, "eval_steps": 20, "save_steps": 20, "logging_steps": 1, "monitor_log_every": 1}


@pytest.fixture(scope="module")
def demo_state(tmp_path_factory):
    from support.demo_state import build_demo_state

    return build_demo_state(tmp_path_factory)


def _spool(state) -> tuple[list[dict], dict[int, str]]:
    from llama_sft_dagster.core.tracking.spool import SPOOL_FILE, read_spool

    found = list((state / "artifacts" / "train_adapter").rglob(SPOOL_FILE))
    return read_spool(found[0]) if found else ([], {})


def _waiting(batches: list[dict], sent: dict[int, str]) -> int:
    """Batches in the spool that the server has not taken."""
    return len(batches) - len(sent)


def _ranks() -> list[psutil.Process]:
    found = []
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):  # a child that exited (a zombie until reaped) has no command line
            if "llama_sft_dagster.launch.train" in " ".join(proc.cmdline()):
                found.append(proc)
    return found


def _until(condition, what: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


@contextlib.contextmanager
def _paused(ranks: list[psutil.Process]):
    """The training ranks stopped (SIGSTOP) for the block: the demo's steps take a fraction of a second, a server
    restart 17-40 s."""
    for rank in ranks:
        rank.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for rank in ranks:
            rank.send_signal(signal.SIGCONT)


def _outage(d: deploy.Deployment, state, seen: dict) -> None:
    """While train_adapter runs: once rank 0 has sent metrics live, stop the MLflow server; once two batches wait
    in the spool, start it again. The rank is paused for each change, so the outage falls within the training."""
    try:
        _until(lambda: "live" in _spool(state)[1].values(), "rank 0 sent a batch live")
        with _paused(_ranks()):
            deploy.stop_service(d, "mlflow")
            seen["stopped_after"] = len(_spool(state)[0])
        _until(lambda: _waiting(*_spool(state)) >= 2, "two batches wait in the spool")
        with _paused(_ranks()):
            seen["restarted_at"] = len(_spool(state)[0])
            deploy.start_service(d, "mlflow")
            deploy.wait_ready(d, "mlflow")
    except BaseException as exc:
        seen["error"] = repr(exc)
    finally:
        if "mlflow" not in d.pids:
            deploy.start_service(d, "mlflow")
            deploy.wait_ready(d, "mlflow")


def test_mlflow_server_down_during_training_nothing_lost(deployment, demo_state, tmp_path):
    """The deployment's `mlflow server` (Postgres backend) is stopped while train_adapter trains and started again:
    training goes on, every metric value rank 0 logged reaches the server once, and the asset says what happened."""
    import shutil
    import threading

    from mlflow.tracking import MlflowClient

    from llama_sft_dagster.definitions import all_assets, all_checks
    from llama_sft_dagster.resources.tracking import MlflowTracking
    from support.demo_state import copy_artifacts, instance_at
    from support.resources import project_resources

    state = copy_artifacts(demo_state, tmp_path / "state")
    shutil.rmtree(state / "artifacts" / "train_adapter")  # a fresh training: one spool under train_adapter/
    tracking = MlflowTracking(tracking_uri=deployment.mlflow_url, experiment_name="outage", probe_timeout_s=10)
    seen: dict = {}
    watcher = threading.Thread(target=_outage, args=(deployment, state, seen), daemon=True)
    watcher.start()
    with instance_at(state / "dagster_home") as instance:
        result = dg.materialize(
            [*all_assets, *all_checks],
            selection=["train_adapter"],
            resources=project_resources(state, tracking=tracking),
            instance=instance,
            run_config={"ops": {"train_adapter": {"config": OUTAGE_TRAINING}}},
            raise_on_error=False,
        )
    watcher.join(timeout=120)
    assert "error" not in seen and "restarted_at" in seen, seen
    assert result.success
    meta = {k: v.value for k, v in result.asset_materializations_for_node("train_adapter")[-1].metadata.items()}
    assert meta["global_steps"] == OUTAGE_TRAINING["max_steps"]
    assert meta["mlflow_status"] == "replayed" and "sent later" in meta["mlflow"], meta
    batches, sent = _spool(state)
    assert meta["mlflow_metrics_buffered"] == sum(len(b["metrics"]) for b in batches if sent.get(b["seq"]) != "live")
    assert meta["mlflow_metrics_buffered"] >= 2, "the batches logged while the server was down"
    client = MlflowClient(tracking_uri=deployment.mlflow_url)
    run = client.get_run(meta["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    logged = sorted((k, b["step"], v) for b in batches for k, v in b["metrics"].items())
    stored = sorted(
        (k, m.step, m.value) for k in run.data.metrics for m in client.get_metric_history(run.info.run_id, k)
    )
    assert stored == logged, "every value rank 0 logged is on the server, once"
    print(
        f"MLflow server stopped after {seen['stopped_after']} batch(es), back after "
        f"{seen['restarted_at']}; {meta['mlflow_metrics_buffered']} value(s) sent later of {len(logged)}"
    )
