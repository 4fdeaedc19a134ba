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


def dead_runs(run_pids: Mapping[str, int | None], gone: Callable[[int], bool] = process_gone) -> list[str]:
    """The runs (id -> pid of the process executing its steps, None if not recorded yet) whose process
    is gone. A run without a recorded pid is left alone: it may still be starting."""
    return sorted(run_id for run_id, pid in run_pids.items() if pid is not None and gone(pid))
