"""The last lines of a failed run in the real commands, in subprocesses: `sft-materialize-stale` (what `make stale`
runs) and Dagster's own `dagster asset materialize` with the project's console logger."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from support.paths import REPO


@pytest.mark.slow
def test_real_command_ends_with_the_cause(tmp_path):
    """The installed `sft-materialize-stale` on a state folder whose artifacts path is a file."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "artifacts").write_text("not a folder")
    env = {
        **os.environ,
        "SFT_STATE_DIR": str(state),
        "DAGSTER_HOME": str(state / "dagster_home"),
        "SFT_PROFILE": "demo",
    }
    cmd = [str(Path(sys.executable).parent / "sft-materialize-stale"), "--select", "bitext_raw", "--no-observe"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith(f"FAILED bitext_raw: ArtifactPathError: artifact folder '{state / 'artifacts'}"), proc.stdout
    assert "Not a directory" in last and "make ui" in last


@pytest.mark.slow
def test_dagster_asset_materialize_with_the_project_logger_ends_with_the_cause(tmp_path):
    """Dagster's own CLI, resources pointed at a bad local file as a user would: ~10 lines, the cause last."""
    bad = tmp_path / "b.parquet"
    pq.write_table(
        pa.table(
            {
                "flags": ["B"],
                "instruction": [113542617735902.0],
                "category": ["ORDER"],
                "intent": ["track_order"],
                "response": ["Today."],
            }
        ),
        bad,
    )
    state = tmp_path / "state"
    env = {
        **os.environ,
        "SFT_STATE_DIR": str(state),
        "DAGSTER_HOME": str(state / "dagster_home"),
        "SFT_PROFILE": "demo",
    }
    (state / "dagster_home").mkdir(parents=True)
    (state / "dagster_home" / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())  # as `make install`
    config = {"loggers": {"console": {}}, "resources": {"bitext": {"config": {"location": str(bad)}}}}
    cmd = [
        str(Path(sys.executable).parent / "dagster"),
        "asset",
        "materialize",
        "-m",
        "llama_sft_dagster.definitions",
        "--select",
        "bitext_raw",
        "--config-json",
        json.dumps(config),
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert proc.returncode == 1 and lines[-1] == "Error: Materialization failed."
    assert lines[-2].startswith(f"FAILED bitext_raw: RawDataError: {bad}: column 'instruction' has type double"), lines
    assert len(lines) < 20 and "Stack Trace" not in proc.stdout + proc.stderr, len(lines)
