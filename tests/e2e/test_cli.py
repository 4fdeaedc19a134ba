"""The project's commands as a user types them, in subprocesses from the repo root:
`sft-materialize-stale` (persistent instance, printed causes, a no-op that starts no run), the missing-upstream
message of `dagster asset materialize`, an error before any run. (The UI launcher's signal handling is tested
on the browser tests' server: tests/e2e/test_ui_browser.py.)"""

import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from llama_sft_dagster.assets.source_table import SOURCES
from llama_sft_dagster.resources.artifacts import ArtifactStore, MissingUpstreamError
from support.paths import REPO

BIN = Path(sys.executable).parent
DATA_CHAIN = "*word_count_filtered"  # every source's raw asset -> raw_pairs -> word_count_filtered (demo)
CHAIN_ASSETS = len(SOURCES) + 2


def run(cmd: list[str], env: dict, timeout: int = 300) -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    return proc, time.perf_counter() - started


@pytest.fixture
def user_env(isolated_state):
    """A shell with no DAGSTER_HOME: the command must fall back to the project-local one."""
    env = {**os.environ, "SFT_STATE_DIR": str(isolated_state)}
    env.pop("DAGSTER_HOME")
    return env


@pytest.mark.slow
def test_stale_command_uses_persistent_instance_prints_causes_and_a_noop_starts_no_run(user_env, isolated_state):
    cmd = [str(BIN / "sft-materialize-stale"), "--select", DATA_CHAIN]
    first, _ = run(cmd, user_env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "bitext_raw: bitext_raw is missing (never materialized)" in first.stdout
    assert f"materialized {CHAIN_ASSETS} asset(s) in 1 run(s)" in first.stdout
    home = isolated_state / "dagster_home"
    assert (home / "dagster.yaml").read_text() == (REPO / "dagster.yaml").read_text()

    second, seconds = run(cmd, user_env)  # a new process: staleness must survive in the instance
    assert second.returncode == 0, second.stderr[-3000:]
    assert "nothing to materialize" in second.stdout and "materialized 0 asset(s) in 0 run(s)" in second.stdout
    print(f"no-op rerun of {DATA_CHAIN}: {seconds:.1f} s wall (process start included)")

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert len(instance.get_run_records()) == 1  # the no-op started no run

    dry, _ = run(cmd + ["--dry-run", "--no-observe"], user_env)
    assert dry.returncode == 0 and "nothing to materialize" in dry.stdout


@pytest.mark.slow
def test_dry_run_lists_missing_assets_and_runs_nothing(user_env, isolated_state):
    proc, _ = run([str(BIN / "sft-materialize-stale"), "--select", DATA_CHAIN, "--dry-run"], user_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"would materialize {CHAIN_ASSETS} asset(s):" in proc.stdout
    assert (
        "word_count_filtered: word_count_filtered is missing (never materialized); downstream of raw_pairs, which runs"
        in proc.stdout
    )
    assert not (isolated_state / "artifacts" / "raw_pairs").exists()


def test_an_error_before_any_run_is_one_line_and_verbose_adds_the_trace(user_env):
    env = {**user_env, "SFT_PROFILE": "nonsense"}  # build_defs refuses it before anything runs
    line = (
        "FAILED before any run: ValueError: SFT_PROFILE='nonsense' is not a profile; "
        "choose one of demo, rehearsal, full"
    )
    plain, _ = run([str(BIN / "sft-materialize-stale"), "--no-observe"], env, timeout=120)
    assert plain.returncode == 1
    assert plain.stdout.splitlines() == [f"{line} (--verbose shows the stack trace)"]
    assert "Traceback" not in plain.stderr, plain.stderr[-2000:]
    verbose, _ = run([str(BIN / "sft-materialize-stale"), "--no-observe", "--verbose"], env, timeout=120)
    assert verbose.returncode == 1 and verbose.stdout.splitlines()[-1].startswith(line)
    assert "Traceback (most recent call last)" in verbose.stderr and "active_profile" in verbose.stderr


def test_missing_upstream_message_names_the_selection(tmp_path):
    artifacts = ArtifactStore(root=str(tmp_path))
    with pytest.raises(MissingUpstreamError, match=r"dagster asset materialize --select '\*train_adapter'"):
        artifacts.upstream("sft_dataset", "train_adapter")


@pytest.mark.slow
@pytest.mark.parametrize(
    "typed",
    [
        "dagster asset materialize --select train_adapter",
        # dg finds the code location from pyproject's [tool.dg] (no -m, no variable)
        "dg launch --assets train_adapter",
    ],
)
def test_materialize_train_adapter_alone_on_empty_store_says_select_upstream(isolated_state, typed):
    env = {**os.environ, "SFT_STATE_DIR": str(isolated_state)}
    env.pop("DAGSTER_CLI_ASSET_MATERIALIZE_MODULE_NAME", None)  # as in a fresh shell: it comes from activate
    proc, _ = run(["bash", "-c", f"source {BIN / 'activate'} && {typed}"], env)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "--select '*train_adapter'" in out, out[-2000:]  # the asset ran: the command found the code location
