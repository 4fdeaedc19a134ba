"""The raw-data sensor, evaluated with real Dagster contexts on a real
instance; the `gpu` concurrency pool from the project's dagster.yaml, on the GPU assets and enforced
across two processes."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from llama_sft_dagster import automation
from llama_sft_dagster.assets.source_table import SOURCES
from llama_sft_dagster.cli.stale import materialize_stale
from support.paths import REPO
from support.staleness_graph import build_defs, write_sources

GPU_ASSETS = ["train_adapter"]  # the merge runs on the CPU (STYLE: litgpt merge_lora)


@pytest.fixture
def fresh_graph(tmp_path):
    bitext, multiwoz = write_sources(tmp_path)
    defs = build_defs(tmp_path, bitext, multiwoz)
    # schedule contexts need a persistent instance (they re-open it from its ref)
    with dg.instance_for_test() as instance:
        assert materialize_stale(defs, instance).ok
        yield defs, instance, bitext


# The code location as `dagster dev` loads it, in a fresh interpreter (the cron is read at import): the
# schedules (none: the retraining is declarative automation), every sensor's default status, and the cron of
# the retraining condition's tick
DECLARED = """
import json
from llama_sft_dagster.definitions import build_defs
defs = build_defs()
sensors = {s.name: s for s in defs.sensors}

def ticks(condition):
    if hasattr(condition, "cron_schedule"):
        yield [condition.cron_schedule, condition.cron_timezone]
    for child in getattr(condition, "children", None) or []:
        yield from ticks(child)

print(json.dumps({
    "schedules": [s.name for s in defs.schedules or []],
    "sensors": {name: s.default_status.value for name, s in sensors.items()},
    "retrain_ticks": list(ticks(sensors["retrain_automation"].default_condition)),
}))
"""


def declared_automation(**env) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", DECLARED], env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


def test_automation_is_on_by_default_and_the_retraining_cron_is_configurable():
    default = declared_automation()
    assert default["schedules"] == []
    assert default["sensors"] == {
        "raw_data_sensor": "RUNNING",
        "retrain_automation": "RUNNING",
        "dead_run_sensor": "RUNNING",
    }
    assert default["retrain_ticks"] == [["0 3 * * 1", "UTC"]]  # weekly, Mondays 03:00 UTC
    assert declared_automation(SFT_RETRAIN_CRON="0 4 * * *")["retrain_ticks"] == [["0 4 * * *", "UTC"]]


@pytest.mark.slow
def test_sensor_records_only_the_changed_source(fresh_graph):
    """The retraining itself is automation.retrain_automation (tests/graph/test_retrain_automation.py)."""
    defs, instance, bitext = fresh_graph
    write_sources(bitext.parent, bitext_rows=500)
    sensor_context = dg.build_sensor_context(
        instance=instance,
        repository_def=defs.get_repository_def(),
        resources={s.name: defs.resources[s.name] for s in SOURCES},
    )
    observed = automation.raw_data_sensor(sensor_context)
    assert [e.asset_key.to_user_string() for e in observed.asset_events] == ["bitext_source"]


@pytest.mark.slow
def test_sensor_skips_when_sources_unchanged(fresh_graph):
    defs, instance, _ = fresh_graph
    context = dg.build_sensor_context(
        instance=instance,
        repository_def=defs.get_repository_def(),
        resources={s.name: defs.resources[s.name] for s in SOURCES},
    )
    result = automation.raw_data_sensor(context)
    assert isinstance(result, dg.SkipReason) and result.skip_message == "raw sources unchanged"


def project_instance(home):
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    return dg.DagsterInstance.from_config(str(home))


def test_project_instance_config_limits_pools_to_one(isolated_state):
    with project_instance(isolated_state / "dagster_home") as instance:
        pools = instance.get_concurrency_config().pool_config
        assert pools.default_pool_limit == 1 and pools.pool_granularity.value == "op"


def test_gpu_assets_declare_the_gpu_pool():
    from llama_sft_dagster.assets import training

    pools = {
        k.to_user_string(): a.op.pool
        for a in dg.load_assets_from_modules([training])
        if isinstance(a, dg.AssetsDefinition)
        for k in a.keys
    }
    for name in GPU_ASSETS:
        assert pools[name] == "gpu", name
    assert pools["merged_model"] is None, "the merge runs on the CPU: it must not wait for the GPU"


GPU_HOLDER = str(Path(__file__).parents[1] / "support" / "gpu_holder.py")


@pytest.mark.slow
def test_two_runs_never_hold_the_gpu_at_once(isolated_state):
    """Two processes materialize a step in pool `gpu` that holds the device as train_adapter does. The
    pool (limit 1) queues one of them; on SQLite storage it can double-grant its slot to two steps asking
    at the same instant (Dagster 1.13, select-then-update), and then the device lock makes the second wait."""
    home = isolated_state / "dagster_home"
    project_instance(home).dispose()
    env = {**os.environ, "DAGSTER_HOME": str(home), "SFT_LOCK_DIR": str(isolated_state / "locks")}
    procs = [
        subprocess.Popen(
            [sys.executable, GPU_HOLDER, "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for _, e in outs]
    spans = sorted(
        tuple(map(float, line.split()[1:])) for out, _ in outs for line in out.splitlines() if line.startswith("SPAN")
    )
    assert len(spans) == 2
    assert spans[0][1] <= spans[1][0], f"steps overlapped on the gpu: {spans}"
    waits = [err for _, err in outs if "blocked by limit for pool gpu" in err or "waiting for cpu: held by" in err]
    assert waits, "neither the pool nor the device lock made a run wait"
