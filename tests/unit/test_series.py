"""The logged series' names (core/training/series.py): the glossary's loss names stand alone and sort before
every diagnostic, in TensorBoard and MLflow alike (both list series by name)."""

from llama_sft_dagster.core.training.monitoring import mlflow_families
from llama_sft_dagster.core.training.series import diag_name, trainer_series


def test_trainer_logs_take_the_glossary_names():
    assert trainer_series({"loss": 2.5, "grad_norm": 1.2, "learning_rate": 1e-4, "epoch": 0.5}) == {
        "train_loss": 2.5,
        "grad_norm": 1.2,
        "learning_rate": 1e-4,
    }
    evaluation = trainer_series({"eval_loss": 2.0, "eval_runtime": 3.1, "eval_samples_per_second": 9})
    assert evaluation == {
        "eval_loss": 2.0,
        "train_monitor/eval_runtime": 3.1,
        "train_monitor/eval_samples_per_second": 9,
    }
    # the closing summary's mean loss is not a point of the per-step series
    assert trainer_series({"train_loss": 2.2, "train_runtime": 40.0, "total_flos": 1e9, "skip": True}) == {
        "train_monitor/train_loss_mean": 2.2,
        "train_monitor/train_runtime": 40.0,
        "train_monitor/total_flos": 1e9,
    }


def test_losses_sort_before_every_diagnostic():
    monitor = {"act_norm/layer_0": 1.0, "monitor/token_efficiency": 0.4, "grad_norm/q_proj": 1.0, "memory/rss_gb": 1}
    logged = [diag_name(k) for k in mlflow_families(monitor)]
    logged += list(trainer_series({"loss": 1, "eval_loss": 1, "learning_rate": 1, "grad_norm": 1, "eval_runtime": 1}))
    names = sorted(logged)
    assert names[:4] == ["eval_loss", "grad_norm", "learning_rate", "train_loss"]
    assert all(n.startswith("train_monitor/") for n in names[4:])
    assert "train_monitor/token_efficiency" in names and "train_monitor/act_norm/mean_over_layers" in names
