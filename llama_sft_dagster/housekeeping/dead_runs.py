"""Runs whose process was killed: mark them failed and give back their concurrency slots.

A SIGKILLed run (OOM killer, `kill -9`, a closed terminal) runs no cleanup: Dagster keeps it STARTED
and keeps its `gpu` pool slot claimed, so every later training step waits on "Step blocked by limit
for pool gpu" forever. Dagster's run monitoring (enabled in dagster.yaml) fails runs whose worker it
can health-check and frees the slots of ended runs, but the default run launcher has no worker health
check, and `dagster asset materialize` runs without a daemon at all. So the
project does it: each run records the pid of the process executing its steps (Dagster's own engine
event "Executing steps ... (pid: N)", emitted before any slot is claimed); a run in progress whose
process is gone (or its pid now belongs to a process started after that event) is reported FAILURE
and its slots freed.

Only where runs are local processes (Dagster's DefaultRunLauncher): there a pid means something. On
Kubernetes (K8sRunLauncher) Dagster's run monitoring checks the run pods itself. Under `make deploy-local`
the code location's gRPC server spawned the run worker and reports its SIGKILL itself (seen in
tests/e2e/test_deployment.py); runs executed in the command's own process (`dagster asset materialize`,
`make demo`, `sft-materialize-stale`) have no such server, and this module is what fails them.
Called by `GpuPoolGuard` (housekeeping/pool_guard.py) when a run starts, before its steps claim
slots, and by the `dead_run_sensor` under the daemon. Freeing a run's slots is a storage call with no
instance-level equivalent in 1.13.
"""

from __future__ import annotations

import logging

import dagster as dg

from llama_sft_dagster.housekeeping.processes import dead_runs, pid_still_runs_since

log = logging.getLogger(__name__)
RUNNING_STATUSES = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
ENGINE_PID_PREFIX = (
    "Executing steps"  # in-process: "...in process (pid: N)"; multiprocess: "...parent process (pid: N)"
)


def is_local(instance: dg.DagsterInstance) -> bool:
    """Runs are processes of this machine (the default launcher), whatever the storage."""
    return isinstance(instance.run_launcher, dg.DefaultRunLauncher)


def executor_pid(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """(pid, time) of the run's "Executing steps ... (pid: N)" engine event, if it was logged yet."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=100).records
    for record in records:
        entry = record.event_log_entry
        data = entry.dagster_event.engine_event_data if entry.dagster_event else None
        if data and entry.message.startswith(ENGINE_PID_PREFIX) and "pid" in data.metadata:
            return int(data.metadata["pid"].value), entry.timestamp
    return None


def fail_dead_runs(instance: dg.DagsterInstance, logger=None, still_runs=pid_still_runs_since) -> list[str]:
    """Report FAILURE for the in-progress runs whose executing process is gone and free their slots."""
    if not is_local(instance):
        return []
    logger = logger or log
    runs = {
        r.dagster_run.run_id: r.dagster_run
        for r in instance.get_run_records(dg.RunsFilter(statuses=RUNNING_STATUSES), limit=200)
    }
    pids = {run_id: executor_pid(instance, run_id) for run_id in runs}
    failed = dead_runs(pids, still_runs)
    for run_id in failed:
        message = (
            f"process {pids[run_id][0]} of this run is gone (killed?); marked failed and its concurrency "
            "slots freed so later runs can take the GPU"
        )
        instance.report_run_failed(runs[run_id], message=message)
        if instance.event_log_storage.supports_global_concurrency_limits:
            instance.event_log_storage.free_concurrency_slots_for_run(run_id)
        logger.warning(f"run {run_id}: {message}")
    return failed


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Marks failed the runs whose process was killed and frees their `gpu` pool slots.",
)
def dead_run_sensor(context: dg.SensorEvaluationContext):
    failed = fail_dead_runs(context.instance, context.log)
    return dg.SkipReason(f"failed {len(failed)} dead run(s): {', '.join(failed)}" if failed else "no dead runs")
