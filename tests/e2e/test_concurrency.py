"""Two real processes on one instance and one artifact store at the same moment (demo data chain, small):
two `sft-materialize-stale`, then `dagster asset materialize` (a run as the UI or the schedule launches it)
beside `sft-materialize-stale`. No asset's step computes twice at once, and no asset's files are torn."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from llama_sft_dagster.assets.source_table import SOURCES
from llama_sft_dagster.core.data.locks import FileLock
from llama_sft_dagster.core.versions import table_version
from support.paths import REPO

BIN = Path(sys.executable).parent
CHAIN = "*word_count_filtered"  # every source's raw asset -> raw_pairs -> word_count_filtered (demo profile)
ASSETS = [*(s.raw_asset for s in SOURCES), "raw_pairs", "word_count_filtered"]


def _env(state: Path) -> dict:
    return {
        **os.environ,
        "SFT_STATE_DIR": str(state),
        "DAGSTER_HOME": str(state / "dagster_home"),
        "SFT_PROFILE": "demo",
    }


def _together(commands: list[list[str]], env: dict) -> list[subprocess.CompletedProcess]:
    procs = [
        subprocess.Popen(c, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    return [
        subprocess.CompletedProcess(c, p.returncode, o, e) for c, p, (o, e) in zip(commands, procs, outs, strict=True)
    ]


def _materializations(instance, name: str) -> list:
    return instance.fetch_materializations(dg.AssetKey(name), limit=100).records


def _files_match_versions(instance, state: Path) -> None:
    """Each asset's data.parquet is the one its latest materialization recorded (no mix of two writers)."""
    for name in ASSETS:
        latest = instance.get_latest_materialization_event(dg.AssetKey(name)).asset_materialization
        assert table_version(state / "artifacts" / name / "data.parquet") == latest.tags["dagster/data_version"], name


@pytest.mark.slow
def test_two_stale_commands_at_once_build_each_asset_once(tmp_path):
    state = tmp_path / "state"
    stale = [str(BIN / "sft-materialize-stale"), "--select", CHAIN]
    first, second = _together([stale, stale], _env(state))
    assert first.returncode == 0 and second.returncode == 0, first.stderr[-2000:] + second.stderr[-2000:]
    outputs = first.stdout + second.stdout
    assert outputs.count("waiting for another sft-materialize-stale on this instance") == 1, outputs
    assert f"materialized {len(ASSETS)} asset(s) in 1 run(s)" in outputs
    assert "materialized 0 asset(s) in 0 run(s)" in outputs
    with dg.DagsterInstance.from_config(str(state / "dagster_home")) as instance:
        assert {n: len(_materializations(instance, n)) for n in ASSETS} == dict.fromkeys(ASSETS, 1)
        assert len(instance.get_run_records()) == 1
        _files_match_versions(instance, state)


def _claims(instance, run_id: str) -> dict[str, float]:
    """When each asset was claimed for writing in a run (the 'artifacts: X claimed by run' log line)."""
    out = {}
    for entry in instance.all_logs(run_id):
        if entry.user_message.startswith("artifacts: ") and " claimed by run " in entry.user_message:
            out[entry.user_message.split()[1]] = entry.timestamp
    return out


def _wait_for_both_to_wait(instance, procs, timeout=240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [r.dagster_run.run_id for r in instance.get_run_records()]
        waiting = {
            run_id
            for run_id in runs
            for e in instance.all_logs(run_id)
            if e.user_message.startswith("waiting for word_count_filtered")
        }
        if len(waiting) == 2:
            return
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.5)
    pytest.fail("the two runs did not both reach word_count_filtered")


@pytest.mark.slow
def test_a_launched_run_and_the_stale_command_never_write_one_asset_at_once(tmp_path):
    """A third writer (this test) holds word_count_filtered while both runs start, so both are certain to
    reach it while it is taken, and then to race for it the moment it is free."""
    state = tmp_path / "state"
    env = _env(state)
    # the instance exists already, as when the UI or the daemon is up (a dry run creates it)
    subprocess.run(
        [str(BIN / "sft-materialize-stale"), "--dry-run", "--no-observe"],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    in_process = json.dumps({"execution": {"config": {"in_process": {}}}})  # both runs start in seconds
    launched = [
        str(BIN / "dagster"),
        "asset",
        "materialize",
        "-m",
        "llama_sft_dagster.definitions",
        "--select",
        CHAIN,
        "--config-json",
        in_process,
    ]
    stale = [str(BIN / "sft-materialize-stale"), "--select", CHAIN]
    held = FileLock(state / "artifacts" / ".locks" / "word_count_filtered.lock")
    assert held.try_acquire("the test")
    procs = [
        subprocess.Popen(c, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for c in (launched, stale)
    ]
    try:
        with dg.DagsterInstance.from_config(str(state / "dagster_home")) as instance:
            _wait_for_both_to_wait(instance, procs)
    finally:
        held.release()
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[-2000:] for o in outs]
    with dg.DagsterInstance.from_config(str(state / "dagster_home")) as instance:
        runs = [r.dagster_run.run_id for r in instance.get_run_records()]
        assert len(runs) == 2
        claims = {run_id: _claims(instance, run_id) for run_id in runs}
        for name in ASSETS:
            writes = []  # (claimed, materialized) of each run that built `name`
            for run_id in runs:
                done = [r.timestamp for r in _materializations(instance, name) if r.run_id == run_id]
                if done:
                    assert name in claims[run_id], (name, run_id)
                    writes.append((claims[run_id][name], done[0]))
            writes.sort()
            # the later writer claimed the asset only after the earlier one had finished it
            for (_, first_done), (second_claim, _) in zip(writes, writes[1:], strict=False):
                assert second_claim >= first_done, (name, writes)
        assert len(writes) == 2  # word_count_filtered: both runs built it, one after the other
        checks = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey("word_count_filtered"), "rows_accounted_for"), limit=10
        )
        assert len(checks) == 2 and all(c.status.value == "SUCCEEDED" for c in checks)  # data and rejects agree
        _files_match_versions(instance, state)
