"""One rehearsal-profile run of the whole graph (raw samples -> merged_model), shared by the tests of one
pytest session: tests/e2e/test_rehearsal.py asserts on it, tests/e2e/test_rehearsal_multiprocess.py trains
again on copies of its artifacts. SFT_PROFILE is read at import, so every run is a fresh process
(tests/support/rehearsal_run.py) with SFT_PROFILE=rehearsal and its own Dagster home.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support.paths import REPO, shared_file


def run_rehearsal(state: Path, *args: str, timeout: int = 1500) -> dict:
    """rehearsal_run.py on the state folder `state` (`args` as that script takes them); its JSON summary."""
    (state / "dagster_home").mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "SFT_PROFILE": "rehearsal",
        "SFT_STATE_DIR": str(state),
        "DAGSTER_HOME": str(state / "dagster_home"),
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("HF_TOKEN", None)  # offline: nothing may need the hub
    env.pop("MLFLOW_TRACKING_URI", None)  # the state's own store, not one another test left in the environment
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests" / "support" / "rehearsal_run.py"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('{"success"')]
    assert lines, proc.stdout[-3000:] + proc.stderr[-5000:]
    return json.loads(lines[-1])


def build_rehearsal_state(tmp_path_factory) -> tuple[Path, dict]:
    """(state folder, run summary) of the whole graph on the rehearsal profile; built once per session (by the
    first test, or xdist worker, to ask)."""
    from support.session_build import build_once

    shared_file("llama31_tokenizer")
    return build_once(tmp_path_factory, "rehearsal_state", run_rehearsal)
