"""Training monitor: token counts, layer lookup, and a real tiny-Llama LoRA run read back from TensorBoard."""

import math

import pytest
import torch

from llama_sft_dagster.core.training.monitoring import TokenStats, TrainingMonitor, evenly_spaced, find_lora_sites
from llama_sft_dagster.core.training.plots import plot_effective_rank, plot_grad_norms, plot_losses, png_markdown
from llama_sft_dagster.core.training.series import diag_name
from support.tiny_lora_training import PROJECTIONS, tiny_lora_model, train_tiny


def test_token_stats_padded_batch():
    batch = {
        "input_ids": torch.tensor([[5, 6, 7, 8], [5, 6, 0, 0]]),
        "labels": torch.tensor([[-100, 6, 7, 8], [-100, 6, -100, -100]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]),
    }
    stats = TokenStats()
    stats.observe(batch)
    assert stats.metrics() == {"monitor/token_efficiency": 4 / 8, "monitor/padding_share": 2 / 8}


def test_token_stats_padding_free_batch_has_no_padding():
    # TRL's padding-free collator: one flattened row, position_ids, no attention_mask
    batch = {
        "input_ids": torch.tensor([[5, 6, 7, 8, 9]]),
        "labels": torch.tensor([[-100, 6, 7, -100, 9]]),
        "position_ids": torch.tensor([[0, 1, 2, 0, 1]]),
    }
    stats = TokenStats()
    stats.observe(batch)
    assert stats.metrics() == {"monitor/token_efficiency": 3 / 5, "monitor/padding_share": 0.0}


def test_token_stats_empty_window_reports_nothing():
    stats = TokenStats()
    stats.observe({"input_ids": torch.tensor([[1, 2]])})  # no labels: not a training batch
    assert stats.metrics() == {}


@pytest.mark.parametrize("n,k,expected", [(32, 4, [0, 10, 21, 31]), (2, 4, [0, 1]), (1, 3, [0]), (0, 3, [])])
def test_evenly_spaced(n, k, expected):
    assert evenly_spaced(n, k) == expected


def test_find_lora_sites_on_peft_llama():
    sites = find_lora_sites(tiny_lora_model())
    assert sorted({s.kind for s in sites}) == sorted(PROJECTIONS)
    assert sorted({s.layer for s in sites}) == [0, 1]
    assert len(sites) == 14
    assert all(s.scale == 2.0 for s in sites)  # lora_alpha 16 / r 8


