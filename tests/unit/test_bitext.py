"""Bitext loader: both published schemas, CSV/Parquet, faithful cells, errors naming file and column."""

from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llama_sft_dagster.core.sources import bitext
from llama_sft_dagster.core.sources.bitext import (
    BITEXT_COLUMNS,
    RAW_BITEXT_SCHEMA,
    ignored_columns,
    load_bitext_file,
    normalise_bitext_table,
    schema_variant,
)
from llama_sft_dagster.core.sources.errors import RawDataError
from support.paths import shared_file

V11_HEADER = "flags,instruction,category,intent,response\n"
EARLY_HEADER = (
    "context,role,instruction,intent,entity_type,entity_value,start_offset,end_offset,category,tags,response\n"
)


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def test_v11_csv_keeps_quoted_multiline_fields_and_empty_cells(tmp_path):
    path = write(
        tmp_path,
        "v11.csv",
        V11_HEADER + 'B,"cancel, now",ORDER,cancel_order,"Step 1.\n""Step"" 2."\nQ,,ORDER,track_order,ok\n',
    )
    table = load_bitext_file(path)
    assert table.schema.equals(RAW_BITEXT_SCHEMA)
    assert table.column("response").to_pylist() == ['Step 1.\n"Step" 2.', "ok"]
    assert table.column("instruction").to_pylist() == ["cancel, now", ""]  # faithful: not dropped here
    assert table.column("source_file").to_pylist() == ["v11.csv", "v11.csv"]
    assert table.column("row_index").to_pylist() == [0, 1]
    assert schema_variant(table) == "v11" and ignored_columns(table) == []


def test_earlier_release_maps_tags_to_flags_and_reports_dropped_columns(tmp_path):
    row = 'customer support,virtual assistant,where is 12?,track_order,order_id,12,9,11,ORDER,BIL,"Here."\n'
    table = load_bitext_file(write(tmp_path, "old.csv", EARLY_HEADER + row))
    assert table.column_names == BITEXT_COLUMNS + ["source_file", "row_index"]
    assert table.column("flags").to_pylist() == ["BIL"]
    assert schema_variant(table) == "2023-08"
    assert ignored_columns(table) == ["context", "role", "entity_type", "entity_value", "start_offset", "end_offset"]


def test_extra_columns_are_ignored_and_reported(tmp_path):
    path = write(tmp_path, "x.csv", "flags,instruction,category,intent,response,lang\nB,a b,ORDER,x,y,en\n")
    table = load_bitext_file(path)
    assert table.num_rows == 1 and "lang" not in table.column_names
    assert ignored_columns(table) == ["lang"]


def test_parquet_keeps_nulls(tmp_path):
    src = pa.table(
        {
            "flags": ["B", None],
            "instruction": ["a", None],
            "category": ["ORDER"] * 2,
            "intent": ["x"] * 2,
            "response": [None, "r"],
        }
    )
    pq.write_table(src, tmp_path / "b.parquet")
    table = load_bitext_file(tmp_path / "b.parquet")
    assert table.column("instruction").to_pylist() == ["a", None]
    assert table.column("response").to_pylist() == [None, "r"]


@pytest.mark.parametrize(
    "name, content, expected",
    [
        (
            "nocol.csv",
            "flags,instruction,category,response\nB,a,ORDER,r\n",
            ["nocol.csv", "missing required column(s) ['intent']", "columns found", "'response'"],
        ),
        (
            "noflags.csv",
            "instruction,category,intent,response\na,ORDER,x,r\n",
            ["noflags.csv", "['flags']", "`tags` is accepted"],
        ),
        ("empty.csv", "", ["empty.csv", "empty file"]),
        ("blank.csv", "\n  \n", ["blank.csv", "empty file"]),
        ("header.csv", V11_HEADER, ["header.csv", "no data rows"]),
        (
            "bad.csv",
            V11_HEADER.encode() + b"B,caf\xe9,ORDER,x,r\n",
            ["bad.csv", "invalid UTF-8", "byte offset 48", "line 2"],
        ),
        (
            "ragged.csv",
            V11_HEADER + "B,a,ORDER,x,r,extra\n",
            ["ragged.csv", "malformed CSV at line 2", "expected 5 columns", "found 6"],
        ),
        (
            "dupe.csv",
            "flags,flags,instruction,category,intent,response\nB,B,a,O,x,r\n",
            ["dupe.csv", "duplicate column", "flags"],
        ),
        ("data.json", "[]", ["data.json", "unsupported file type"]),
    ],
)
def test_load_errors_name_file_and_problem(tmp_path, name, content, expected):
    with pytest.raises(RawDataError) as err:
        load_bitext_file(write(tmp_path, name, content))
    for part in expected:
        assert part in str(err.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(RawDataError, match="nowhere.csv.*not found"):
        load_bitext_file(tmp_path / "nowhere.csv")


def test_hub_rows_go_through_the_same_normaliser():
    ds = datasets.Dataset.from_dict(
        {
            "flags": ["B", "Q"],
            "instruction": ["i1", "i2"],
            "category": ["ORDER"] * 2,
            "intent": ["cancel_order"] * 2,
            "response": ["r1", None],
            "id": [7, 8],
        }
    )
    table = normalise_bitext_table(ds.with_format("arrow")[:], "org/ds@abc/train")
    assert table.schema.equals(RAW_BITEXT_SCHEMA)
    assert table.column("response").to_pylist() == ["r1", None]
    assert ignored_columns(table) == ["id"]


def test_load_bitext_hub_pins_the_resolved_commit(monkeypatch):
    """The hub cannot be reached here: fake only the two network calls, check the pinning logic."""
    import huggingface_hub

    sha = "0123456789abcdef0123456789abcdef01234567"
    calls = {}

    class FakeApi:
        def dataset_info(self, repo_id, revision=None, token=None, timeout=None):
            assert timeout is not None  # every hub call has a timeout (core/sources/hub.py)
            calls["info"] = (repo_id, revision, token)
            return type("Info", (), {"sha": sha})()

    def fake_load_dataset(path, revision=None, split=None, token=None):
        calls["load"] = (path, revision, split, token)
        return datasets.Dataset.from_dict({c: ["v"] for c in BITEXT_COLUMNS})

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    table, resolved = bitext.load_bitext_hub("org/ds", revision="main", token="t")
    assert resolved == sha
    assert calls == {"info": ("org/ds", "main", "t"), "load": ("org/ds", sha, "train", "t")}
    assert table.column("source_file").to_pylist() == [f"org/ds@{sha[:12]}/train"]


def test_real_v11_head5000():
    table = load_bitext_file(
        shared_file("bitext/Bitext_Sample_Customer_Support_Training_Dataset_27K_responses-v11.head5000.csv")
    )
    assert table.num_rows == 5000 and schema_variant(table) == "v11"
    assert len(set(table.column("intent").to_pylist())) == 6
    assert any("\n" in r for r in table.column("response").to_pylist())  # multi-line fields survived


def test_real_earlier_release():
    table = load_bitext_file(
        shared_file("bitext/earlier_release_2023-08/Bitext_Sample_Customer_Support_Training_Dataset.csv")
    )
    assert table.num_rows == 4514 and schema_variant(table) == "2023-08"
    assert len(set(table.column("intent").to_pylist())) == 27
    assert len(set(table.column("category").to_pylist())) == 11
    assert table.column("flags")[0].as_py() == "BIL"
