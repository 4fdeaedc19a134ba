"""The last line of a failed run: `failure_cause` on real Dagster runs (a failed step, a failed blocking and
a failed non-blocking check), and `materialize_stale` ending with it (the commands: e2e/test_failure_output.py)."""

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from llama_sft_dagster.cli.stale import materialize_stale
from llama_sft_dagster.logs.failure import failure_cause
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
    assert not summary.ok and summary.materialized == [] and summary.not_built == ["bitext_raw"]
    assert lines[-2].startswith("materialized 0 asset(s) in 1 run(s)") and lines[-2].endswith("not built: bitext_raw")
    assert lines[-1].startswith(
        f"FAILED bitext_raw: RawDataError: {bitext}: column 'instruction' has type double, not text"
    ), lines[-1]
