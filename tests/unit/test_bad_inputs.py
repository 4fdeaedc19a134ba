"""Bad inputs a new user makes: nothing skipped without a word, no text silently changed, messages that
name the file as configured (folder included), the line of a CSV error and the delimiter it looks like."""

import json
import os
import signal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llama_sft_dagster.core.data.pairs import pairs_balanced
from llama_sft_dagster.core.sources.bitext import load_bitext_file
from llama_sft_dagster.core.sources.errors import RawDataError
from llama_sft_dagster.core.sources.multiwoz import load_multiwoz_folder
from support.pairs import seed_pairs

HEADER = "flags,instruction,category,intent,response\n"
ROW = 'B,"where is my order 12?",ORDER,track_order,"It ships today."\n'
NOBODY = 65534  # the unprivileged user and group of Debian and most Linux systems
TURNS = [{"speaker": "USER", "utterance": "u"}, {"speaker": "SYSTEM", "utterance": "s"}]


def skipped_files(table):
    from llama_sft_dagster.core.sources.multiwoz_files import skipped_files

    return skipped_files(table)


def dialogues(*ids):
    return json.dumps([{"dialogue_id": i, "turns": TURNS} for i in ids])


def layout(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


# --- MultiWOZ: every file under the folder is read, skipped with a reason, or fails the run ---------


@pytest.mark.parametrize(
    "rel, words",
    [
        ("validation/dialogues_001.json", ["validation/ is not a split folder", "train, dev, test"]),
        ("train/dialogues_1.json", ["not named dialogues_NNN.json"]),
        ("train/extra.json", ["not named dialogues_NNN.json"]),
        ("notes.txt", ["not part of the published MultiWOZ 2.2 layout"]),
        ("train/sub/dialogues_002.json", ["not part of the published"]),
    ],
)
def test_a_file_outside_the_layout_fails_naming_it(tmp_path, rel, words):
    root = layout(tmp_path / "mw", {"train/dialogues_001.json": dialogues("A"), rel: dialogues("B")})
    with pytest.raises(RawDataError) as err:
        load_multiwoz_folder(str(root))
    message = str(err.value)
    assert message.startswith(f"{root}/{rel}: ") and "unexpected_files='skip'" in message
    for word in words:
        assert word in message


def test_skip_policy_lists_every_unread_file_with_its_reason(tmp_path):
    root = layout(
        tmp_path / "mw",
        {
            "train/dialogues_001.json": dialogues("A"),
            "dev/dialogues_001.json": dialogues("B"),
            "validation/dialogues_001.json": dialogues("C"),
            "schema.json": "[]",
            "dialog_acts.json": "{}",
            "train/.DS_Store": "x",
        },
    )
    table = load_multiwoz_folder(root, unexpected_files="skip")
    assert sorted(set(table.column("dialogue_id").to_pylist())) == ["A", "B"]
    assert skipped_files(table) == [
        {"file": "dialog_acts.json", "reason": "published non-dialogue file"},
        {"file": "schema.json", "reason": "published non-dialogue file"},
        {"file": "train/.DS_Store", "reason": "hidden file"},
        {
            "file": "validation/dialogues_001.json",
            "reason": "unexpected file skipped: validation/ is not a split folder of the published layout "
            "(train, dev, test)",
        },
    ]


def test_published_extras_alone_do_not_fail_the_default(tmp_path):
    root = layout(tmp_path / "mw", {"train/dialogues_001.json": dialogues("A"), "schema.json": "[]"})
    skipped = skipped_files(load_multiwoz_folder(root))
    assert skipped == [{"file": "schema.json", "reason": "published non-dialogue file"}]


def as_unprivileged_user(fn) -> str:
    """`fn()` in a forked child that drops to the user `nobody` when run as root (as CI is): root lists any
    folder, so a `chmod 0` folder is unreadable only to another user. Returns "ok" or "<Error>: <message>"."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: already has the code imported, so it reads no module files as `nobody`
        status = 1
        try:
            os.close(read_end)
            signal.alarm(60)  # never outlive the test
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            try:
                fn()
                outcome = "ok"
            except Exception as exc:
                outcome = f"{type(exc).__name__}: {exc}"
            os.write(write_end, outcome.encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        outcome = reader.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"the child failed ({status}): {outcome!r}"
    return outcome


def test_unlistable_subfolder_fails_naming_it(tmp_path, monkeypatch):
    layout(tmp_path / "mw", {"train/dialogues_001.json": dialogues("A"), "dev/dialogues_001.json": dialogues("B")})
    tmp_path.chmod(0o755)  # the unprivileged child starts its relative paths here
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mw" / "dev").chmod(0)
    try:
        outcome = as_unprivileged_user(lambda: load_multiwoz_folder("mw"))
    finally:
        (tmp_path / "mw" / "dev").chmod(0o755)
    assert outcome == "RawDataError: mw/dev: cannot list folder: Permission denied"


# --- messages name the path as configured, and both places of a duplicate ------------------------


def test_multiwoz_messages_name_the_folder_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    layout(tmp_path / "data" / "mw", {"train/dialogues_001.json": "[{"})
    with pytest.raises(RawDataError, match=r"^data/mw/train/dialogues_001.json: invalid JSON"):
        load_multiwoz_folder("data/mw")


def test_duplicate_dialogue_in_one_file_names_both_places(tmp_path):
    root = layout(tmp_path / "mw", {"train/dialogues_001.json": dialogues("A", "B", "A")})
    with pytest.raises(RawDataError) as err:
        load_multiwoz_folder(root)
    assert str(err.value) == f"duplicate dialogue_id 'A': dialogues 0 and 2 of {root}/train/dialogues_001.json"


def test_duplicate_dialogue_across_files_names_both(tmp_path):
    root = layout(
        tmp_path / "mw", {"train/dialogues_001.json": dialogues("X", "A"), "test/dialogues_004.json": dialogues("A")}
    )
    with pytest.raises(RawDataError) as err:
        load_multiwoz_folder(root)
    assert str(err.value) == (
        f"duplicate dialogue_id 'A': dialogue 1 of {root}/train/dialogues_001.json and "
        f"dialogue 0 of {root}/test/dialogues_004.json"
    )


def test_bitext_messages_name_the_path_as_given_but_rows_record_the_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "b.csv").write_text("instruction,response\na,b\n")
    with pytest.raises(RawDataError, match=r"^exports/b.csv: missing required column"):
        load_bitext_file("exports/b.csv")
    (tmp_path / "exports" / "b.csv").write_text(HEADER + ROW)
    assert load_bitext_file("exports/b.csv").column("source_file").to_pylist() == ["b.csv"]  # no folder stored


# --- no text silently changed ----------------------------------------------------------------------


def _parquet(tmp_path, **overrides) -> Path:
    cols = {
        "flags": pa.array(["B"]),
        "instruction": pa.array(["where is my order?"]),
        "category": pa.array(["ORDER"]),
        "intent": pa.array(["track_order"]),
        "response": pa.array(["Today."]),
    }
    cols.update(overrides)
    pq.write_table(pa.table(cols), tmp_path / "b.parquet")
    return tmp_path / "b.parquet"


@pytest.mark.parametrize(
    "column, values, type_name",
    [
        ("instruction", pa.array([113542617735902.0]), "double"),
        ("response", pa.array([113542617735902], pa.int64()), "int64"),
        ("instruction", pa.array([True]), "bool"),
        ("category", pa.array([1.5]), "double"),
    ],
)
def test_non_text_columns_are_refused_naming_column_and_type(tmp_path, column, values, type_name):
    with pytest.raises(RawDataError) as err:
        load_bitext_file(_parquet(tmp_path, **{column: values}))
    assert f"column {column!r} has type {type_name}, not text" in str(err.value)
    assert str(tmp_path / "b.parquet") in str(err.value)


def test_metadata_columns_are_cast_only_where_lossless(tmp_path):
    table = load_bitext_file(
        _parquet(
            tmp_path,
            flags=pa.array([113542617735902], pa.int64()),
            intent=pa.array(["track_order"]).dictionary_encode(),
            category=pa.array(["ORDER"], pa.large_string()),
        )
    )
    row = table.to_pylist()[0]
    assert (row["flags"], row["intent"], row["category"]) == ("113542617735902", "track_order", "ORDER")


# --- a repeated header row is a counted drop, not a pair --------------------------------------------


@pytest.mark.parametrize("header", [HEADER, "tags,instruction,category,intent,response\n"])
def test_repeated_header_row_is_dropped_with_a_reason(tmp_path, header):
    path = tmp_path / "two_exports.csv"
    path.write_text(HEADER + ROW + header + ROW.replace("12", "13"))
    raw = load_bitext_file(path)
    assert raw.num_rows == 3  # the raw copy stays faithful
    turns = load_multiwoz_folder(layout(tmp_path / "mw", {"train/dialogues_001.json": dialogues("A")}))
    pairs, rejects, counts = seed_pairs(raw, turns)
    assert counts["bitext_dropped_repeated_header"] == 1 and counts["bitext_pairs_out"] == 2
    assert rejects.to_pylist()[0]["row_index"] == 1 and rejects.to_pylist()[0]["reason"] == "repeated_header"
    assert "instruction" not in pairs.column("instruction").to_pylist() and pairs_balanced(counts)


# --- CSV parse errors: the line, and the delimiter the file really uses ----------------------------


@pytest.mark.parametrize("sep, label", [(";", "semicolon"), ("\t", "tab")])
def test_other_delimiters_are_named(tmp_path, sep, label):
    path = tmp_path / "export.csv"
    path.write_text(HEADER.replace(",", sep) + f"B{sep}where, when{sep}ORDER{sep}x{sep}r\n")
    with pytest.raises(RawDataError) as err:
        load_bitext_file(path)
    message = str(err.value)
    assert "line 2" in message and f"looks {label}-separated" in message and "comma-separated" in message


def test_other_delimiter_without_commas_in_data_is_named_too(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text(HEADER.replace(",", ";") + "B;where;ORDER;x;r\n")
    with pytest.raises(RawDataError, match="missing required column.*looks semicolon-separated"):
        load_bitext_file(path)


def test_ragged_row_gives_its_first_line_after_multiline_fields(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text(HEADER + 'B,"two\nlines",ORDER,x,r\n' + "B,a,ORDER,x,r,extra\n")
    with pytest.raises(RawDataError, match=r"ragged.csv: malformed CSV at line 4: expected 5 columns .* found 6$"):
        load_bitext_file(path)
