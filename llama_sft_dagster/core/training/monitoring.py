"""Training monitor: a transformers `TrainerCallback` writing LoRA health metrics to TensorBoard and MLflow.

The names below are the monitor's own (its `history`, `tags`, plots); both tools get them under
`train_monitor/` (`monitor/token_efficiency` as `train_monitor/token_efficiency`), after the losses
(core/training/series.py).

Every `log_every` optimizer steps:
  monitor/token_efficiency   supervised tokens / all positions (labels != -100 over input_ids.numel(),
                             padding included) over the micro-batches of the window
  monitor/padding_share      attention_mask == 0 positions / all positions (0 for padding-free batches,
                             which carry no attention_mask)
  grad_norm/<module>         L2 norm over the LoRA A and B gradients of every layer's <module>
                             (q/k/v/o/gate/up/down_proj), BEFORE clipping; grad_norm/lora_total over all
  memory/rss_gb              process RSS (psutil); on CUDA also memory/cuda_allocated_gb, memory/cuda_peak_gb
  act_norm/layer_<i>         mean per-token L2 norm of decoder layer i's output hidden states
                             (a few evenly spaced layers; training forwards only)
Every `deep_every` steps, and once at train end (means over layers; per-layer lists in `layer_history`):
  lora_drift/<module>        ||dW||_F / ||W_base||_F: with PEFT's default init (B = 0) this is the merged
                             weight's relative drift ||W - W0|| / ||W0||
  lora_drift_A/<module>      ||A - A0|| / ||A0|| (A starts Kaiming-random, so relative)
  lora_drift_B/<module>      ||B - B0||, absolute (B starts at zero; relative if it did not)
  eff_rank_nuc_frob/<module> ||dW||_* / ||dW||_F of the update dW = (alpha/r) * B @ A; ceiling sqrt(r)
                             (8 at r=64)
  eff_rank_nuc_frob_B/<module> the same ratio of lora_B alone: what the walkthrough measured (B @ A and B
                             differ once A has moved away from its random start; both are logged)
  eff_rank_entropy/<module>  exp(entropy of s / sum(s)); ceiling r
  stable_rank/<module>       ||dW||_F^2 / ||dW||_2^2; ceiling r
(see core/training/rank_metrics.py for the three rank measures and their zero-matrix convention).

Why gradients come from `register_post_accumulate_grad_hook` and not `on_pre_optimizer_step`: in
transformers 5.24 `Trainer._inner_training_loop` calls `_clip_grad_norm` and only then
`on_pre_optimizer_step` (its docstring: "after gradient clipping"), so no callback event sees unclipped
gradients. The hook fires when autograd has accumulated a parameter's gradient; the value left after the
last micro-batch of an optimizer step is the full, unclipped gradient (equal to what the Trainer logs as
`grad_norm`; tests/unit/test_monitoring.py checks this with clipping forced on). Under DDP the hook may see
the rank-local gradient.

Callbacks get no batch, so token counts need one line of wiring: call `observe_batch(inputs)` from a
Trainer subclass's `training_step` (once per micro-batch, training only, in the main process):

    monitor = TrainingMonitor(log_dir, log_every=10, deep_every=50)
    class MonitoredSFTTrainer(SFTTrainer):
        def training_step(self, model, inputs, num_items_in_batch=None):
            monitor.observe_batch(inputs)
            return super().training_step(model, inputs, num_items_in_batch)
    trainer = MonitoredSFTTrainer(..., callbacks=[monitor])
    try:
        trainer.train()
    finally:
        monitor.close()  # removes hooks even when training raises (on_train_end then never runs)

If it is never called, the token metrics are absent and `close()` logs a warning saying so.
Metrics go to MLflow (to `metric_sink` when given, rank 0's spool; else to the active run, see
resources/tracking.py) only as families:
a per-module series (`grad_norm/q_proj`, `stable_rank/v_proj`...) becomes its mean over modules
(`grad_norm/mean_over_modules`), so each family is one chart instead of seven; TensorBoard, the asset's
plots (logged to MLflow as artifacts) and `history` keep every module. `total` counts the tokens of the
whole run (token_efficiency over all training micro-batches, the number train_adapter reports). transformers is imported
at module level (the callback base class): import this module inside the training function.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from transformers import TrainerCallback

from llama_sft_dagster.core.training.masking import IGNORE_INDEX
from llama_sft_dagster.core.training.rank_metrics import (
    lora_singular_values,
    nuclear_frobenius_ratio,
    rank_measures,
    singular_values,
)
from llama_sft_dagster.core.training.series import diag_name

log = logging.getLogger(__name__)

_LAYER_INDEX = re.compile(r"\.layers\.(\d+)\.")
GB = 1024**3


@dataclass
class TokenStats:
    """Token counts over a window of micro-batches."""

    supervised: int = 0
    positions: int = 0
    padding: int = 0
    batches: int = 0

    def observe(self, batch: Mapping[str, Any]) -> None:
        ids, labels = batch.get("input_ids"), batch.get("labels")
        if ids is None or labels is None:
            return
        self.positions += int(ids.numel())
        self.supervised += int((labels != IGNORE_INDEX).sum())
        mask = batch.get("attention_mask")
        self.padding += int((mask == 0).sum()) if mask is not None else 0
        self.batches += 1

    def metrics(self) -> dict[str, float]:
        if self.positions == 0:
            return {}
        return {
            "monitor/token_efficiency": self.supervised / self.positions,
            "monitor/padding_share": self.padding / self.positions,
        }


@dataclass
class LoraSite:
    """One LoRA-wrapped linear layer: `kind` is its module name (q_proj...), `layer` its decoder index."""

    name: str
    kind: str
    layer: int
    module: Any
    adapter: str

    @property
    def A(self):
        return self.module.lora_A[self.adapter].weight

    @property
    def B(self):
        return self.module.lora_B[self.adapter].weight

    @property
    def scale(self) -> float:
        return float(self.module.scaling[self.adapter])


def find_lora_sites(model, adapter: str = "default") -> list[LoraSite]:
    """Every PEFT LoRA layer of `model` carrying `adapter`."""
    import torch.nn as nn

    sites = []
    for name, module in model.named_modules():
        lora_a = getattr(module, "lora_A", None)
        if isinstance(lora_a, nn.ModuleDict) and adapter in lora_a:
            match = _LAYER_INDEX.search(f".{name}.")
            sites.append(LoraSite(name, name.rsplit(".", 1)[-1], int(match.group(1)) if match else -1, module, adapter))
    return sites


def find_decoder_layers(model):
    """The decoder's ModuleList (`...model.layers` for Llama, also under a PEFT wrapper), or None."""
    import torch.nn as nn

    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and name.endswith("layers") and len(module) > 0:
            return module
    return None


