"""Atomic storage, path confinement and the accounting identity."""

import pyarrow as pa
import pytest

from llama_sft_dagster.core.data.accounting import check_balance, partition
from llama_sft_dagster.core.data.storage import ArtifactPathError, atomic_path, confined, read_parquet, write_parquet
from llama_sft_dagster.core.versions import table_version


def test_partition_counts_and_rejects():
    t = pa.table({"x": [1, 2, 3, 4]})
    kept, rejected, counts = partition(t, [None, "a", None, "b"], "s", ["", "d1", "", "d2"])
    assert kept.column("x").to_pylist() == [1, 3]
    assert rejected.column("reason").to_pylist() == ["a", "b"]
    assert rejected.column("detail").to_pylist() == ["d1", "d2"]
    assert counts.as_metadata() == {"rows_in": 4, "rows_out": 2, "dropped_total": 2, "dropped_a": 1, "dropped_b": 1}
    assert counts.balanced()


def test_partition_refuses_wrong_number_of_decisions():
    with pytest.raises(ValueError, match="3 decisions for 4 rows"):
        partition(pa.table({"x": [1, 2, 3, 4]}), [None] * 3, "s")


def test_check_balance_reports_missing_rows():
    ok, _ = check_balance(10, 7, {"a": 3})
    bad, text = check_balance(10, 7, {"a": 2})
    assert ok and not bad and "1 rows unaccounted" in text


def test_failed_write_keeps_previous_version(tmp_path):
    path = tmp_path / "d" / "data.parquet"
    write_parquet(pa.table({"x": [1]}), path)
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("killed")
    assert read_parquet(path).column("x").to_pylist() == [1]
    assert [p.name for p in path.parent.iterdir()] == ["data.parquet"]  # no temp file left


def test_content_version_ignores_file_metadata(tmp_path):
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    write_parquet(pa.table({"x": [1, 2]}), a)
    write_parquet(pa.table({"x": [1, 2]}), b)
    assert table_version(a) == table_version(b)
    write_parquet(pa.table({"x": [1, 3]}), b)
    assert table_version(a) != table_version(b)


@pytest.mark.parametrize("rel", ["../outside", "/etc/passwd", "a/../../b"])
def test_paths_are_confined_to_the_root(tmp_path, rel):
    with pytest.raises(ArtifactPathError, match="escapes the artifact root"):
        confined(tmp_path, rel)


def test_atomic_dir_swaps_whole_folders_and_keeps_the_old_one_on_failure(tmp_path):
    from llama_sft_dagster.core.data.storage import atomic_dir

    final = tmp_path / "model"
    with atomic_dir(final) as tmp:
        (tmp / "weights.safetensors").write_text("v1")
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as tmp:
            (tmp / "weights.safetensors").write_text("half")
            raise RuntimeError("killed mid-save")
    assert (final / "weights.safetensors").read_text() == "v1"
    with atomic_dir(final) as tmp:
        (tmp / "weights.safetensors").write_text("v2")
    assert (final / "weights.safetensors").read_text() == "v2"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith((".model", "model"))] == ["model"]
