"""Where and how training runs: device, dtype, attention kernel, tf32, optimizer. Pure decisions
from facts about the machine (resources/gpu.py gathers the facts from torch)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class MachineFacts:
    cuda_available: bool
    bf16_supported: bool = False
    flash_attn_importable: bool = False
    device_name: str = "cpu"
    total_memory_gb: float | None = None


@dataclass(frozen=True)
class DevicePlan:
    device: str  # "cuda" | "cpu"
    dtype: str  # "bfloat16" | "float32"
    attn_implementation: str  # "flash_attention_2" | "sdpa"
    tf32: bool
    gradient_checkpointing: bool
    optim: str
    device_name: str
    total_memory_gb: float | None
    fallback_reason: str | None = None

    @property
    def bf16(self) -> bool:
        return self.dtype == "bfloat16"

    def metadata(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


ATTENTION_KERNELS = ("flash_attention_2", "sdpa", "eager")


class TrainingRefused(RuntimeError):
    """A training that cannot work here (a large model on the CPU, in fp32), refused before any download."""


def refusal(plan: DevicePlan, allow_cpu_training: bool, allow_fp32_training: bool) -> str | None:
    """Why this device plan must not train the profile's model (None: it may). One line with the setting."""
    if plan.device == "cpu" and not allow_cpu_training:
        return (
            f"refusing to train on the CPU ({plan.fallback_reason}): an 8B model would take weeks in float32; run on "
            "a CUDA GPU, or set the gpu resource's allow_cpu_training=True to train on the CPU anyway"
        )
    if plan.device == "cuda" and plan.dtype != "bfloat16" and not allow_fp32_training:
        return (
            f"refusing to train in {plan.dtype} on {plan.device_name} (no bf16): twice the memory and far slower "
            "than the seed's bf16; use an Ampere or newer GPU, or set the gpu resource's allow_fp32_training=True"
        )
    return None


class FlashAttentionMissing(RuntimeError):
    """A CUDA run that should use flash-attn cannot import it (and no kernel was chosen explicitly)."""


def _cuda_attention(
    facts: MachineFacts, dtype: str, allow_flash: bool, require_flash: bool, explicit: str | None
) -> str:
    if explicit is not None:
        if explicit == "flash_attention_2" and not (facts.flash_attn_importable and dtype == "bfloat16"):
            raise FlashAttentionMissing(
                "attn_implementation='flash_attention_2' needs flash-attn importable and a bf16 GPU "
                f"(flash-attn importable: {facts.flash_attn_importable}, dtype {dtype})"
            )
        return explicit
    if facts.flash_attn_importable and allow_flash and dtype == "bfloat16":
        return "flash_attention_2"
    if require_flash and allow_flash and not facts.flash_attn_importable:
        raise FlashAttentionMissing(
            f"flash-attn is not importable on this CUDA machine ({facts.device_name}): install it "
            "(pip install -e '.[gpu]') or set the gpu resource's attn_implementation, e.g. 'sdpa'"
        )
    return "sdpa"


def plan_device(
    requested: str,
    facts: MachineFacts,
    *,
    gradient_checkpointing: bool = True,
    allow_flash_attention: bool = True,
    allow_tf32: bool = True,
    require_flash_attention: bool = False,
    attn_implementation: str | None = None,
) -> DevicePlan:
    """`requested` is "auto", "cuda" or "cpu". "cuda" without CUDA is an error (a GPU run was meant);
    "auto" falls back to CPU with the reason recorded. On CUDA, `attn_implementation` (when given) is
    used as is; otherwise flash_attention_2 when flash-attn imports, else an error when
    `require_flash_attention` (the full profile: a silent sdpa run is far slower), else sdpa."""
    if requested not in ("auto", "cuda", "cpu"):
        raise ValueError(f"device {requested!r}: choose 'auto', 'cuda' or 'cpu'")
    if attn_implementation is not None and attn_implementation not in ATTENTION_KERNELS:
        raise ValueError(f"attn_implementation {attn_implementation!r}: choose one of {ATTENTION_KERNELS}")
    if requested == "cuda" and not facts.cuda_available:
        raise RuntimeError("device='cuda' was requested but torch.cuda.is_available() is False")
    on_cuda = facts.cuda_available and requested != "cpu"
    if on_cuda:
        # bf16 where the GPU has it (Ampere+), as the seed trained; fp16 is not offered (needs loss scaling)
        dtype = "bfloat16" if facts.bf16_supported else "float32"
        attn = _cuda_attention(facts, dtype, allow_flash_attention, require_flash_attention, attn_implementation)
        return DevicePlan(
            "cuda",
            dtype,
            attn,
            tf32=allow_tf32,
            gradient_checkpointing=gradient_checkpointing,
            optim="adamw_torch_fused",
            device_name=facts.device_name,
            total_memory_gb=facts.total_memory_gb,
        )
    reason = "device='cpu' requested" if requested == "cpu" else "torch.cuda.is_available() is False"
    # CPU: fp32 (bf16 matmuls on CPU are slow and lossy for a tiny model), no tf32 (a CUDA setting), plain
    # AdamW (the fused kernel is CUDA-only here), no checkpointing (recomputing a tiny model only costs time)
    attn = attn_implementation if attn_implementation in ("sdpa", "eager") else "sdpa"  # no flash-attn on CPU
    return DevicePlan(
        "cpu",
        "float32",
        attn,
        tf32=False,
        gradient_checkpointing=False,
        optim="adamw_torch",
        device_name=facts.device_name,
        total_memory_gb=facts.total_memory_gb,
        fallback_reason=reason,
    )


# glibc's allocator maps every block over 32 MB fresh from the kernel and unmaps it on free, so each touch of a new
# page is a zeroing page fault. CPU training allocates such blocks on every op: TRL's chunked log-prob folds
# 4,096-token x 32,768-vocabulary tiles (512 MB in float32) and the backward rebuilds them. Keeping freed blocks up
# to 1 GiB in the heap for reuse (and trimming the heap only past 4 GiB free) made the rehearsal shape's
# log-prob forward+backward 3.1x faster on 2 cores (40.2 s -> 12.8 s), its peak RSS 2.6 -> 5.5 GB
# (benchmarks/cpu_malloc.py); the rehearsal's train_adapter process took 1 min 49 s (4 min 16 s before, under py-spy).
CPU_MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=4294967296"


def cpu_training_env(environ: dict[str, str], reuse_memory: bool) -> dict[str, str]:
    """Environment for training processes on the CPU: glibc tunables that reuse large freed blocks, unless
    turned off or the caller's environment sets GLIBC_TUNABLES itself (theirs wins, untouched)."""
    if not reuse_memory or "GLIBC_TUNABLES" in environ:
        return {}
    return {"GLIBC_TUNABLES": CPU_MALLOC_TUNABLES}