def evenly_spaced(n: int, k: int) -> list[int]:
    """k indices spread over range(n), first and last included (fewer if n < k)."""
    if n <= 0 or k <= 0:
        return []
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, min(k, n))})


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


# families whose keys are `<family>/<module>`; `grad_norm/lora_total` is already a total and stays
MODULE_FAMILIES = (
    "grad_norm",
    "act_norm",
    "lora_drift",
    "lora_drift_A",
    "lora_drift_B",
    "eff_rank_nuc_frob",
    "eff_rank_nuc_frob_B",
    "eff_rank_entropy",
    "stable_rank",
)
KEEP_AS_IS = {"grad_norm/lora_total"}


def mlflow_families(metrics: Mapping[str, float]) -> dict[str, float]:
    """Per-module metrics folded into `<family>/mean_over_modules`; every other metric unchanged."""
    out: dict[str, float] = {}
    groups: dict[str, list[float]] = {}
    for key, value in metrics.items():
        family = key.split("/", 1)[0]
        if family in MODULE_FAMILIES and key not in KEEP_AS_IS:
            groups.setdefault(family, []).append(value)
        else:
            out[key] = value
    out.update(
        {
            f"{family}/mean_over_{'layers' if family == 'act_norm' else 'modules'}": _mean(values)
            for family, values in groups.items()
        }
    )
    return out


