"""The last line of a failed run: `failure_cause` on real Dagster runs (a failed step, a failed blocking and
a failed non-blocking check), and `sft-materialize-stale` ending with it, in-process and as a real command."""
import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from llama_sft_dagster.cli.failure import failure_cause
from llama_sft_dagster.cli.stale import materialize_stale
from support.paths import REPO
from support.staleness_graph import build_defs, write_sources


@dg.asset
def made() -> None:
    pass


@dg.asset_check(asset=made, blocking=True)
def rows_match() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, description="rows_in 10 != rows_out 9 + dropped 0")


@dg.asset(deps=[made])
def after() -> None:
    pass


@dg.asset
def warned() -> None:
    pass


@dg.asset_check(asset=warned)
def logits_agree() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, metadata={"max_abs_diff": 0.5, "bound": 1e-4})


@dg.asset
def broken() -> None:
    try:
        {}["key"]
    except KeyError as exc:  # a cause chain under the user's error, as `raise ... from` gives
        raise ValueError("data/b.csv: something the user can fix\nsecond line of detail") from exc


def _run(instance, assets, checks=()):
    return dg.materialize([*assets, *checks], instance=instance, raise_on_error=False)


def test_a_failed_step_names_step_error_and_where_to_look():
    with dg.DagsterInstance.ephemeral() as instance:
        result = _run(instance, [broken])
        line = failure_cause(instance, result.run_id)
    assert line.startswith("FAILED broken: ValueError: data/b.csv: something the user can fix (run ")
    assert "second line" not in line and "\n" not in line
    assert line.endswith(f"Runs -> {result.run_id})")


def test_a_failed_blocking_check_names_the_check_and_its_reason():
    with dg.DagsterInstance.ephemeral() as instance:
        result = _run(instance, [made, after], [rows_match])
        assert not result.success
        line = failure_cause(instance, result.run_id)
    assert line.startswith("FAILED check made:rows_match failed: rows_in 10 != rows_out 9 + dropped 0 (run ")


def test_a_failed_non_blocking_check_is_reported_although_the_run_succeeded():
    with dg.DagsterInstance.ephemeral() as instance:
        result = _run(instance, [warned], [logits_agree])
        assert result.success
        line = failure_cause(instance, result.run_id)
    assert line.startswith("FAILED check warned:logits_agree failed: bound=0.0001, max_abs_diff=0.5 (run ")


def test_a_successful_run_has_no_cause():
    with dg.DagsterInstance.ephemeral() as instance:
        assert failure_cause(instance, _run(instance, [made]).run_id) == ""


def test_stale_command_ends_with_the_cause(tmp_path):
    """A Bitext Parquet whose instruction column holds numbers: the command's last line is the cause."""
    (tmp_path / "src").mkdir()
    bitext, multiwoz = write_sources(tmp_path / "src", bitext_rows=20)
    table = pq.read_table(bitext)
    numbers = pa.array([113542617735902.0 + i for i in range(table.num_rows)])
    pq.write_table(table.set_column(table.column_names.index("instruction"), "instruction", numbers), bitext)
    lines = []
    with dg.DagsterInstance.ephemeral() as instance:
        summary = materialize_stale(build_defs(tmp_path, bitext, multiwoz), instance, "bitext_raw", out=lines.append)
    assert not summary.ok
    assert lines[-1].startswith(f"FAILED bitext_raw: RawDataError: {bitext}: column 'instruction' has type double, "
                                "not text"), lines[-1]


def test_real_command_ends_with_the_cause(tmp_path):
    """The installed `sft-materialize-stale` on a state folder whose artifacts path is a file."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "artifacts").write_text("not a folder")
    env = {**os.environ, "SFT_STATE_DIR": str(state), "DAGSTER_HOME": str(state / "dagster_home"),
           "SFT_PROFILE": "demo"}
    cmd = [str(Path(sys.executable).parent / "sft-materialize-stale"), "--select", "bitext_raw", "--no-observe"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith(f"FAILED bitext_raw: ArtifactPathError: artifact folder '{state / 'artifacts'}"), proc.stdout
    assert "Not a directory" in last and "make ui" in last


def test_dagster_asset_materialize_with_the_project_logger_ends_with_the_cause(tmp_path):
    """Dagster's own CLI, resources pointed at a bad local file as a user would: ~10 lines, the cause last."""
    bad = tmp_path / "b.parquet"
    pq.write_table(pa.table({"flags": ["B"], "instruction": [113542617735902.0], "category": ["ORDER"],
                             "intent": ["track_order"], "response": ["Today."]}), bad)
    state = tmp_path / "state"
    env = {**os.environ, "SFT_STATE_DIR": str(state), "DAGSTER_HOME": str(state / "dagster_home"),
           "SFT_PROFILE": "demo"}
    (state / "dagster_home").mkdir(parents=True)
    (state / "dagster_home" / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())  # as `make install`
    config = {"loggers": {"console": {}}, "resources": {"bitext": {"config": {"location": str(bad)}}}}
    cmd = [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m", "llama_sft_dagster.definitions",
           "--select", "bitext_raw", "--config-json", json.dumps(config)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert proc.returncode == 1 and lines[-1] == "Error: Materialization failed."
    assert lines[-2].startswith(f"FAILED bitext_raw: RawDataError: {bad}: column 'instruction' has type double"), lines
    assert len(lines) < 20 and "Stack Trace" not in proc.stdout + proc.stderr, len(lines)