def test_monitor_rejects_bad_intervals(tmp_path):
    with pytest.raises(ValueError, match="log_every and deep_every"):
        TrainingMonitor(tmp_path, log_every=0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("tb")
    monitor = TrainingMonitor(log_dir, log_every=2, deep_every=3, activation_layers=2, use_mlflow=False)
    trainer, model = train_tiny(monitor, tmp_path_factory.mktemp("out"), max_steps=6)
    return monitor, trainer, model, log_dir


def _event_tags(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return acc, set(acc.Tags()["scalars"])


@pytest.mark.slow
def test_tensorboard_holds_every_tag(trained):
    monitor, _, _, log_dir = trained
    acc, tags = _event_tags(log_dir)
    expected = {
        "monitor/token_efficiency",
        "monitor/padding_share",
        "grad_norm/lora_total",
        "memory/rss_gb",
        "act_norm/layer_0",
        "act_norm/layer_1",
    }
    for metric in (
        "grad_norm",
        "lora_drift",
        "lora_drift_A",
        "lora_drift_B",
        "eff_rank_entropy",
        "eff_rank_nuc_frob",
        "eff_rank_nuc_frob_B",
        "stable_rank",
    ):
        expected |= {f"{metric}/{p}" for p in PROJECTIONS}
    # logged under the diagnostics' prefix (core/training/series.py); the monitor keeps its own names
    assert {diag_name(t) for t in expected} <= tags
    assert tags == {diag_name(t) for t in monitor.tags}
    assert [e.step for e in acc.Scalars("train_monitor/grad_norm/q_proj")] == [2, 4, 6]
    assert [e.step for e in acc.Scalars("train_monitor/stable_rank/q_proj")] == [3, 6]


@pytest.mark.slow
def test_history_is_finite_and_lora_moved(trained):
    monitor, _, _, _ = trained
    assert sorted(monitor.history) == [2, 3, 4, 6]
    for step, metrics in monitor.history.items():
        assert all(math.isfinite(v) for v in metrics.values()), (step, metrics)
    last = monitor.history[6]
    for p in PROJECTIONS:
        assert last[f"lora_drift/{p}"] > 0
        assert last[f"lora_drift_B/{p}"] > 0
        assert 1.0 <= last[f"eff_rank_entropy/{p}"] <= 8.0
        assert 1.0 <= last[f"eff_rank_nuc_frob/{p}"] <= math.sqrt(8) + 1e-6
        assert 1.0 <= last[f"stable_rank/{p}"] <= 8.0
    assert 0 < last["monitor/token_efficiency"] < 1
    assert 0 < last["monitor/padding_share"] < 1
    layers = monitor.layer_history[6]["stable_rank"]["q_proj"]
    assert sorted(layers) == [0, 1]


@pytest.mark.slow
def test_both_effective_ranks_are_what_they_say(trained):
    """eff_rank_nuc_frob is the ratio of dW = (alpha/r) B @ A, eff_rank_nuc_frob_B that of lora_B alone."""
    import numpy as np

    from llama_sft_dagster.core.training.monitoring import find_lora_sites

    monitor, _, model, _ = trained
    site = next(s for s in find_lora_sites(model) if s.kind == "q_proj" and s.layer == 0)

    def ratio(m):
        s = np.linalg.svd(m.detach().double().cpu().numpy(), compute_uv=False)
        return s.sum() / np.sqrt((s**2).sum())

    per_layer = monitor.layer_history[6]
    assert per_layer["eff_rank_nuc_frob_B"]["q_proj"][0] == pytest.approx(ratio(site.B), rel=1e-5)
    assert per_layer["eff_rank_nuc_frob"]["q_proj"][0] == pytest.approx(ratio(site.scale * site.B @ site.A), rel=1e-4)


@pytest.mark.slow
def test_grad_norms_are_taken_before_clipping(trained):
    # max_grad_norm=1e-4 clips every step; the Trainer logs the pre-clip norm, ours must match it
    monitor, trainer, _, _ = trained
    logged = {e["step"]: e["grad_norm"] for e in trainer.state.log_history if "grad_norm" in e}
    for step in (2, 4, 6):
        ours = monitor.history[step]["grad_norm/lora_total"]
        assert ours > 1e-2  # far above the clipped 1e-4
        assert ours == pytest.approx(logged[step], rel=1e-4)
        per_module = [monitor.history[step][f"grad_norm/{p}"] for p in PROJECTIONS]
        assert math.sqrt(sum(v * v for v in per_module)) == pytest.approx(ours, rel=1e-6)


@pytest.mark.slow
def test_hooks_removed_after_training(trained):
    _, _, model, _ = trained
    for module in model.modules():
        assert not module._forward_hooks
    for param in model.parameters():
        assert not getattr(param, "_post_accumulate_grad_hooks", None)


@pytest.mark.slow
def test_plots_from_the_run(trained, tmp_path):
    monitor, trainer, _, _ = trained
    paths = [
        plot_losses(trainer.state.log_history, tmp_path / "loss.png"),
        plot_grad_norms(monitor.history, tmp_path / "grad.png"),
        plot_effective_rank(monitor.history, tmp_path / "rank.png"),
    ]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png_markdown(paths[0], "loss").startswith("![loss](data:image/png;base64,iVBORw0KGgo")


def test_plots_say_none_when_nothing_to_draw(tmp_path):
    assert plot_losses([{"train_runtime": 1.0, "step": 3}], tmp_path / "a.png") is None
    assert plot_grad_norms({1: {"memory/rss_gb": 1.0}}, tmp_path / "b.png") is None
    assert plot_effective_rank({}, tmp_path / "c.png") is None
    assert not list(tmp_path.glob("*.png"))


def test_close_without_training_warns_nothing_and_is_idempotent(tmp_path, caplog):
    monitor = TrainingMonitor(tmp_path)
    monitor.close()
    monitor.close()
    assert "observe_batch" not in caplog.text
