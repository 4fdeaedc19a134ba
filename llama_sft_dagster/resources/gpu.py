"""The accelerator a training run uses; decisions in core/training/device.py, facts gathered from torch here."""

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

from llama_sft_dagster.config.profiles import profiled
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
    return MachineFacts(
        cuda_available=True,
        bf16_supported=torch.cuda.is_bf16_supported(),
        flash_attn_importable=_flash_attn_importable(),
        device_name=props.name,
        total_memory_gb=round(props.total_memory / 1024**3, 2),
    )


class GpuResource(dg.ConfigurableResource):
    """Device, dtype, attention kernel, tf32, gradient checkpointing and optimizer for training."""

    device: Literal["auto", "cuda", "cpu"] = Field(
        "auto", description="'auto': CUDA when available, else CPU (logged); 'cuda' fails without a GPU."
    )
    gradient_checkpointing: bool = Field(True, description="Non-reentrant gradient checkpointing on CUDA (seed: on).")
    flash_attention: bool = Field(
        True, description="Use flash_attention_2 when flash-attn imports and CUDA is present."
    )
    require_flash_attention: bool = profiled(
        demo=False,
        full=True,
        description="On CUDA, fail at start with one line when flash-attn is not "
        "importable instead of training on sdpa (full profile), unless attn_implementation is set.",
    )
    attn_implementation: str | None = Field(
        None,
        description="Attention kernel, set explicitly (e.g. 'sdpa' on a GPU without flash-attn); None: "
        "flash_attention_2 on a bf16 GPU with flash-attn, else sdpa (or the error above). One of "
        "flash_attention_2, sdpa, eager.",
    )
    tf32: bool = Field(True, description="Allow TF32 matmuls on CUDA (seed: on).")
    lock_dir: str | None = Field(
        None,
        description="Folder of the per-device lock files that make training exclusive. Default: "
        "<system temp>/llama-sft-dagster-locks, shared by every checkout and Dagster instance on the machine.",
    )
    processes: int | None = Field(
        None,
        gt=0,
        description="Training processes on this machine (torchrun ranks): None = every visible GPU on "
        "CUDA, 1 on CPU. More than 1 on CPU trains with gloo (what the tests use).",
    )
    launch_config: str = Field(
        "ddp",
        description="accelerate config of the launch: 'ddp' (LoRA on a model that fits one device: 8B), "
        "'fsdp2' (shard a model that does not: 70B), 'deepspeed_zero3' (optional), or the path of your own "
        "accelerate config file. The shipped ones are in llama_sft_dagster/launch/accelerate/.",
    )

    def plan(self, logger=None) -> DevicePlan:
        plan = plan_device(
            self.device,
            machine_facts(),
            gradient_checkpointing=self.gradient_checkpointing,
            allow_flash_attention=self.flash_attention,
            allow_tf32=self.tf32,
            require_flash_attention=self.require_flash_attention,
            attn_implementation=self.attn_implementation,
        )
        if plan.fallback_reason:
            (logger or log).warning(
                f"training on CPU in float32 ({plan.fallback_reason}); expect it to be slow "
                "for anything but the demo model"
            )
        return plan  # tf32 is applied by TrainingArguments(tf32=plan.tf32) via transformers' enable_tf32

    def process_count(self, plan: DevicePlan) -> int:
        """How many ranks the training step starts on this machine (see `processes`)."""
        if plan.device != "cuda":
            return self.processes or 1
        import torch

        visible = torch.cuda.device_count()
        if self.processes and self.processes > visible:
            raise ValueError(
                f"gpu resource processes={self.processes}, but only {visible} CUDA device(s) are visible "
                "(CUDA_VISIBLE_DEVICES); lower processes or make more devices visible"
            )
        return self.processes or visible

    def device_ids(self, plan: DevicePlan, processes: int = 1) -> list[str]:
        """The devices `processes` ranks use: the first `processes` visible GPUs, by their physical ids
        (CUDA_VISIBLE_DEVICES order); on CPU one shared device, "cpu"."""
        if plan.device != "cuda":
            return ["cpu"]
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
        ids = [d.strip() for d in visible.split(",") if d.strip()] if visible else [str(i) for i in range(processes)]
        if len(ids) < processes:
            raise ValueError(
                f"{processes} processes need {processes} GPUs, CUDA_VISIBLE_DEVICES={visible!r} has {len(ids)}"
            )
        return ids[:processes]

    def lock_paths(self, plan: DevicePlan, processes: int = 1) -> list[Path]:
        """One lock per physical device a step uses (sorted: two steps asking for overlapping sets take
        them in the same order and cannot deadlock)."""
        folder = Path(self.lock_dir or Path(tempfile.gettempdir()) / "llama-sft-dagster-locks")
        names = sorted(
            {
                re.sub(r"[^A-Za-z0-9_.-]", "_", d if d == "cpu" else f"cuda-{d}")
                for d in self.device_ids(plan, processes)
            }
        )
        return [folder / f"{name}.lock" for name in names]

    def lock_path(self, plan: DevicePlan) -> Path:
        """The lock of a one-process step."""
        return self.lock_paths(plan, 1)[0]

    @contextlib.contextmanager
    def exclusive(self, plan: DevicePlan, holder: str, logger=None, processes: int = 1) -> Iterator[float]:
        """Hold every device the step's `processes` ranks use for the block; yields the seconds spent waiting.

        Why, beside the Dagster pool `gpu` (limit 1): on the default SQLite instance storage Dagster
        1.13 claims a pool slot by select-then-update, so two steps asking at the same instant can
        both get the one slot (seen in 3 of 16 tries here). An OS file lock cannot be double-granted,
        covers runs of other checkouts and instances on the same machine, and is released by the
        kernel when a killed run's process dies. A multi-process step holds one lock per GPU it uses.
        """
        with contextlib.ExitStack() as stack:
            waited = sum(
                stack.enter_context(self._hold(path, plan, holder, logger)) for path in self.lock_paths(plan, processes)
            )
            yield waited

    @staticmethod
    @contextlib.contextmanager
    def _hold(path: Path, plan: DevicePlan, holder: str, logger=None) -> Iterator[float]:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(path, "a+")
        except OSError as exc:
            raise OSError(
                f"cannot open the device lock {path} ({exc.strerror}); set the gpu resource's "
                "lock_dir to a writable folder"
            ) from exc
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
