"""What the 1- vs 2-process training tests share (tests/graph/test_multiprocess_training.py on the demo
profile, tests/e2e/test_rehearsal_multiprocess.py on the rehearsal profile): a private copy of a built
state to train on, the runs' MLflow histories, and the assertions that 2 ranks trained like 1 and that
rank 0 alone wrote.

A run is `(state folder, train_adapter's metadata, seconds of the step)`, by process count.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from support.demo_state import copy_artifacts

Run = tuple[Path, dict, float]


def training_copy(built: Path, dest: Path, train_rows: int) -> Path:
    """A copy of `built`'s artifacts without its train_adapter, and its train split cut to `train_rows`
    (every rank tokenizes the whole split; the runs need far fewer rows)."""
    from llama_sft_dagster.core.data.storage import read_parquet, write_parquet

    state = copy_artifacts(built, dest)
    shutil.rmtree(train_dir(state))  # the built run's adapter, checkpoints, event files
    train = state / "artifacts" / "sft_dataset" / "train.parquet"
    write_parquet(read_parquet(train).slice(0, train_rows), train)
    return state


def train_dir(state: Path) -> Path:
    return state / "artifacts" / "train_adapter"


def mlflow_client(state: Path):
    """(client, experiment id) of the state's MLflow store."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{state / 'mlflow.db'}")
    return client, client.get_experiment_by_name("llama-sft").experiment_id


def history(state: Path, run_id: str, key: str) -> dict[int, float]:
    client, _ = mlflow_client(state)
    return {m.step: m.value for m in client.get_metric_history(run_id, key)}


def event_dirs(out: Path) -> dict[str, int]:
    """Event files per folder; a run folder (tensorboard/<date>_<knobs>_<run>, or transformers'
    runs/<date>_<host>) is counted as <parent>/*."""
    dirs: dict[str, int] = {}
    for f in out.rglob("events.out.tfevents.*"):
        folder = f.parent.relative_to(out)
        key = str(folder.parent / "*") if folder.parent.name in ("runs", "tensorboard") else str(folder)
        dirs[key] = dirs.get(key, 0) + 1
    return dirs


def assert_same_trajectories(runs: dict[int, Run], max_steps: int, tolerance: float) -> float:
    """Train and eval losses of the 1- and 2-process runs agree step by step within `tolerance`; prints
    both (the README's "Scaling out" numbers) and returns the largest train-loss difference."""
    (s1, m1, _), (s2, m2, _) = runs[1], runs[2]
    assert m2["launch_processes"] == 2 and m1["launch_processes"] == 1 and m2["global_steps"] == max_steps
    loss1, loss2 = history(s1, m1["mlflow_run_id"], "train_loss"), history(s2, m2["mlflow_run_id"], "train_loss")
    assert sorted(loss1) == sorted(loss2) == list(range(1, max_steps + 1))
    diffs = {s: abs(loss1[s] - loss2[s]) for s in loss1}
    for n, (_, m, t) in runs.items():
        print(
            f"\n{n} process(es): step {t:.1f}s, train_runtime_s {m['train_runtime_s']:.1f} "
            f"({m['global_steps'] / m['train_runtime_s']:.3g} steps/s), losses {loss1 if n == 1 else loss2}"
        )
    print(f"max |loss difference| {max(diffs.values()):.2e}")
    assert max(diffs.values()) <= tolerance, diffs
    eval1, eval2 = history(s1, m1["mlflow_run_id"], "eval_loss"), history(s2, m2["mlflow_run_id"], "eval_loss")
    print(f"eval_loss 1 process {eval1}, 2 processes {eval2}")
    assert eval1 and eval1.keys() == eval2.keys() and all(abs(eval1[s] - eval2[s]) <= tolerance for s in eval1)
    return max(diffs.values())


def assert_rank0_alone_wrote(runs: dict[int, Run]) -> None:
    """The 2-process run published one adapter and one finished MLflow run, and wrote the 1-process run's
    TensorBoard files (the runs' metadata must hold `mlflow_run_id` and the `tensorboard` URL)."""
    from llama_sft_dagster.assets.adapter_training import tensorboard_run_folder
    from llama_sft_dagster.resources.artifacts import ArtifactStore

    (s1, m1, _), (s2, m2, _) = runs[1], runs[2]
    adapter = ArtifactStore(root=str(s2 / "artifacts")).path("train_adapter", "adapter")  # the current version's
    assert [p.name for p in adapter.parent.glob("*adapter*")] == ["adapter"]
    assert (adapter / "adapter_model.safetensors").is_file()
    client, experiment = mlflow_client(s2)
    assert [r.info.run_id for r in client.search_runs([experiment])] == [m2["mlflow_run_id"]]
    assert client.get_run(m2["mlflow_run_id"]).info.status == "FINISHED"
    # TensorBoard lives beside the versions (artifacts/train_adapter/tensorboard/<run folder>): each run added
    # one run folder, written once by each of rank 0's two writers (the Trainer's and the monitor's)
    for state, meta in ((s1, m1), (s2, m2)):  # training_copy removed the built run's train_adapter folder
        assert event_dirs(train_dir(state)) == {"tensorboard/*": 2}
        run_folder = train_dir(state) / "tensorboard" / tensorboard_run_folder(meta["tensorboard"])
        assert len(list(run_folder.glob("events.out.tfevents.*"))) == 2
    assert not list(adapter.parent.rglob("events.out.tfevents.*"))
