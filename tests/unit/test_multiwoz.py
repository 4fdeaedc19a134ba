"""MultiWOZ loader: published layout and single files, faithful turns, errors naming file/dialogue/turn/field."""

import json
import zipfile
from pathlib import Path

import pytest

from llama_sft_dagster.core.sources.errors import RawDataError
from llama_sft_dagster.core.sources.multiwoz import TURN_SCHEMA, download_multiwoz_archive, load_multiwoz_folder
from support.paths import shared_file


def turn(speaker, utterance, intent=None, service="hotel"):
    frames = [{"service": "taxi", "state": {"active_intent": "NONE"}}]
    if intent:
        frames.append({"service": service, "state": {"active_intent": intent}})
    return {"turn_id": "x", "speaker": speaker, "utterance": utterance, "frames": frames}


def dialogue(did, turns, services=("hotel",)):
    return {"dialogue_id": did, "services": list(services), "turns": turns}


def write_layout(root: Path, files: dict[str, object]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    return root


def test_published_layout_one_row_per_turn(tmp_path):
    root = write_layout(
        tmp_path,
        {
            "train/dialogues_001.json": [
                dialogue(
                    "A.json", [turn("USER", "need a hotel", "find_hotel"), turn("SYSTEM", "ok")], ("hotel", "taxi")
                )
            ],
            "dev/dialogues_001.json": [
                dialogue("B.json", [turn("USER", "hi"), turn("CLERK", ""), turn("SYSTEM", "\x07x")])
            ],
            "schema.json": {"ignored": True},
        },
    )
    table = load_multiwoz_folder(root)
    assert table.schema.equals(TURN_SCHEMA)
    rows = table.to_pylist()
    assert [(r["dialogue_id"], r["split"], r["source_file"], r["turn_index"]) for r in rows] == [
        ("A.json", "train", "train/dialogues_001.json", 0),
        ("A.json", "train", "train/dialogues_001.json", 1),
        ("B.json", "dev", "dev/dialogues_001.json", 0),
        ("B.json", "dev", "dev/dialogues_001.json", 1),
        ("B.json", "dev", "dev/dialogues_001.json", 2),
    ]
    assert rows[0]["services"] == "hotel,taxi"
    assert (rows[0]["active_intent"], rows[0]["domain"]) == ("find_hotel", "hotel")  # first non-NONE frame
    assert rows[1]["active_intent"] is None and rows[2]["active_intent"] is None
    # faithful copy: unknown speaker, empty utterance and control characters are kept as written
    assert (rows[3]["speaker"], rows[3]["utterance"], rows[4]["utterance"]) == ("CLERK", "", "\x07x")


def test_single_file_of_dialogues_uses_given_split(tmp_path):
    path = write_layout(tmp_path, {"d.json": [dialogue("A", [turn("USER", "u"), turn("SYSTEM", "s")])]}) / "d.json"
    table = load_multiwoz_folder(path, split="test")
    assert set(table.column("split").to_pylist()) == {"test"}
    assert set(table.column("source_file").to_pylist()) == {"d.json"}


GOOD = [dialogue("A.json", [turn("USER", "u"), turn("SYSTEM", "s")])]


@pytest.mark.parametrize(
    "files, expected",
    [
        ({"train/other.json": GOOD}, ["train/other.json", "not named dialogues_NNN.json"]),
        ({"schema.json": {}}, ["no dialogue files", "dialogues_NNN.json", "schema.json"]),
        (
            {"train/dialogues_001.json": b'[{"dialogue_id": "A",'},
            ["train/dialogues_001.json", "invalid JSON", "line 1"],
        ),
        (
            {"train/dialogues_001.json": b'[{"dialogue_id": "caf\xe9"}]'},
            ["train/dialogues_001.json", "invalid UTF-8", "byte offset 21"],
        ),
        (
            {"train/dialogues_001.json": {"dialogue_id": "A"}},
            ["train/dialogues_001.json", "top level must be a list", "dict"],
        ),
        ({"train/dialogues_001.json": b""}, ["train/dialogues_001.json", "empty file"]),
        ({"train/dialogues_001.json": [{"turns": []}]}, ["train/dialogues_001.json", "dialogue 0", "'dialogue_id'"]),
        (
            {"train/dialogues_001.json": [GOOD[0], {"dialogue_id": "B.json"}]},
            ["train/dialogues_001.json", "dialogue 1 (B.json)", "missing field 'turns'"],
        ),
        (
            {"train/dialogues_001.json": [dialogue("A.json", [turn("USER", "u"), {"utterance": "s"}])]},
            ["train/dialogues_001.json", "dialogue 0 (A.json), turn 1", "missing field 'speaker'"],
        ),
        (
            {"dev/dialogues_002.json": [dialogue("A.json", [{"speaker": "USER", "utterance": None}])]},
            ["dev/dialogues_002.json", "dialogue 0 (A.json), turn 0", "missing field 'utterance'"],
        ),
        (
            {"dev/dialogues_002.json": [dialogue("A.json", [{"speaker": "USER", "utterance": 5}])]},
            ["dev/dialogues_002.json", "turn 0", "non-text field 'utterance'"],
        ),
        (
            {"train/dialogues_001.json": GOOD, "test/dialogues_001.json": GOOD},
            ["duplicate dialogue_id 'A.json'", "train/dialogues_001.json", "test/dialogues_001.json"],
        ),
    ],
)
def test_load_errors_name_file_and_field(tmp_path, files, expected):
    with pytest.raises(RawDataError) as err:
        load_multiwoz_folder(write_layout(tmp_path, files))
    for part in expected:
        assert part in str(err.value)


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(RawDataError, match="nothere.*not found"):
        load_multiwoz_folder(tmp_path / "nothere")


def test_download_extracts_the_22_folder_from_a_repository_archive(tmp_path):
    """A local file:// archive laid out like GitHub's; the real URL needs the network."""
    archive = tmp_path / "repo.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("multiwoz-abc/README.md", "x")
        zf.writestr("multiwoz-abc/data/MultiWOZ_2.1/data.json", "{}")
        zf.writestr("multiwoz-abc/data/MultiWOZ_2.2/train/dialogues_001.json", json.dumps(GOOD))
        zf.writestr("multiwoz-abc/data/MultiWOZ_2.2/schema.json", "[]")
    folder = download_multiwoz_archive(archive.as_uri(), tmp_path / "dl")
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.json")) == [
        "schema.json",
        "train/dialogues_001.json",
    ]
    assert load_multiwoz_folder(folder).num_rows == 2
    assert download_multiwoz_archive("file:///not/used", tmp_path / "dl") == folder  # already there


