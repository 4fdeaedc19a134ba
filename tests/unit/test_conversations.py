"""A team's own conversations (core/sources/conversations.py): every record form, file format, compression and
location kind, on files the tests write; bad records named by file and line/record, drops counted."""

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llama_sft_dagster.core.data.pairs import extract_pairs, pairs_balanced
from llama_sft_dagster.core.sources import conversations as conv
from llama_sft_dagster.core.sources.conversations import ChatFormat, load_conversations
from llama_sft_dagster.core.sources.errors import RawDataError

MESSAGES = {
    "messages": [
        {"role": "system", "content": "You are the shop's assistant."},
        {"role": "user", "content": "Where is my parcel?"},
        {"role": "assistant", "content": "It left the depot this morning."},
        {"role": "user", "content": "And the invoice?"},
        {"role": "assistant", "content": [{"type": "text", "text": "It is in your account."}]},
    ]
}
SHAREGPT = {
    "conversations": [
        {"from": "human", "value": "Can I change my plan?"},
        {"from": "gpt", "value": "Yes, under Settings > Plan."},
    ]
}
# one type per column, as Parquet and `datasets` need (MESSAGES mixes text and content parts)
PLAIN_MESSAGES = {"messages": [{"role": m["role"], "content": str(m["content"])} for m in MESSAGES["messages"]]}
PAIR = {"question": "How do I reset my password?", "answer": "Use the 'Forgot password' link.", "topic": "account"}


def pairs_of(table: pa.Table, name: str = "chats"):
    pairs, rejects, counts = extract_pairs([(name, conv.PAIRS, table)])
    assert pairs_balanced(counts)
    return pairs, rejects, counts


def write_jsonl(path, records, opener=open):
    with opener(path, "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in records)
    return path


def test_chat_messages_jsonl(tmp_path):
    table = load_conversations(str(write_jsonl(tmp_path / "chats.jsonl", [MESSAGES])))
    assert table.column("speaker").to_pylist() == ["system", "user", "assistant", "user", "assistant"]
    assert set(table.column("turn_id").to_pylist()) == {"line 1"}
    pairs, rejects, counts = pairs_of(table)
    assert pairs.column("response").to_pylist() == ["It left the depot this morning.", "It is in your account."]
    assert pairs.column("pair_id").to_pylist() == ["chats:chats.jsonl@line1:1", "chats:chats.jsonl@line1:3"]
    assert counts["chats_dropped_system_message"] == 1 and rejects.column("reason").to_pylist() == ["system_message"]


def test_sharegpt_json(tmp_path):
    (tmp_path / "share.json").write_text(json.dumps([SHAREGPT, SHAREGPT]))
    pairs, _, counts = pairs_of(load_conversations(str(tmp_path / "share.json")))
    assert pairs.num_rows == 2 and counts["chats_turns_in"] == 4
    assert pairs.column("dialogue_id").to_pylist() == ["share.json@record0", "share.json@record1"]


def test_instruction_response_csv_with_any_column_names(tmp_path):
    path = tmp_path / "tickets.csv"
    path.write_text('question,answer,topic\n"How do I reset my password?","Use the link.",account\n,"no question",x\n')
    fmt = ChatFormat(form="pairs", instruction_field="question", response_field="answer", intent_field="topic")
    pairs, rejects, counts = pairs_of(load_conversations(str(path), fmt))
    assert pairs.column("instruction").to_pylist() == ["How do I reset my password?"]
    assert pairs.column("intent").to_pylist() == ["account"]
    # the record without a question: its empty turn and the reply it leaves alone are both counted
    assert sorted(rejects.column("reason").to_pylist()) == ["empty_utterance", "system_turn_without_user"]
    assert counts["chats_turns_in"] == 4


def test_parquet_messages_and_a_system_column(tmp_path):
    pq.write_table(pa.Table.from_pylist([PLAIN_MESSAGES]), tmp_path / "chats.parquet")
    pairs, _, _ = pairs_of(load_conversations(str(tmp_path / "chats.parquet")))
    assert pairs.num_rows == 2
    pq.write_table(pa.Table.from_pylist([{**PAIR, "sys": "Be brief."}]), tmp_path / "pairs.parquet")
    fmt = ChatFormat(instruction_field="question", response_field="answer", system_field="sys")
    table = load_conversations(str(tmp_path / "pairs.parquet"), fmt)
    assert table.column("speaker").to_pylist() == ["system", "user", "assistant"]


@pytest.mark.parametrize("suffix", [".gz", ".zst"])
def test_compressed_files(tmp_path, suffix):
    path = tmp_path / f"chats.jsonl{suffix}"
    data = (json.dumps(SHAREGPT) + "\n").encode()
    if suffix == ".gz":
        path.write_bytes(gzip.compress(data))
    else:
        with pa.output_stream(str(path), compression="zstd") as out:  # pyarrow's zstd: no extra package
            out.write(data)
    pairs, _, _ = pairs_of(load_conversations(str(path)))
    assert pairs.column("source_file").to_pylist() == [path.name]


def test_corrupt_compressed_file_is_named(tmp_path):
    (tmp_path / "chats.jsonl.gz").write_bytes(b"not gzip at all")
    with pytest.raises(RawDataError, match=r"chats.jsonl.gz: not a readable gzip file"):
        load_conversations(str(tmp_path / "chats.jsonl.gz"))


def test_a_folder_and_a_glob(tmp_path):
    (tmp_path / "exports" / "2026").mkdir(parents=True)
    write_jsonl(tmp_path / "exports" / "a.jsonl", [SHAREGPT])
    write_jsonl(tmp_path / "exports" / "2026" / "b.jsonl.gz", [MESSAGES], opener=gzip.open)
    (tmp_path / "exports" / ".DS_Store").write_bytes(b"\0")
    folder = load_conversations(str(tmp_path / "exports"))
    assert sorted(set(folder.column("source_file").to_pylist())) == ["2026/b.jsonl.gz", "a.jsonl"]
    globbed = load_conversations(str(tmp_path / "exports" / "*.jsonl"))
    assert set(globbed.column("source_file").to_pylist()) == {"a.jsonl"}
    (tmp_path / "exports" / "notes.txt").write_text("x")
    with pytest.raises(RawDataError, match=r"notes.txt.*not a supported file"):
        load_conversations(str(tmp_path / "exports"))
    with pytest.raises(RawDataError, match="matches no file"):
        load_conversations(str(tmp_path / "nothing" / "*.jsonl"))


def test_roles_any_case_and_a_mapping_unknown_labels_counted(tmp_path):
    labels = ["Customer", "AGENT", "User", "Assistant"]
    texts = ["My order is late.", "Sorry, I will check.", "Thanks", "You're welcome."]
    record = {"messages": [{"role": r, "content": t} for r, t in zip(labels, texts)]}
    path = write_jsonl(tmp_path / "c.jsonl", [record])
    pairs, rejects, counts = pairs_of(load_conversations(str(path)))
    assert pairs.column("instruction").to_pylist() == ["Thanks"]  # User/Assistant: any case
    assert counts["chats_dropped_unknown_speaker"] == 2
    assert rejects.filter(pa.compute.equal(rejects["reason"], "unknown_speaker"))["detail"].to_pylist() == [
        "speaker=Customer",
        "speaker=AGENT",
    ]
    mapped = load_conversations(str(path), ChatFormat(roles={"customer": "user", "agent": "assistant"}))
    assert pairs_of(mapped)[0].num_rows == 2  # the mapping travels with the table to raw_pairs


def test_bad_records_name_the_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(SHAREGPT) + "\n{not json\n")
    with pytest.raises(RawDataError, match=r"bad.jsonl: line 2: invalid JSON"):
        load_conversations(str(path))
    path.write_text(json.dumps(SHAREGPT) + "\n" + json.dumps({"text": "hello"}) + "\n")
    with pytest.raises(RawDataError, match=r"bad.jsonl: line 2: not a chat record.*found \['text'\]"):
        load_conversations(str(path))
    path.write_text(json.dumps({"messages": [{"content": "no role"}]}) + "\n")
    with pytest.raises(RawDataError, match=r"line 1, messages\[0\]: missing 'role'"):
        load_conversations(str(path))
    csv = tmp_path / "bad.csv"
    csv.write_text("instruction,response\na,b\nc,d,e\n")
    with pytest.raises(RawDataError, match=r"bad.csv: line 3: expected 2 columns"):
        load_conversations(str(csv))


