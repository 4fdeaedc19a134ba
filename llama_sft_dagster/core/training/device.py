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
    device: str                 # "cuda" | "cpu"
    dtype: str                  # "bfloat16" | "float32"
    attn_implementation: str    # "flash_attention_2" | "sdpa"
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


def plan_device(requested: str, facts: MachineFacts, *, gradient_checkpointing: bool = True,
                allow_flash_attention: bool = True, allow_tf32: bool = True) -> DevicePlan:
    """`requested` is "auto", "cuda" or "cpu". "cuda" without CUDA is an error (a GPU run was meant);
    "auto" falls back to CPU with the reason recorded."""
    if requested not in ("auto", "cuda", "cpu"):
        raise ValueError(f"device {requested!r}: choose 'auto', 'cuda' or 'cpu'")
    if requested == "cuda" and not facts.cuda_available:
        raise RuntimeError("device='cuda' was requested but torch.cuda.is_available() is False")
    on_cuda = facts.cuda_available and requested != "cpu"
    if on_cuda:
        # bf16 where the GPU has it (Ampere+), as the seed trained; fp16 is not offered (needs loss scaling)
        dtype = "bfloat16" if facts.bf16_supported else "float32"
        attn = "flash_attention_2" if (facts.flash_attn_importable and allow_flash_attention and dtype == "bfloat16") else "sdpa"
        return DevicePlan("cuda", dtype, attn, tf32=allow_tf32, gradient_checkpointing=gradient_checkpointing,
                          optim="adamw_torch_fused", device_name=facts.device_name, total_memory_gb=facts.total_memory_gb)
    reason = "device='cpu' requested" if requested == "cpu" else "torch.cuda.is_available() is False"
    # CPU: fp32 (bf16 matmuls on CPU are slow and lossy for a tiny model), no tf32 (a CUDA setting), plain
    # AdamW (the fused kernel is CUDA-only here), no checkpointing (recomputing a tiny model only costs time)
    return DevicePlan("cpu", "float32", "sdpa", tf32=False, gradient_checkpointing=False, optim="adamw_torch",
                      device_name=facts.device_name, total_memory_gb=facts.total_memory_gb, fallback_reason=reason)
