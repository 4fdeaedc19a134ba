"""Real exports: text decoded by its byte-order mark or refused with the likely encoding; MultiWOZ as the
Hugging Face `datasets` library saves it (column-wise turns, speakers 0/1) and with any-case speaker labels."""

import gzip
import json

import pyarrow as pa
import pytest

from llama_sft_dagster.core.sources.bitext import load_bitext_file
from llama_sft_dagster.core.sources.conversations import load_conversations
from llama_sft_dagster.core.sources.errors import RawDataError
from llama_sft_dagster.core.sources.multiwoz import load_multiwoz_folder
from support.pairs import seed_pairs

CSV = (
    "flags,instruction,category,intent,response\n"
    'B,"Où est ma commande ? ünïcödé ✓",ORDER,track_order,"Elle arrive demain, merci ✓"\n'
)


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-be"])
def test_bitext_csv_decoded_by_its_byte_order_mark(tmp_path, encoding):
    path = tmp_path / "export.csv"
    data = CSV.encode(encoding)
    if encoding in ("utf-16-le", "utf-16-be", "utf-32-be"):  # these codecs write no mark: add it
        data = "\ufeff".encode(encoding) + data
    path.write_bytes(data)
    table = load_bitext_file(path)
    assert table.column("instruction").to_pylist() == ["Où est ma commande ? ünïcödé ✓"]
    assert table.column("flags").to_pylist() == ["B"]  # the mark is not part of the first column's name


def test_chat_jsonl_in_utf16_is_read(tmp_path):
    path = tmp_path / "chats.jsonl"
    path.write_bytes(json.dumps({"instruction": "Où ?", "response": "Ici."}, ensure_ascii=False).encode("utf-16"))
    assert load_conversations(str(path)).column("utterance").to_pylist() == ["Où ?", "Ici."]


@pytest.mark.parametrize(
    "data, guess",
    [
        (CSV.replace("✓", "").encode("cp1252"), "Windows-1252"),
        (CSV.encode("utf-16-le"), "UTF-16 LE without a byte-order mark"),
        (CSV.encode("utf-16-be"), "UTF-16 BE without a byte-order mark"),
    ],
)
def test_an_undecodable_file_names_the_likely_encoding_and_the_fix(tmp_path, data, guess):
    path = tmp_path / "export.csv"
    path.write_bytes(data)
    with pytest.raises(RawDataError) as err:
        load_bitext_file(path)
    message = str(err.value)
    assert "export.csv: invalid UTF-8 at byte offset" in message and guess in message
    assert "Save it as UTF-8" in message and "iconv" in message


def test_a_broken_utf16_file_names_utf16(tmp_path):
    path = tmp_path / "export.csv"
    path.write_bytes(CSV.encode("utf-16") + b"\x00")  # an odd trailing byte: truncated UTF-16
    with pytest.raises(RawDataError, match=r"export.csv: invalid UTF-16 LE at byte offset"):
        load_bitext_file(path)


def test_bitext_csv_gz(tmp_path):
    path = tmp_path / "export.csv.gz"
    path.write_bytes(gzip.compress(CSV.encode()))
    assert load_bitext_file(path).num_rows == 1


def hf_dialogue(dialogue_id: str, speakers: list, utterances: list[str]) -> dict:
    """One dialogue as `datasets` stores MultiWOZ 2.2: turns and frames column-wise, speakers 0/1."""
    return {
        "dialogue_id": dialogue_id,
        "services": ["hotel"],
        "turns": {
            "turn_id": [str(i) for i in range(len(speakers))],
            "speaker": speakers,
            "utterance": utterances,
            "frames": [
                {"service": ["hotel"], "state": [{"active_intent": "find_hotel"}]} if s in (0, "USER") else {}
                for s in speakers
            ],
        },
    }


def test_multiwoz_hugging_face_column_wise_form(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps([hf_dialogue("D1", [0, 1, 0, 1], ["hi", "hello", "a room?", "sure"])]))
    turns = load_multiwoz_folder(path)
    assert turns.column("speaker").to_pylist() == ["0", "1", "0", "1"]
    assert turns.column("active_intent").to_pylist() == ["find_hotel", None, "find_hotel", None]
    pairs, _, counts = seed_pairs(_no_bitext(), turns)
    assert pairs.column("response").to_pylist() == ["hello", "sure"] and counts["multiwoz_pairs_out"] == 2


def test_multiwoz_column_wise_lists_of_unequal_length_are_named(tmp_path):
    bad = hf_dialogue("D1", [0, 1], ["hi", "hello"])
    bad["turns"]["utterance"] = ["hi"]
    (tmp_path / "train.json").write_text(json.dumps([bad]))
    with pytest.raises(RawDataError, match=r"train.json: dialogue 0 \(D1\): column-wise 'turns' must map"):
        load_multiwoz_folder(tmp_path / "train.json")


@pytest.mark.parametrize("user, system", [("USER", "SYSTEM"), ("user", "system"), ("User", "System")])
def test_multiwoz_speakers_whatever_their_case(tmp_path, user, system):
    dialogue = {
        "dialogue_id": "D1",
        "services": [],
        "turns": [{"speaker": user, "utterance": "hi there"}, {"speaker": system, "utterance": "hello"}],
    }
    (tmp_path / "d.json").write_text(json.dumps([dialogue]))
    pairs, _, _ = seed_pairs(_no_bitext(), load_multiwoz_folder(tmp_path / "d.json"))
    assert pairs.num_rows == 1


def test_multiwoz_unknown_speakers_stay_counted_drops_with_samples(tmp_path):
    dialogue = {
        "dialogue_id": "D1",
        "services": [],
        "turns": [{"speaker": "CUSTOMER", "utterance": "hi"}, {"speaker": "AGENT", "utterance": "hello"}],
    }
    (tmp_path / "d.json").write_text(json.dumps([dialogue]))
    pairs, rejects, counts = seed_pairs(_no_bitext(), load_multiwoz_folder(tmp_path / "d.json"))
    assert pairs.num_rows == 0 and counts["multiwoz_dropped_unknown_speaker"] == 2
    assert rejects.column("detail").to_pylist() == ["speaker=CUSTOMER", "speaker=AGENT"]


def _no_bitext() -> pa.Table:
    from llama_sft_dagster.core.sources.bitext import RAW_BITEXT_SCHEMA

    return RAW_BITEXT_SCHEMA.empty_table()