def test_messages_as_json_text_in_a_csv_cell_and_ids(tmp_path):
    path = tmp_path / "m.csv"
    rows = [["ticket", "messages"], ["T-1", json.dumps(MESSAGES["messages"])], ["T-1", "[]"]]
    import csv

    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    with pytest.raises(RawDataError, match=r"duplicate conversation id 'T-1'.*line 2 and .*line 3"):
        load_conversations(str(path), ChatFormat(id_field="ticket"))
    rows[2][0] = "T-2"
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    pairs, _, _ = pairs_of(load_conversations(str(path), ChatFormat(id_field="ticket")))
    assert pairs.column("dialogue_id").to_pylist() == ["T-1", "T-1"]


def test_hub_dataset_with_split_and_revision(monkeypatch):
    """The hub path with the hub mocked (no network here): revision resolved to a sha, loaded at that sha."""
    import datasets

    from llama_sft_dagster.core.sources import versions

    asked = {}
    monkeypatch.setattr(
        versions, "hub_revision", lambda ds, rev, token=None: asked.setdefault("rev", rev) and "f00d" * 10
    )

    def fake_load_dataset(dataset_id, revision, split, token):
        asked.update(dataset_id=dataset_id, revision=revision, split=split)
        return datasets.Dataset.from_list([PLAIN_MESSAGES, PLAIN_MESSAGES])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    table, sha = conv.load_conversations_hub("org/support-chats", split="validation", revision="v2")
    assert asked == {"rev": "v2", "dataset_id": "org/support-chats", "revision": "f00d" * 10, "split": "validation"}
    assert sha == "f00d" * 10
    assert set(table.column("source_file").to_pylist()) == {"org/support-chats@f00df00df00d/validation"}
    assert pairs_of(table)[0].num_rows == 4


def test_two_sources_keep_their_own_counts(tmp_path):
    a = load_conversations(str(write_jsonl(tmp_path / "a.jsonl", [SHAREGPT])))
    b = load_conversations(str(write_jsonl(tmp_path / "b.jsonl", [MESSAGES, MESSAGES])))
    pairs, _, counts = extract_pairs([("shop", conv.PAIRS, a), ("app", conv.PAIRS, b)])
    assert pairs_balanced(counts)
    assert (counts["shop_pairs_out"], counts["app_pairs_out"]) == (1, 4)
    assert sorted(set(pairs.column("source").to_pylist())) == ["app", "shop"]