def test_download_rejects_an_archive_without_multiwoz_22(tmp_path):
    archive = tmp_path / "repo.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("multiwoz-abc/README.md", "x")
    with pytest.raises(RawDataError, match="no data/MultiWOZ_2.2"):
        download_multiwoz_archive(archive.as_uri(), tmp_path / "dl")


def test_real_dialogstudio_examples():
    table = load_multiwoz_folder(shared_file("multiwoz_2.2/samples/dialogstudio_original_examples.json"))
    assert table.num_rows == 46
    assert table.column("dialogue_id").unique().to_pylist() == [
        "SSNG0007.json",
        "SNG1161.json",
        "MUL1443.json",
        "SNG01678.json",
        "MUL1170.json",
    ]
    first = table.slice(0, 1).to_pylist()[0]
    assert (first["speaker"], first["active_intent"], first["domain"]) == ("USER", "find_restaurant", "restaurant")


def test_real_hf_dummy_fixtures_layout():
    table = load_multiwoz_folder(shared_file("multiwoz_2.2/hf_dummy_fixtures"))
    assert table.num_rows == 42
    assert len(table.column("dialogue_id").unique()) == 21
    splits = table.column("split").to_pylist()
    assert (splits.count("train"), splits.count("dev"), splits.count("test")) == (34, 4, 4)
