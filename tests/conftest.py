"""Fixtures (helpers live in tests/support): isolated state folders and the real data samples; and the order in
which `make test`'s workers take the test files."""

from pathlib import Path

import pytest

from support.paths import SHARED_DATA

# `make test` hands test files to two xdist workers in collection order (--dist loadfile --no-loadscope-reorder).
# The files that take minutes go first, longest first, so that no worker ends the session alone on one of them
# (the c69c75c run ended with one worker idle for about 5 minutes while the other ran test_champion.py). The first
# two start the session's two builds, one on each worker: the rehearsal run and the demo run
# (tests/support/session_build.py). Measured per-file times are in the closing notes; the rest keep their order.
SLOW_FILES_FIRST = (
    "tests/e2e/test_rehearsal.py",
    "tests/graph/test_reliability_training.py",
    "tests/e2e/test_deployment.py",
    "tests/e2e/test_ui_browser.py",
    "tests/e2e/test_cli.py",
    "tests/graph/test_champion.py",
    "tests/e2e/test_rehearsal_multiprocess.py",
    "tests/graph/test_security.py",
    "tests/graph/test_data_graph.py",
    "tests/graph/test_multiprocess_training.py",
    "tests/graph/test_rank_sweep.py",
    "tests/unit/test_batch_plan.py",
    "tests/unit/test_gpu_check.py",
    "tests/e2e/test_concurrency.py",
    "tests/graph/test_schedule.py",
    "tests/graph/test_tracking.py",
)


def pytest_collection_modifyitems(config, items):
    first = {path: i for i, path in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: first.get(item.nodeid.split("::", 1)[0], len(first)))  # stable: the rest in order


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
