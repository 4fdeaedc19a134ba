"""One demo-profile run of the whole pipeline (raw -> merged_model -> adapter_evaluation -> champion_model)
on disk, shared by the reliability, security, champion and rank-sweep tests of one pytest session (it is
the slow part of the suite).

The run uses a persistent Dagster instance under the state folder (event log on disk), the hub token
from the environment through dg.EnvVar (a fake one: the demo profile never calls the hub), and a short
training (TRAIN_CONFIG) of a shortly pretrained base (BASE_CONFIG). Tests that change files copy
`artifacts/` first (`copy_artifacts`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg
import pytest

from support.resources import project_resources

FAKE_TOKEN = "hf_fakeTokenForLeakTests0123456789abcdefXYZ"  # shaped like a real one (hf_ + 37 chars)
TRAIN_CONFIG = {"max_steps": 10, "eval_steps": 5, "save_steps": 5}
# 30 of the demo's 100 pretraining steps: enough for text-like replies, and a third of the time
BASE_CONFIG = {"demo_pretrain_steps": 30}


def instance_at(home: Path) -> dg.DagsterInstance:
    """A Dagster instance whose run and event storage are SQLite files under `home` (kept after close)."""
    home.mkdir(parents=True, exist_ok=True)
    return dg.DagsterInstance.local_temp(tempdir=str(home))


def build_demo_state(tmp_path_factory) -> tuple[Path, dg.ExecuteInProcessResult | None]:
    """State folder with every asset materialized; built once per session (later calls reuse it)."""
    from llama_sft_dagster.definitions import all_assets, all_checks
    from llama_sft_dagster.resources.data_sources import BitextSource
    from llama_sft_dagster.resources.hub import HuggingFaceHub

    state = tmp_path_factory.getbasetemp() / "demo_state"
    if (state / "built").exists():
        return state, None
    shutil.rmtree(state, ignore_errors=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_TOKEN", FAKE_TOKEN)
        mp.setenv("SFT_STATE_DIR", str(state))
        mp.setenv("DAGSTER_HOME", str(state / "dagster_home"))
        resources = project_resources(
            state,
            hub=HuggingFaceHub(token=dg.EnvVar("HF_TOKEN")),
            bitext=BitextSource(location="demo", hf_token=dg.EnvVar("HF_TOKEN")),
        )
        with instance_at(state / "dagster_home") as instance:
            result = dg.materialize(
                [*all_assets, *all_checks],
                resources=resources,
                instance=instance,
                run_config={"ops": {"train_adapter": {"config": TRAIN_CONFIG}, "base_model": {"config": BASE_CONFIG}}},
            )
    assert result.success
    assert os.environ.get("HF_TOKEN") != FAKE_TOKEN
    (state / "built").touch()
    return state, result


def copy_artifacts(state: Path, dest: Path, validation_rows: int | None = 48) -> Path:
    """A private copy of the demo run's artifacts (for tests that train again or break files).

    `validation_rows` trims sft_dataset's validation split: evaluation of all ~200 rows is most of a
    short CPU run's time, and these tests are about resume/fallback behaviour, not eval quality."""
    from llama_sft_dagster.core.data.storage import read_parquet, write_parquet

    shutil.copytree(state / "artifacts", dest / "artifacts", symlinks=True)
    if validation_rows is not None:
        val = dest / "artifacts" / "sft_dataset" / "validation.parquet"
        write_parquet(read_parquet(val).slice(0, validation_rows), val)
    return dest
