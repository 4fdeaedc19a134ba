"""The accelerator a training run uses; decisions in core/device.py, facts gathered from torch here."""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import dagster as dg
from pydantic import Field

from llama_sft_dagster.core.training.device import DevicePlan, MachineFacts, plan_device

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
    lock_dir: str | None = Field(
        None, description="Folder of the per-device lock files that make training exclusive. Default: "
        "<system temp>/llama-sft-dagster-locks, shared by every checkout and Dagster instance on the machine.")

    def plan(self, logger=None) -> DevicePlan:
        plan = plan_device(self.device, machine_facts(), gradient_checkpointing=self.gradient_checkpointing,
                           allow_flash_attention=self.flash_attention, allow_tf32=self.tf32)
        if plan.fallback_reason:
            (logger or log).warning(f"training on CPU in float32 ({plan.fallback_reason}); expect it to be slow "
                                    "for anything but the demo model")
        return plan  # tf32 is applied by TrainingArguments(tf32=plan.tf32) via transformers' enable_tf32

    def lock_path(self, plan: DevicePlan) -> Path:
        # one lock per physical device set: CUDA_VISIBLE_DEVICES picks the GPUs a process can see
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "all") if plan.device == "cuda" else ""
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{plan.device}-{visible}".rstrip("-"))
        folder = Path(self.lock_dir or Path(tempfile.gettempdir()) / "llama-sft-dagster-locks")
        return folder / f"{name}.lock"

    @contextlib.contextmanager
    def exclusive(self, plan: DevicePlan, holder: str, logger=None) -> Iterator[float]:
        """Hold the device for the duration of the block; yields the seconds spent waiting.

        Why, beside the Dagster pool `gpu` (limit 1): on the default SQLite instance storage Dagster
        1.13 claims a pool slot by select-then-update, so two steps asking at the same instant can
        both get the one slot (seen in 3 of 16 tries here). An OS file lock cannot be double-granted,
        covers runs of other checkouts and instances on the same machine, and is released by the
        kernel when a killed run's process dies.
        """
        path = self.lock_path(plan)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(path, "a+")
        except OSError as exc:
            raise OSError(f"cannot open the device lock {path} ({exc.strerror}); set the gpu resource's "
                          "lock_dir to a writable folder") from exc
        with handle:
            started = time.monotonic()
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                owner = handle.read().strip() or "another process"
                (logger or log).warning(f"waiting for {plan.device}: held by {owner} (lock {path})")
                fcntl.flock(handle, fcntl.LOCK_EX)
            waited = time.monotonic() - started
            handle.seek(0)
            handle.truncate()
            handle.write(f"{holder} (pid {os.getpid()})\n")
            handle.flush()
            try:
                yield waited
            finally:
                handle.truncate(0)
                fcntl.flock(handle, fcntl.LOCK_UN)

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
