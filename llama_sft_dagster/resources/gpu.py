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
from llama_sft_dagster.core.training.batch_plan import BatchPlan, Lengths, ModelShape, Pins, plan_cpu, plan_gpu
from llama_sft_dagster.core.training.device import DevicePlan, MachineFacts, TrainingRefused, plan_device, refusal

log = logging.getLogger(__name__)


def _flash_attn_importable() -> bool:
    try:
        import flash_attn  # noqa: F401  (optional `gpu` extra)
    except Exception:
        return False
    return True


def liger_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("liger_kernel") is not None


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
    gradient_checkpointing: bool | None = Field(
        None,
        description="Non-reentrant gradient checkpointing on CUDA; None: the batch planner decides (off when the "
        "memory allows: faster). The seed had it on. Never on the CPU unless set True.",
    )
    micro_batch_size: int | None = Field(
        None,
        gt=0,
        description="Samples per forward pass on one process; None: the batch planner decides "
        "(core/training/batch_plan.py). The global batch (per_device_train_batch_size x gradient_accumulation_steps "
        "of train_adapter, seed 8 x 4 = 32) is kept: accumulation = global / (micro-batch x processes).",
    )
    liger_kernel: bool | None = Field(
        None,
        description="Liger's fused kernels (RMSNorm, SwiGLU, RoPE, linear + cross-entropy without the logits "
        "tensor) on CUDA; None: used when liger-kernel is installed. Same loss, less memory, faster.",
    )
    allow_cpu_training: bool = profiled(
        demo=True,
        full=False,
        rehearsal=True,
        description="Train on the CPU when no GPU is usable. Off in the full profile: an 8B model in float32 "
        "on a CPU takes weeks, so the run stops before any download with one line saying so.",
    )
    allow_fp32_training: bool = profiled(
        demo=True,
        full=False,
        rehearsal=True,
        description="Train in float32 on a GPU without bf16. Off in the full profile (twice the memory, far "
        "slower): the run stops before any download with one line saying so.",
    )
    flash_attention: bool = Field(
        True, description="Use flash_attention_2 when flash-attn imports and CUDA is present."
    )
    # off in every profile: flash-attn only builds from source, and sdpa keeps padding-free samples apart (packed
    # position_ids -> block-diagonal mask, tests/unit/test_padding_free.py); the batch planner sizes sdpa's run
    require_flash_attention: bool = Field(
        False,
        description="On CUDA, fail at start with one line when flash-attn is not importable instead of "
        "training on sdpa, unless attn_implementation is set.",
    )
    attn_implementation: str | None = Field(
        None,
        description="Attention kernel, set explicitly (e.g. 'sdpa' on a GPU without flash-attn); None: "
        "flash_attention_2 on a bf16 GPU with flash-attn, else sdpa (or the error above). One of "
        "flash_attention_2, sdpa, eager.",
    )
    tf32: bool = Field(True, description="Allow TF32 matmuls on CUDA (seed: on).")
    cpu_reuse_memory: bool = Field(
        True,
        description="On the CPU, start the training processes with glibc tunables that keep large freed blocks "
        "for reuse instead of mapping fresh zeroed pages per op (core/training/device.py CPU_MALLOC_TUNABLES): "
        "3.1x faster log-probs at the rehearsal shape, about twice the peak memory. Ignored when GLIBC_TUNABLES "
        "is set.",
    )
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
            gradient_checkpointing=self.gradient_checkpointing is not False,  # the batch plan decides on CUDA
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

    def refuse_unworkable(self, plan: DevicePlan, model_config: dict | None = None, lora=None, max_length=512):
        """Raise TrainingRefused (one line, naming the setting) when this machine cannot train: a CPU or fp32 run
        where the profile forbids it, or a GPU too small for the model (`model_config`: its config.json values;
        `lora`: (r, target modules)) with the leanest plan (one sample of max_length tokens, checkpointing, Liger
        when installed). Called before any download (base_tokenizer, base_model) and before training."""
        why = refusal(plan, self.allow_cpu_training, self.allow_fp32_training)
        if why:
            raise TrainingRefused(why)
        if plan.device != "cuda" or model_config is None or plan.total_memory_gb is None:
            return
        from llama_sft_dagster.core.training.batch_plan import BatchPlanError

        shape = ModelShape.from_config(model_config)
        try:
            plan_gpu(
                plan.total_memory_gb,
                shape,
                shape.lora_params(*lora) if lora else 0,
                Lengths(max_length, 0.0, max_length, max_length),
                1,
                attn=plan.attn_implementation,
                liger_available=liger_importable(),
                pins=Pins(1, True, None),
            )
        except BatchPlanError as exc:
            raise TrainingRefused(f"{plan.device_name}: {exc}") from exc

    def plan_batches(
        self,
        plan: DevicePlan,
        processes: int,
        global_batch: int,
        micro_batch: int,
        model_config: dict,
        lora: tuple[int, list[str]],
        lengths: list[int],
        max_length: int,
        padding_free: bool = True,
    ) -> BatchPlan:
        """Micro-batch x accumulation x processes = `global_batch`, checkpointing and Liger, for this device
        (core/training/batch_plan.py); on the CPU the configured `micro_batch` (at most each process's share)."""
        pins = Pins(self.micro_batch_size, self.gradient_checkpointing, self.liger_kernel)
        if plan.device != "cuda" or plan.total_memory_gb is None:
            return plan_cpu(micro_batch, global_batch, processes, plan.attn_implementation, pins)
        shape = ModelShape.from_config(model_config)
        return plan_gpu(
            plan.total_memory_gb,
            shape,
            shape.lora_params(*lora),
            Lengths.of(lengths, max_length),
            global_batch,
            processes,
            attn=plan.attn_implementation,
            liger_available=liger_importable(),
            padding_free=padding_free,
            pins=pins,
        )

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