class TrainingMonitor(TrainerCallback):
    """TrainerCallback computing the metrics in the module docstring; see there for wiring."""

    def __init__(
        self,
        log_dir: str | Path,
        *,
        log_every: int = 10,
        deep_every: int = 50,
        activation_layers: int = 4,
        adapter_name: str = "default",
        use_mlflow: bool = True,
        metric_sink=None,
    ):
        if log_every < 1 or deep_every < 1:
            raise ValueError(f"log_every and deep_every must be >= 1, got {log_every}, {deep_every}")
        self.log_dir = Path(log_dir)
        self.log_every, self.deep_every = log_every, deep_every
        self.activation_layers, self.adapter_name, self.use_mlflow = activation_layers, adapter_name, use_mlflow
        self.history: dict[int, dict[str, float]] = {}
        self.layer_history: dict[int, dict[str, dict[str, dict[int, float]]]] = {}
        self.tags: set[str] = set()
        self.stats = TokenStats()
        self.total = TokenStats()  # never reset: the whole run
        self._observed_any = False
        self._capture = False
        self._active = False
        self._writer = None
        self._handles: list = []
        self._sites: list[LoraSite] = []
        self._init: dict[str, tuple] = {}
        self._grad_sq: dict[str, Any] = {}
        self._act: dict[int, list] = {}
        self._last_deep_step = -1
        self._on_cuda = False
        self._mlflow_failed = False
        self.metric_sink = metric_sink  # sink(metrics, step) instead of the active run (core/tracking/spool.py)

    # wiring -----------------------------------------------------------------------------------
    def observe_batch(self, inputs: Mapping[str, Any]) -> None:
        """Count one training micro-batch (call from `training_step`, see module docstring)."""
        self._observed_any = True
        self.stats.observe(inputs)
        self.total.observe(inputs)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if not state.is_world_process_zero or model is None:
            return
        from torch.utils.tensorboard import SummaryWriter

        self._active = True
        self._writer = SummaryWriter(log_dir=str(self.log_dir))
        self._sites = find_lora_sites(model, self.adapter_name)
        if not self._sites:
            log.warning(
                "TrainingMonitor: no LoRA layers with adapter %r; LoRA metrics will be absent", self.adapter_name
            )
        for site in self._sites:
            self._init[site.name] = (site.A.detach().clone(), site.B.detach().clone(), self._base_norm(site))
            for part, param in (("A", site.A), ("B", site.B)):
                self._handles.append(param.register_post_accumulate_grad_hook(self._grad_hook(site.name + part)))
        layers = find_decoder_layers(model)
        for i in evenly_spaced(len(layers) if layers is not None else 0, self.activation_layers):
            self._handles.append(layers[i].register_forward_hook(self._act_hook(i)))
        self._on_cuda = any(p.is_cuda for p in model.parameters())

    def on_step_begin(self, args, state, control, **kwargs):
        # global_step is incremented after the optimizer step, so the step now running is global_step + 1
        self._capture = self._active and (state.global_step + 1) % self.log_every == 0

    def on_step_end(self, args, state, control, **kwargs):
        if not self._active:
            return
        step = state.global_step
        metrics: dict[str, float] = {}
        if step % self.log_every == 0:
            metrics.update(self._light_metrics())
        if step % self.deep_every == 0:
            metrics.update(self._deep_metrics(step))
        self._capture = False
        self._emit(step, metrics)

    def on_train_end(self, args, state, control, **kwargs):
        if self._active and self._last_deep_step != state.global_step:
            self._emit(state.global_step, self._deep_metrics(state.global_step))
        self.close()

    def close(self) -> None:
        """Remove hooks and close the TensorBoard writer; safe to call twice (call it in `finally`)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._active and not self._observed_any:
            log.warning(
                "TrainingMonitor: observe_batch was never called, so monitor/token_efficiency and "
                "monitor/padding_share were not logged; call it from training_step (see module docstring)"
            )
        self._active = False
        self._init.clear()

    # hooks ------------------------------------------------------------------------------------
    def _grad_hook(self, key: str):
        def hook(param):
            if self._capture and param.grad is not None:
                # overwritten per micro-batch: the last one holds the step's accumulated, unclipped gradient
                self._grad_sq[key] = param.grad.detach().float().pow(2).sum()

        return hook

    def _act_hook(self, index: int):
        def hook(module, inputs, output):
            if self._capture and module.training:
                hidden = output[0] if isinstance(output, (tuple, list)) else output
                # gradient checkpointing re-runs the forward; the repeat has equal values, so the mean holds
                self._act.setdefault(index, []).append(hidden.detach().float().norm(dim=-1).mean())

        return hook

    # metrics ----------------------------------------------------------------------------------
    def _light_metrics(self) -> dict[str, float]:
        import psutil
        import torch

        metrics = self.stats.metrics()
        self.stats = TokenStats()
        by_kind: dict[str, float] = {}
        for site in self._sites:
            for part in ("A", "B"):
                sq = self._grad_sq.get(site.name + part)
                if sq is not None:
                    by_kind[site.kind] = by_kind.get(site.kind, 0.0) + float(sq)
        if by_kind:
            metrics.update({f"grad_norm/{kind}": sq**0.5 for kind, sq in by_kind.items()})
            metrics["grad_norm/lora_total"] = sum(by_kind.values()) ** 0.5
        self._grad_sq.clear()
        for index, values in sorted(self._act.items()):
            metrics[f"act_norm/layer_{index}"] = float(torch.stack(values).mean())
        self._act.clear()
        metrics["memory/rss_gb"] = psutil.Process().memory_info().rss / GB
        if self._on_cuda:
            metrics["memory/cuda_allocated_gb"] = torch.cuda.memory_allocated() / GB
            metrics["memory/cuda_peak_gb"] = torch.cuda.max_memory_allocated() / GB
        return metrics

    @staticmethod
    def _base_norm(site: LoraSite) -> float:
        weight = getattr(getattr(site.module, "base_layer", None), "weight", None)
        # a quantized base (bitsandbytes 4-bit packs into uint8) has no meaningful norm here
        if weight is None or not weight.is_floating_point() or weight.ndim != 2:
            return float("nan")
        return float(weight.detach().float().norm())

    def _deep_metrics(self, step: int) -> dict[str, float]:
        import torch

        self._last_deep_step = step
        per_layer: dict[str, dict[str, dict[int, float]]] = {}

        def put(metric: str, site: LoraSite, value: float) -> None:
            per_layer.setdefault(metric, {}).setdefault(site.kind, {})[site.layer] = value

        with torch.no_grad():
            for site in self._sites:
                a0, b0, base_norm = self._init[site.name]
                a_norm0, b_norm0 = float(a0.norm()), float(b0.norm())
                drift_a, drift_b = float((site.A - a0).norm()), float((site.B - b0).norm())
                put("lora_drift_A", site, drift_a / a_norm0 if a_norm0 > 0 else drift_a)
                put("lora_drift_B", site, drift_b / b_norm0 if b_norm0 > 0 else drift_b)
                measures = rank_measures(lora_singular_values(site.A, site.B, site.scale))
                put("lora_drift", site, measures["frobenius_norm"] / base_norm)
                put("eff_rank_nuc_frob", site, measures["nuclear_frobenius_ratio"])
                b_values = singular_values(site.B.detach().float().cpu().numpy())  # (out, r): an r-wide SVD
                put("eff_rank_nuc_frob_B", site, nuclear_frobenius_ratio(b_values))
                put("eff_rank_entropy", site, measures["entropy_effective_rank"])
                put("stable_rank", site, measures["stable_rank"])
        self.layer_history[step] = per_layer
        return {
            f"{metric}/{kind}": _mean(list(layers.values()))
            for metric, kinds in per_layer.items()
            for kind, layers in kinds.items()
        }

    # sinks ------------------------------------------------------------------------------------
    def _emit(self, step: int, metrics: dict[str, float]) -> None:
        if not metrics:
            return
        self.history.setdefault(step, {}).update(metrics)
        self.tags.update(metrics)
        if self._writer is not None:
            for tag, value in metrics.items():
                self._writer.add_scalar(diag_name(tag), value, step)
            self._writer.flush()
        if self.metric_sink is not None:
            self.metric_sink(self._mlflow_series(metrics), step)
        elif self.use_mlflow and not self._mlflow_failed:
            self._log_mlflow(step, metrics)

    @staticmethod
    def _mlflow_series(metrics: dict[str, float]) -> dict[str, float]:
        """What MLflow gets: each per-module family as one series, under the logged names (core/training/series.py)."""
        return {diag_name(k): v for k, v in mlflow_families(metrics).items()}

    def _log_mlflow(self, step: int, metrics: dict[str, float]) -> None:
        import mlflow

        if mlflow.active_run() is None:
            return
        try:
            mlflow.log_metrics(self._mlflow_series(metrics), step=step)
        except Exception as exc:  # a tracking outage must not stop training; TensorBoard keeps everything
            self._mlflow_failed = True
            log.warning("TrainingMonitor: MLflow logging failed (%s); continuing with TensorBoard only", exc)
