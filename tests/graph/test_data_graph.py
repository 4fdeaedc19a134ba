"""End-to-end materialization of the data graph (raw -> split) with real Dagster, on the demo corpus
and on the real samples in ../shared/data; plus the real `dagster asset materialize` command."""

import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from llama_sft_dagster.assets import checks
from llama_sft_dagster.resources.data_sources import BitextSource, MultiwozSource
from support.data_graph import FILTER_STAGES, materialize_data_graph
from support.paths import REPO


def stage_metadata(result, asset: str) -> dict:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    assert len(events) == 1, f"{asset} materialized {len(events)} times"
    return {k: v.value for k, v in events[0].materialization.metadata.items()}


def accounting_of(result) -> dict[str, dict]:
    out = {}
    for stage in ["raw_pairs", *FILTER_STAGES]:
        md = stage_metadata(result, stage)
        if stage == "raw_pairs":  # counted in Bitext rows + MultiWOZ turns (a pair uses two turns)
            md = {**md, "rows_in": md["rows_and_turns_in"], "rows_out": md["rows_and_turns_used"]}
        dropped = {k: v for k, v in md.items() if k.startswith("dropped_") and k != "dropped_total"}
        assert md["rows_in"] == md["rows_out"] + sum(dropped.values()), stage
        out[stage] = {"rows_in": md["rows_in"], "rows_out": md["rows_out"], **dropped}
    return out


def assert_checks_passed(result):
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == len(checks.accounting_checks)
    failed = [e.asset_check_key for e in evaluations if not e.passed]
    assert not failed, failed


@pytest.mark.slow
def test_demo_corpus_every_filter_drops_something(tmp_path):
    result = materialize_data_graph(tmp_path, BitextSource(location="demo"), MultiwozSource(location="demo"))
    assert_checks_passed(result)
    counts = accounting_of(result)
    print(counts)  # the per-stage figures quoted in the closing note
    for stage in ["raw_pairs", *FILTER_STAGES]:
        assert counts[stage]["rows_in"] > counts[stage]["rows_out"], f"{stage} dropped nothing on the demo corpus"
    assert counts["english_filtered"].get("dropped_language_french") and counts["english_filtered"].get(
        "dropped_language_chinese"
    )
    assert counts["deduplicated_pairs"].get("dropped_exact_duplicate") and counts["deduplicated_pairs"].get(
        "dropped_near_duplicate"
    )
    # every dropped row is in a rejects file with its reason
    for stage in FILTER_STAGES:
        rejects = pq.read_table(tmp_path / "artifacts" / stage / "rejects.parquet")
        assert rejects.num_rows == counts[stage]["rows_in"] - counts[stage]["rows_out"]
        assert set(rejects.column("stage").to_pylist()) == {stage}
    split = stage_metadata(result, "train_pairs")
    assert split["train_rows"] + split["validation_rows"] == counts["deduplicated_pairs"]["rows_out"]
    assert 0.03 < split["validation_rows"] / split["rows_in"] < 0.07
    assert "| multiwoz |" in split["per_source"] and "| bitext |" in split["per_source"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "bitext_file, multiwoz_path, bitext_rows",
    [
        (
            "bitext/Bitext_Sample_Customer_Support_Training_Dataset_27K_responses-v11.head5000.csv",
            "multiwoz_2.2/hf_dummy_fixtures",
            5000,  # the file's data rows (the head of v11)
        ),
        (
            "bitext/earlier_release_2023-08/Bitext_Sample_Customer_Support_Training_Dataset.csv",
            "multiwoz_2.2/samples/dialogstudio_original_examples.json",
            4514,  # the 2023-08 release sample's data rows
        ),
    ],
    ids=["v11_head5000+hf_fixtures", "release_2023_08+dialogstudio"],
)
def test_real_samples(tmp_path, shared_data, bitext_file, multiwoz_path, bitext_rows):
    result = materialize_data_graph(
        tmp_path,
        BitextSource(location=str(shared_data / bitext_file)),
        MultiwozSource(location=str(shared_data / multiwoz_path)),
    )
    assert_checks_passed(result)
    counts = accounting_of(result)
    print(bitext_file, counts)
    raw = stage_metadata(result, "raw_pairs")
    assert raw["bitext_rows_in"] == bitext_rows
    assert stage_metadata(result, "train_pairs")["train_rows"] > 0


@pytest.mark.slow
def test_dagster_cli_materializes_from_repo_root(tmp_path):
    """`dagster asset materialize --select ...` typed in the repo root of an activated venv (as the README says)."""
    env = {**os.environ, "SFT_STATE_DIR": str(tmp_path / "state"), "DAGSTER_HOME": str(tmp_path / "home")}
    env.pop("DAGSTER_CLI_ASSET_MATERIALIZE_MODULE_NAME", None)  # must come from the venv's activate script
    (tmp_path / "home").mkdir()
    activate = os.path.join(os.path.dirname(sys.executable), "activate")
    from llama_sft_dagster.assets.source_table import SOURCES

    typed = f"dagster asset materialize --select {','.join([*(s.raw_asset for s in SOURCES), 'raw_pairs'])}"
    proc = subprocess.run(
        ["bash", "-c", f"source {activate} && {typed}"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RUN_SUCCESS" in proc.stderr + proc.stdout
    pairs = pq.read_table(tmp_path / "state" / "artifacts" / "raw_pairs" / "data.parquet")
    assert pairs.num_rows > 1000
