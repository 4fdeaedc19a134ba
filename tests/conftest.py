"""Fixtures only (helpers live in tests/support): isolated state folders and the real data samples."""

from pathlib import Path

import pytest

from support.paths import SHARED_DATA


@pytest.fixture(autouse=True)
def isolated_state(tmp_path, monkeypatch):
    """Every test gets its own state folder and Dagster home; nothing touches ./.sft_state."""
    state = tmp_path / "sft_state"
    monkeypatch.setenv("SFT_STATE_DIR", str(state))
    monkeypatch.setenv("DAGSTER_HOME", str(state / "dagster_home"))
    # mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI, which the tracking resource honours (a deployment's
    # server): one test's store must not become the next test's
    # (set, then deleted: so that teardown also removes what the test's mlflow calls exported, not only restores)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    (state / "dagster_home").mkdir(parents=True)
    return state


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data samples not found at {SHARED_DATA} (see DEVELOPERS.md)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def demo_cli_run(tmp_path_factory):
    """`make demo`'s command run once per session (short training); see tests/support/demo_cli.py."""
    from support.demo_cli import shared_demo_run

    return shared_demo_run(tmp_path_factory)
