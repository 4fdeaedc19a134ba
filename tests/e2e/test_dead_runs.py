"""A run killed while it holds the `gpu` pool slot must not block later training runs forever: the
next run (through the gpu resource) or the daemon's sensor fails it and frees the slot. Real SIGKILL,
real instance with the project's dagster.yaml."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from llama_sft_dagster.housekeeping.dead_runs import dead_run_sensor, fail_dead_runs
from llama_sft_dagster.housekeeping.processes import dead_runs, pid_still_runs_since, process_gone, process_start_time
from support.paths import REPO

GPU_HOLDER = str(Path(__file__).parents[1] / "support" / "gpu_holder.py")


def test_dead_runs_needs_a_recorded_pid_that_no_longer_runs():
    still_runs = {11: False, 12: True}
    assert dead_runs({"a": (11, 0.0), "b": (12, 0.0), "c": None}, lambda pid, _: still_runs[pid]) == ["a"]
    assert process_gone(os.getpid()) is False and process_gone("not-a-pid") is False


def test_a_reused_pid_does_not_keep_a_dead_run_alive():
    me, now = os.getpid(), time.time()
    assert pid_still_runs_since(me, now)  # this process, recorded now
    # the same pid recorded before this process started (e.g. before a reboot) belonged to another process
    assert not pid_still_runs_since(me, process_start_time(me) - 60)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert not pid_still_runs_since(dead.pid, now)


@pytest.fixture
def home_with_a_killed_gpu_holder(isolated_state):
    home = isolated_state / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    env = {**os.environ, "DAGSTER_HOME": str(home), "SFT_LOCK_DIR": str(isolated_state / "locks")}
    holder = subprocess.Popen([sys.executable, GPU_HOLDER, "120"], env=env, stdout=subprocess.PIPE, text=True)
    line = holder.stdout.readline()
    assert line.startswith("HOLDING"), line
    killed_run = line.split()[1]
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_run_by_id(killed_run).status == dg.DagsterRunStatus.STARTED  # no cleanup ran
        assert instance.event_log_storage.get_concurrency_info("gpu").active_run_ids == {killed_run}
    return home, env, killed_run


@pytest.mark.slow
def test_next_run_fails_the_killed_run_and_takes_the_gpu(home_with_a_killed_gpu_holder):
    home, env, killed_run = home_with_a_killed_gpu_holder
    nxt = subprocess.Popen(
        [sys.executable, GPU_HOLDER, "0"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = nxt.communicate(timeout=90)  # without the fix it waits on the slot forever
    finally:
        if nxt.poll() is None:
            nxt.kill()
    assert nxt.returncode == 0 and "DONE" in out, err[-2000:]
    assert f"run {killed_run}: process" in err and "is gone" in err
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_run_by_id(killed_run).status == dg.DagsterRunStatus.FAILURE
        assert instance.event_log_storage.get_concurrency_info("gpu").active_run_ids == set()


@pytest.mark.slow
def test_sensor_fails_the_killed_run_and_frees_its_slot(home_with_a_killed_gpu_holder):
    home, _, killed_run = home_with_a_killed_gpu_holder
    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = dead_run_sensor(dg.build_sensor_context(instance=instance))
        assert isinstance(result, dg.SkipReason) and killed_run in result.skip_message
        assert instance.get_run_by_id(killed_run).status == dg.DagsterRunStatus.FAILURE
        assert instance.event_log_storage.get_concurrency_info("gpu").active_run_ids == set()
        assert fail_dead_runs(instance) == []  # nothing left to do
