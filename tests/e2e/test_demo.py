"""`make demo` as a user runs it (python -m llama_sft_dagster.cli.demo, one shared run per session):
a quiet terminal with a line per stage, progress and a summary; a run created from the UI's code location
with the sources' versions recorded; an MLflow run and TensorBoard files that read well; and on failure the
cause as the last line.
"""

import re

import pytest

from llama_sft_dagster.assets.data_chain import FIRST_INPUT, STAGE_NAMES
from support.demo_cli import run_demo

pytestmark = pytest.mark.slow

STAGES = [FIRST_INPUT, *STAGE_NAMES, "sft_dataset"]


def test_demo_prints_a_line_per_stage_progress_and_a_summary(demo_cli_run):
    run = demo_cli_run
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    print(run.stdout)  # the summary quoted in the closing note
    lines = run.lines
    assert len(lines) < 70, "the terminal output is meant to be read, not scrolled"
    assert not [line for line in lines if " DEBUG " in line or "STEP_" in line or "Traceback" in line]
    for stage in STAGES:  # a line per stage as it finishes: rows in -> out, seconds
        assert any(re.match(rf"\s+{stage}\s+[\d,]+.* -> +[\d,]+ \w+.*\[\d+\.\d s\]$", line) for line in lines), stage
    assert any("dropped: near_duplicate" in line for line in lines)  # top drop reasons
    progress = [line for line in lines if line.strip().startswith("train step ")]
    # train loss is logged every 2 steps (demo), progress asked for every 5: the first log past each multiple
    assert [p.split()[2] for p in progress if "eval_loss" not in p] == ["6/10", "10/10"]
    assert [p.split()[2] for p in progress if "eval_loss" in p] == ["5/10", "10/10"]
    assert all("tokens/s" in p and "ETA" in p for p in progress)
    summary = lines[lines.index(next(line for line in lines if line.startswith("=== finished in"))) :]
    for needle in [
        "Row funnel",
        "train_loss",
        "Checks:",
        "0 failed",
        "/runs/",
        "/assets/run_report",
        "Evaluation (base -> tuned",
        "/assets/adapter_evaluation",
        "champion: promoted",
        "MLflow run (make mlflow)",
        "workflowType=machine_learning",  # MLflow's runs view, not its GenAI overview
        "registered model (make mlflow)",
        "TensorBoard (make tensorboard)",
        "adapter:",
        "merged model:",
    ]:
        assert any(needle in line for line in summary), needle
    log_file = run.state / "logs"
    assert "STEP_SUCCESS" in next(log_file.glob("demo-*.log")).read_text()  # Dagster's events went to the file


def test_demo_run_comes_from_the_workspace_location_with_source_versions(demo_cli_run):
    import dagster as dg

    from llama_sft_dagster.cli.ui import WORKSPACE

    assert demo_cli_run.returncode == 0
    home = demo_cli_run.state / "dagster_home"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert run.remote_job_origin.location_name == "llama_sft_dagster"  # workspace.yaml's name, as in the UI
        assert "llama_sft_dagster" in WORKSPACE.read_text()
        for source in ("bitext_source", "multiwoz_source"):
            observation = instance.get_latest_data_version_record(dg.AssetKey(source), is_source=True)
            assert observation is not None and observation.storage_id is not None, f"{source} version not recorded"
        raw = instance.get_latest_materialization_event(dg.AssetKey("bitext_raw"))
        assert raw.run_id == run.run_id


def test_mlflow_store_and_tensorboard_read_well(demo_cli_run):
    import mlflow
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert demo_cli_run.returncode == 0
    state = demo_cli_run.state
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{state / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("llama-sft")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the "Model training" view
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == ["adapter_evaluation", "train_adapter"], sorted(runs)
    run = runs["train_adapter"]
    # the evaluation's run is linked to the training run it judged
    assert runs["adapter_evaluation"].data.tags["sft.training_run_id"] == run.info.run_id
    params = run.data.params
    assert len(params) <= 40, sorted(params)
    # the launch shape (process count, accelerate config) is tuned too: it sets the global batch
    tuned = ("config.train.", "config.sft_dataset.", "config.data.", "config.launch.")
    assert all(k.startswith(tuned) for k in params), sorted(params)
    assert "config.train.lora_r" in params and "config.data.train_version" in params
    assert not {"vocab_size", "hidden_size", "output_dir", "adam_beta1"} & set(params)  # no model-config noise
    metrics = set(run.data.metrics)
    assert {
        "train_loss",
        "eval_loss",
        "learning_rate",
        "train_monitor/grad_norm/mean_over_modules",
        "train_monitor/token_efficiency",
        "train_monitor/token_efficiency_whole_run",
    } <= metrics
    assert not [m for m in metrics if m.endswith("_proj")], "per-module series belong in TensorBoard"
    artifacts = {f.path for f in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/loss.png", "plots/grad_norm.png", "plots/effective_rank.png"} <= artifacts
    assert [f.path for f in client.list_artifacts(run.info.run_id, "adapter")] == ["adapter/adapter_config.json"]

    tensorboard = state / "artifacts" / "train_adapter" / "tensorboard"
    (folder,) = [p for p in tensorboard.iterdir() if p.is_dir()]  # one folder per training run
    assert folder.name.endswith(run.data.tags["dagster.run_id"][:8]) and "_r64_" in folder.name
    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    scalars = set(accumulator.Tags()["scalars"])
    # the Trainer's curves beside the monitor's, in one run
    trainer = {"train_loss", "eval_loss", "learning_rate"}
    assert trainer | {"train_monitor/token_efficiency", "train_monitor/grad_norm/q_proj"} <= scalars
    assert len(accumulator.Scalars("eval_loss")) == 2
    assert not list((state / "artifacts" / "train_adapter" / "checkpoints").rglob("events.out.tfevents.*"))


def test_demo_failure_prints_the_cause_last(tmp_path):
    missing = tmp_path / "no_such_bitext.csv"
    run = run_demo(tmp_path / "state", {"resources": {"bitext": {"config": {"location": str(missing)}}}})
    assert run.returncode == 1
    last = run.lines[-1]
    # logs/failure.py: "FAILED <step>: <error> (run <id>; full log ...)"
    assert last.startswith("FAILED bitext_raw: ") and "no_such_bitext.csv" in last and "(run " in last, run.stdout
    assert len(run.lines) < 20
