"""The accelerator a training run uses; decisions in core/device.py, facts gathered from torch here."""
from __future__ import annotations

import logging
from typing import Literal

import dagster as dg
from pydantic import Field

from llama_sft_dagster.core.device import DevicePlan, MachineFacts, plan_device

log = logging.getLogger(__name__)


def _flash_attn_importable() -> bool:
    try:
        import flash_attn  # noqa: F401  (optional `gpu` extra)
    except Exception:
        return False
    return True


def machine_facts() -> MachineFacts:
    import torch

    if not torch.cuda.is_available():
        import platform

        return MachineFacts(cuda_available=False, device_name=f"cpu ({platform.processor() or platform.machine()})")
    props = torch.cuda.get_device_properties(0)
    return MachineFacts(cuda_available=True, bf16_supported=torch.cuda.is_bf16_supported(),
                        flash_attn_importable=_flash_attn_importable(), device_name=props.name,
                        total_memory_gb=round(props.total_memory / 1024**3, 2))


class GpuResource(dg.ConfigurableResource):
    """Device, dtype, attention kernel, tf32, gradient checkpointing and optimizer for training."""

    device: Literal["auto", "cuda", "cpu"] = Field(
        "auto", description="'auto': CUDA when available, else CPU (logged); 'cuda' fails without a GPU.")
    gradient_checkpointing: bool = Field(True, description="Non-reentrant gradient checkpointing on CUDA (seed: on).")
    flash_attention: bool = Field(True, description="Use flash_attention_2 when flash-attn imports and CUDA is present.")
    tf32: bool = Field(True, description="Allow TF32 matmuls on CUDA (seed: on).")

    def plan(self, logger=None) -> DevicePlan:
        plan = plan_device(self.device, machine_facts(), gradient_checkpointing=self.gradient_checkpointing,
                           allow_flash_attention=self.flash_attention, allow_tf32=self.tf32)
        if plan.fallback_reason:
            (logger or log).warning(f"training on CPU in float32 ({plan.fallback_reason}); expect it to be slow "
                                    "for anything but the demo model")
        return plan  # tf32 is applied by TrainingArguments(tf32=plan.tf32) via transformers' enable_tf32

    @staticmethod
    def reset_peak_memory() -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    @staticmethod
    def peak_memory_gb() -> float:
        """Peak CUDA memory allocated since the last reset, or the process's peak RSS on CPU."""
        import torch

        if torch.cuda.is_available():
            return round(torch.cuda.max_memory_allocated() / 1024**3, 3)
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 3)  # ru_maxrss is KiB on Linux
