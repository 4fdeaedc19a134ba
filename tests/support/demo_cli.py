"""One `make demo` run (python -m llama_sft_dagster.cli.demo, what the target runs) per pytest session,
shared by every test that needs a trained demo instance (the demo, chat, MLflow/TensorBoard and browser tests,
and through tests/support/demo_state.py the reliability, security, champion and sweep tests): its state
folder, printed lines and exit code. Tests that change what they read copy it first.

The run is the real command in a subprocess with its own state folder and Dagster home; only the
base-model pretraining and the training are shortened (DEMO_TEST_CONFIG, passed as a run-config file like a recipe).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from support.paths import REPO

FAKE_TOKEN = "hf_fakeTokenForLeakTests0123456789abcdefXYZ"  # shaped like a real one (hf_ + 37 chars)
DEMO_TEST_CONFIG = {
    "ops": {
        "train_adapter": {"config": {"max_steps": 10, "eval_steps": 5, "save_steps": 5, "progress_every": 5}},
        # 30 of the demo's 100 pretraining steps (as tests/support/demo_state.py)
        "base_model": {"config": {"demo_pretrain_steps": 30}},
    }
}


@dataclass
class DemoRun:
    state: Path
    stdout: str
    stderr: str
    returncode: int
    seconds: float

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()


def demo_env(state: Path) -> dict:
    # not an MLflow server another test left in the environment (mlflow.set_tracking_uri exports it, and a
    # session-scoped build runs before the autouse fixture that clears it): the run's own store, as `make demo`
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return {
        **env,
        # as a user exports it: the code location passes it to the hub resource as dg.EnvVar; the leak test
        # (tests/graph/test_security.py) looks for it in every file the run wrote
        "HF_TOKEN": FAKE_TOKEN,
        "SFT_STATE_DIR": str(state),
        "DAGSTER_HOME": str(state / "dagster_home"),
        "PYTHONPATH": str(REPO),
    }


def run_demo(state: Path, config: dict, timeout_s: int = 1200) -> DemoRun:
    state.mkdir(parents=True, exist_ok=True)
    config_file = state / "run_config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "llama_sft_dagster.cli.demo", "-c", str(config_file)],
        cwd=REPO,
        env=demo_env(state),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    return DemoRun(state, proc.stdout, proc.stderr, proc.returncode, time.monotonic() - started)


def shared_demo_run(tmp_path_factory) -> DemoRun:
    """The session's run, made on first use by whichever test (or xdist worker) asks first; the fixture
    `demo_cli_run` and build_demo_state share it."""
    from support.session_build import build_once

    def build(state: Path) -> dict:
        run = run_demo(state, DEMO_TEST_CONFIG)
        return {"stdout": run.stdout, "stderr": run.stderr, "returncode": run.returncode, "seconds": run.seconds}

    state, record = build_once(tmp_path_factory, "demo_cli_state", build)
    return DemoRun(state, **record)
