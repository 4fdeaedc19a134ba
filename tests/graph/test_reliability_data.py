"""Faults on the data side: kills mid-write, unwritable or full disks, corpora that filter to nothing."""

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llama_sft_dagster.assets.split import EmptySplitError
from llama_sft_dagster.core.data.storage import ArtifactPathError, read_parquet, write_parquet
from llama_sft_dagster.resources.artifacts import ArtifactStore
from llama_sft_dagster.resources.data_sources import BitextSource, MultiwozSource
from support.data_graph import materialize_data_graph

WRITER = textwrap.dedent(
    """
    import sys, time, pyarrow as pa
    from pathlib import Path
    from llama_sft_dagster.core.data.storage import ParquetBatchWriter
    w = ParquetBatchWriter(Path(sys.argv[1]), pa.schema([("x", pa.int64())]))
    for i in range(10_000):
        w.write(pa.table({"x": list(range(10_000))}))
        if i == 2:
            Path(sys.argv[2]).touch()  # tell the test we are mid-write
        time.sleep(0.01)
    w.close()
    """
)


def test_sigkill_mid_write_keeps_previous_version(tmp_path):
    final = tmp_path / "stage" / "data.parquet"
    write_parquet(pa.table({"x": [1, 2, 3]}), final)
    started = tmp_path / "started"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(final), str(started)])
    deadline = time.time() + 60
    while not started.exists():
        assert time.time() < deadline and proc.poll() is None, "writer never started"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert read_parquet(final).column("x").to_pylist() == [1, 2, 3]
    leftovers = [p.name for p in final.parent.iterdir() if p.name != "data.parquet"]
    assert all(n.startswith(".data.parquet.") and n.endswith(".tmp") for n in leftovers)  # never a reader's name


def test_artifact_root_under_a_file_is_named(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    with pytest.raises(ArtifactPathError, match="not_a_dir.*not writable"):
        ArtifactStore(root=str(blocker / "artifacts")).asset_dir("raw_pairs")


@pytest.fixture
def tiny_tmpfs(tmp_path):
    mnt = tmp_path / "full"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root) to fill a disk")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


def test_disk_full_names_the_path_and_keeps_previous_version(tiny_tmpfs):
    final = tiny_tmpfs / "stage" / "data.parquet"
    write_parquet(pa.table({"x": [1]}), final)
    noise = pa.table({"x": [os.urandom(512).hex() for _ in range(2000)]})  # ~2 MB, incompressible
    with pytest.raises(ArtifactPathError, match=r"could not write .*data\.parquet.*No space left"):
        write_parquet(noise, final)
    assert read_parquet(final).column("x").to_pylist() == [1]


def write_bitext_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["flags", "instruction", "category", "intent", "response"])
        w.writerows(rows)
    return path


def write_multiwoz(folder, dialogues):
    (folder / "train").mkdir(parents=True)
    (folder / "train" / "dialogues_001.json").write_text(json.dumps(dialogues))
    return folder


ONE_DIALOGUE = [
    {
        "dialogue_id": "D1.json",
        "services": ["hotel"],
        "turns": [
            {"turn_id": "0", "speaker": "USER", "utterance": "hi", "frames": []},
            {"turn_id": "1", "speaker": "SYSTEM", "utterance": "hello", "frames": []},
        ],
    }
]


@pytest.mark.slow
def test_everything_filtered_out_fails_at_the_split_with_per_stage_counts(tmp_path):
    bitext = write_bitext_csv(tmp_path / "b.csv", [["B", "cancel order", "ORDER", "cancel_order", "ok sure"]] * 20)
    multiwoz = write_multiwoz(tmp_path / "mw", ONE_DIALOGUE)
    with pytest.raises(
        EmptySplitError, match=r"no pairs left to split.*word_count_filtered: 0 kept \(short_instruction 21\)"
    ):
        materialize_data_graph(tmp_path, BitextSource(location=str(bitext)), MultiwozSource(location=str(multiwoz)))


@pytest.mark.slow
def test_corpus_of_duplicate_pairs_keeps_one_of_each(tmp_path):
    rows = [
        [
            "B",
            f"I need help with order number {i} that never arrived at my home",
            "ORDER",
            "track_order",
            f"I am sorry order {i} is late; let me check the courier status for you now.",
        ]
        for i in range(30)
    ]
    bitext = write_bitext_csv(tmp_path / "b.csv", [r for r in rows for _ in range(2)])  # each row twice
    multiwoz = write_multiwoz(tmp_path / "mw", ONE_DIALOGUE)
    materialize_data_graph(tmp_path, BitextSource(location=str(bitext)), MultiwozSource(location=str(multiwoz)))
    rejects = pq.read_table(tmp_path / "artifacts" / "deduplicated_pairs" / "rejects.parquet")
    kept = pq.read_table(tmp_path / "artifacts" / "deduplicated_pairs" / "data.parquet")
    assert kept.num_rows == 30 and rejects.num_rows == 30
    assert set(rejects.column("reason").to_pylist()) == {"exact_duplicate"}
    # each rejected copy names the first copy, which was kept
    first_ids = set(kept.column("pair_id").to_pylist())
    assert {d.removeprefix("duplicate_of=") for d in rejects.column("detail").to_pylist()} == first_ids
