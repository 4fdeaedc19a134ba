"""The demo run of the whole pipeline (raw -> merged_model -> adapter_evaluation -> champion_model) on disk,
shared by the reliability, security, champion, multi-process and rank-sweep tests: it is the session's one
`make demo` run (tests/support/demo_cli.py), the same that the demo, chat and browser tests read, so a pytest
session trains the demo pipeline once.

That run has a persistent Dagster instance under the state folder (event log on disk) and a fake hub token in
its environment, which the code location hands the hub resource through dg.EnvVar (the demo profile never
calls the hub; tests/graph/test_security.py's full-profile test does). Its training is short (TRAIN_CONFIG) on
a shortly pretrained base (BASE_CONFIG). Tests that change files copy `artifacts/` first (`copy_artifacts`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg

from support.demo_cli import DEMO_TEST_CONFIG, FAKE_TOKEN, shared_demo_run

__all__ = ["FAKE_TOKEN", "TRAIN_CONFIG", "BASE_CONFIG", "build_demo_state", "copy_artifacts", "instance_at"]

TRAIN_CONFIG = {k: v for k, v in DEMO_TEST_CONFIG["ops"]["train_adapter"]["config"].items() if k != "progress_every"}
BASE_CONFIG = DEMO_TEST_CONFIG["ops"]["base_model"]["config"]


def instance_at(home: Path) -> dg.DagsterInstance:
    """A Dagster instance whose run and event storage are SQLite files under `home` (kept after close)."""
    home.mkdir(parents=True, exist_ok=True)
    return dg.DagsterInstance.local_temp(tempdir=str(home))


def build_demo_state(tmp_path_factory) -> Path:
    """The state folder of the session's demo run, every asset materialized (run once, then reused)."""
    run = shared_demo_run(tmp_path_factory)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.state


def copy_artifacts(state: Path, dest: Path, validation_rows: int | None = 48) -> Path:
    """A private copy of the demo run's artifacts (for tests that train again or break files).

    `validation_rows` trims sft_dataset's validation split: evaluation of all ~200 rows is most of a
    short CPU run's time, and these tests are about resume/fallback behaviour, not eval quality."""
    from llama_sft_dagster.core.data.storage import read_parquet, write_parquet

    shutil.copytree(state / "artifacts", dest / "artifacts", symlinks=True)
    if validation_rows is not None:
        val = dest / "artifacts" / "sft_dataset" / "validation.parquet"
        write_parquet(read_parquet(val).slice(0, validation_rows), val)
    return dest
