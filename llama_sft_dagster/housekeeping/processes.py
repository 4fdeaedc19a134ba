"""Is the process that owns a run still there? Pure decisions over pids (same host only)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path


def process_gone(pid: int | str) -> bool:
    """True when no live process has this pid. Unknown pids (not digits) count as alive: never reap
    what cannot be checked."""
    pid = str(pid)
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)  # signal 0: existence check only
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    # a SIGKILLed process whose parent died too stays a zombie until init reaps it (some container inits
    # never do): it exists for os.kill, but it is gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def process_start_time(pid: int) -> float | None:
    """When the live process `pid` started (epoch seconds), from /proc; None where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(
            float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime ")
        )
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22 of stat: start time in ticks
    except (OSError, IndexError, ValueError, StopIteration):
        return None


def pid_still_runs_since(pid: int, seen_at: float) -> bool:
    """True if the process seen as `pid` at time `seen_at` is still running: the pid is alive and was not
    reused by a process started later (after a reboot or pid wrap-around)."""
    if process_gone(pid):
        return False
    started = process_start_time(pid)
    return started is None or started <= seen_at + 1.0  # 1 s: /proc/stat btime is rounded to seconds


def dead_runs(
    run_pids: Mapping[str, tuple[int, float] | None], still_runs: Callable[[int, float], bool] = pid_still_runs_since
) -> list[str]:
    """The runs (id -> (pid of the process executing its steps, when that pid was recorded), or None if
    not recorded yet) whose process is gone. A run without a recorded pid is left alone: it may still be
    starting."""
    return sorted(run_id for run_id, seen in run_pids.items() if seen is not None and not still_runs(*seen))
