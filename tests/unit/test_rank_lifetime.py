"""No training rank outlives its step: a rank (launch/train.py's die_with_launcher, as every rank runs it) is
killed when the Dagster step process is SIGKILLed alone (the step-pid watch) and when its launcher is
(PR_SET_PDEATHSIG). Three real processes, step -> launcher -> rank, without training: the real rank setup
is the function under test, so this runs in seconds."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from llama_sft_dagster.housekeeping.processes import process_gone
from llama_sft_dagster.launch.train import STEP_PID_ENV

# the rank: the real setup, then "training" until killed
RANK = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from llama_sft_dagster.launch.train import die_with_launcher
    die_with_launcher()
    Path(sys.argv[1]).write_text(str(os.getpid()))
    while True:
        time.sleep(1)
    """
)
# the launcher (torchrun's agent): starts the rank and waits on it, as the elastic agent does
LAUNCHER = textwrap.dedent(
    """
    import os, subprocess, sys, time
    from pathlib import Path
    Path(sys.argv[2]).write_text(str(os.getpid()))
    subprocess.Popen([sys.executable, "-c", sys.argv[3], sys.argv[1]]).wait()
    while True:
        time.sleep(1)
    """
)
# the Dagster step: names itself to the ranks (SFT_STEP_PID, as train_adapter does) and starts the launcher
STEP = textwrap.dedent(
    f"""
    import os, subprocess, sys, time
    env = {{**os.environ, "{STEP_PID_ENV}": str(os.getpid())}}
    subprocess.Popen([sys.executable, "-c", sys.argv[3], *sys.argv[1:3], sys.argv[4]], env=env)
    while True:
        time.sleep(1)
    """
)


def _pid_in(path: Path, deadline: float) -> int:
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return int(path.read_text())
        time.sleep(0.1)
    pytest.fail(f"{path.name} was never written")


def _gone_within(pid: int, seconds: float) -> bool:
    """Polls until `pid` is gone (or a zombie: it runs nothing); False if still running after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process_gone(pid):
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def step_launcher_rank(tmp_path):
    """(step Popen, launcher pid, rank pid) running; whatever is left is killed afterwards."""
    rank_file, launcher_file = tmp_path / "rank.pid", tmp_path / "launcher.pid"
    step = subprocess.Popen([sys.executable, "-c", STEP, str(rank_file), str(launcher_file), LAUNCHER, RANK])
    deadline = time.monotonic() + 120
    pids = {"launcher": _pid_in(launcher_file, deadline), "rank": _pid_in(rank_file, deadline)}
    yield step, pids["launcher"], pids["rank"]
    for pid in (pids["rank"], pids["launcher"]):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    step.kill()
    step.wait()


def test_the_rank_dies_when_the_step_process_alone_is_killed(step_launcher_rank):
    step, launcher, rank = step_launcher_rank
    step.send_signal(signal.SIGKILL)  # the step alone: its launcher lives on, reparented
    step.wait()
    # the watch polls every 0.5 s; 30 s leaves room for a loaded machine, a correct rank dies in about 0.5 s
    assert _gone_within(rank, 30), f"rank {rank} still runs after its step was killed"
    assert not process_gone(launcher)  # the launcher did not take the rank down: the step-pid watch did


def test_the_rank_dies_when_its_launcher_is_killed(step_launcher_rank):
    step, launcher, rank = step_launcher_rank
    os.kill(launcher, signal.SIGKILL)
    assert _gone_within(rank, 30), f"rank {rank} still runs after its launcher was killed"
    assert step.poll() is None  # the step itself is alive: the rank followed its launcher
