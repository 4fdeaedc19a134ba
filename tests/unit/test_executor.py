"""The code location's executor: Dagster's default, its steps forked from a server (config/executor.py), the
run config's own choices kept. (benchmarks/step_start.py measures what the fork server saves.)"""

import dagster as dg
import pytest


@pytest.fixture(scope="module")
def pipeline_job():
    from llama_sft_dagster.definitions import build_defs

    return build_defs("demo").resolve_job_def("sft_pipeline")


def _executor_config(job, run_config: dict) -> dict:
    return dg.validate_run_config(job, run_config)["execution"]["multi_or_in_process_executor"]


def test_steps_fork_from_a_server_unless_the_run_config_says_otherwise(pipeline_job):
    assert _executor_config(pipeline_job, {})["multiprocess"]["start_method"] == {"forkserver": {}}
    limited = _executor_config(pipeline_job, {"execution": {"config": {"multiprocess": {"max_concurrent": 2}}}})
    assert limited["multiprocess"]["max_concurrent"] == 2 and limited["multiprocess"]["start_method"] == {
        "forkserver": {}
    }
    spawn = {"execution": {"config": {"multiprocess": {"start_method": {"spawn": {}}}}}}
    assert _executor_config(pipeline_job, spawn)["multiprocess"]["start_method"] == {"spawn": {}}
    # make demo's and the tests' in-process runs keep their config
    assert "in_process" in _executor_config(pipeline_job, {"execution": {"config": {"in_process": {}}}})
    with pytest.raises(dg.DagsterInvalidConfigError):
        dg.validate_run_config(pipeline_job, {"execution": {"config": {"multiprocess": {"no_such_field": 1}}}})


def test_k8s_replaces_it(monkeypatch):
    import dagster_k8s

    from llama_sft_dagster.definitions import build_defs

    monkeypatch.setenv("SFT_EXECUTOR", "k8s")
    assert build_defs("demo").resolve_job_def("sft_pipeline").executor_def.name == dagster_k8s.k8s_job_executor.name
