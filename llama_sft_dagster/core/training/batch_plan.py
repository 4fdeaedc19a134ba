"""The batch planner: how the seed's run is computed on this machine, never what it computes.

    python -c "from llama_sft_dagster.core.training.batch_plan import example_plans; print(example_plans())"

Given the GPU's memory, the model's shape, the data's templated lengths and the number of processes, it
chooses micro-batch x accumulation (their product x processes is always the seed's global batch: 8 x 4 = 32
samples per optimizer step), gradient checkpointing, the attention kernel and Liger's fused kernels, to
maximise throughput within memory. lr, epochs, global batch, LoRA settings and dropout are inputs, never
outputs. Every choice can be pinned (gpu resource fields); a pin the memory model rejects is an error.

Memory model (bytes on the GPU at the peak of a step, padding-free batches; calibrated on the H200 runs of the
Llama-3.1-8B shape in README "Run the real job on a GPU", LoRA r64 on the seven projections, bf16):
    frozen weights             2 B x frozen parameters (bf16)
    LoRA                       16 B x LoRA parameters (fp32 weight, gradient, two AdamW moments)
    activations per token      layers x hidden x 2 B x K, K = 34.2 without checkpointing, 28.9 with Liger's
                               fused kernels (no logits tensor), 1.94 with checkpointing (the layer inputs, one
                               layer recomputed, the logits; with Liger too, unmeasured, so not lowered)
    tokens of a micro-batch    m x mean + 3 x std x sqrt(m) of the templated lengths (at most m x max_length);
                               padded batches: m x the longest sample
    usable                     90% of the card's memory minus 1 GiB (CUDA context, cuBLAS workspace, and the
                               allocator's fragmentation, none of which torch.cuda.max_memory_allocated counts)
The three K are fitted to three of the measured peaks (mb8 checkpointing 18.8 GiB, mb32 no checkpointing
106.0, mb32 + Liger 92.3; model 18.8 / 106.0 / 92.3); the other runs check it: padded mb8 checkpointing 19.1
(model 19.0), mb8 no checkpointing 38.7 (model 41.3, 7% high), mb64 out of memory on 139.8 GiB (model 190.6).
Throughput model (relative, from the same runs): an average micro-batch of T tokens runs at T / (T + 905) of
the large-batch rate; checkpointing divides it by 1.22; Liger multiplies it by 1.095.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from itertools import product

GIB = 1024**3
BYTES_FROZEN, BYTES_LORA = 2, 16
K_FULL, K_FULL_LIGER, K_CHECKPOINTED = 34.2, 28.9, 1.94
USABLE_FRACTION, RESERVED_GIB = 0.90, 1.0
T0_TOKENS, CHECKPOINT_SLOWDOWN, LIGER_SPEEDUP = 905, 1.22, 1.095
LORA_SHAPES = {  # projection -> (in, out) in units of the config's sizes
    "q_proj": ("hidden", "q"),
    "k_proj": ("hidden", "kv"),
    "v_proj": ("hidden", "kv"),
    "o_proj": ("q", "hidden"),
    "gate_proj": ("hidden", "intermediate"),
    "up_proj": ("hidden", "intermediate"),
    "down_proj": ("intermediate", "hidden"),
}


class BatchPlanError(ValueError):
    """The global batch cannot be split over the processes, or no plan fits the GPU's memory."""


@dataclass(frozen=True)
class ModelShape:
    layers: int
    hidden: int
    intermediate: int
    vocab: int
    q: int  # attention heads x head dim
    kv: int  # key/value heads x head dim
    tied: bool = False

    @classmethod
    def from_config(cls, config: dict) -> ModelShape:
        """From a config.json's values (Llama-style names)."""
        heads = config["num_attention_heads"]
        head_dim = config.get("head_dim") or config["hidden_size"] // heads
        return cls(
            layers=config["num_hidden_layers"],
            hidden=config["hidden_size"],
            intermediate=config["intermediate_size"],
            vocab=config["vocab_size"],
            q=heads * head_dim,
            kv=config.get("num_key_value_heads", heads) * head_dim,
            tied=bool(config.get("tie_word_embeddings", False)),
        )

    def params(self) -> int:
        h, i = self.hidden, self.intermediate
        layer = h * (self.q + 2 * self.kv) + self.q * h + 3 * h * i + 2 * h
        return self.layers * layer + self.vocab * h * (1 if self.tied else 2) + h

    def lora_params(self, r: int, targets: list[str]) -> int:
        size = {"hidden": self.hidden, "intermediate": self.intermediate, "q": self.q, "kv": self.kv}
        return self.layers * sum(r * (size[LORA_SHAPES[t][0]] + size[LORA_SHAPES[t][1]]) for t in targets)


@dataclass(frozen=True)
class Lengths:
    mean: float
    std: float
    longest: int
    max_length: int

    @classmethod
    def of(cls, lengths: list[int], max_length: int) -> Lengths:
        if not lengths:
            raise BatchPlanError("no training samples: the planner needs sft_dataset's templated lengths")
        cut = [min(n, max_length) for n in lengths]
        return cls(statistics.fmean(cut), statistics.pstdev(cut), max(cut), max_length)

    def tokens(self, micro: int, padding_free: bool = True) -> float:
        """Tokens of a large micro-batch of `micro` samples (padded: every row as long as the longest)."""
        if not padding_free:
            return micro * self.longest
        return min(micro * self.max_length, micro * self.mean + 3 * self.std * math.sqrt(micro))


@dataclass(frozen=True)
class BatchPlan:
    micro_batch: int
    accumulation: int
    processes: int
    gradient_checkpointing: bool
    attn_implementation: str
    liger_kernel: bool
    predicted_peak_gib: float | None
    usable_gib: float | None
    reason: str

    @property
    def global_batch(self) -> int:
        return self.micro_batch * self.accumulation * self.processes

    def metadata(self) -> dict:
        return {f"batch_plan_{k}": v for k, v in {**asdict(self), "global_batch": self.global_batch}.items()}


@dataclass(frozen=True)
class Pins:
    """Choices fixed by config (None: planned)."""

    micro_batch: int | None = None
    gradient_checkpointing: bool | None = None
    liger_kernel: bool | None = None


def split_global_batch(global_batch: int, processes: int) -> int:
    """Samples each process takes per optimizer step; an error when `global_batch` does not split evenly."""
    if global_batch % processes:
        raise BatchPlanError(
            f"the global batch of {global_batch} samples per optimizer step (per_device_train_batch_size x "
            f"gradient_accumulation_steps) cannot be split evenly over {processes} processes; use a process count "
            f"that divides {global_batch} (gpu resource `processes`)"
        )
    return global_batch // processes


def peak_gib(shape: ModelShape, lora: int, tokens: float, checkpointing: bool, liger: bool) -> float:
    k = K_CHECKPOINTED if checkpointing else (K_FULL_LIGER if liger else K_FULL)
    static = BYTES_FROZEN * shape.params() + BYTES_LORA * lora
    return (static + tokens * shape.layers * shape.hidden * 2 * k) / GIB


def usable_gib(total_gib: float) -> float:
    return total_gib * USABLE_FRACTION - RESERVED_GIB


def relative_speed(tokens: float, checkpointing: bool, liger: bool) -> float:
    return (
        tokens / (tokens + T0_TOKENS) / (CHECKPOINT_SLOWDOWN if checkpointing else 1) * (LIGER_SPEEDUP if liger else 1)
    )


def plan_gpu(
    total_gib: float,
    shape: ModelShape,
    lora: int,
    lengths: Lengths,
    global_batch: int,
    processes: int = 1,
    *,
    attn: str = "sdpa",
    liger_available: bool = False,
    padding_free: bool = True,
    pins: Pins = Pins(),
) -> BatchPlan:
    """The fastest (micro-batch, checkpointing, Liger) within memory; see the module docstring. `attn`: the kernel
    the device plan chose (flash_attention_2 where flash-attn imports, else sdpa; core/training/device.py)."""
    share = split_global_batch(global_batch, processes)
    usable = usable_gib(total_gib)
    micros = [m for m in range(1, share + 1) if share % m == 0]
    if pins.micro_batch is not None:
        if share % pins.micro_batch:
            raise BatchPlanError(
                f"micro_batch_size={pins.micro_batch} does not divide the {share} samples each of {processes} "
                f"process(es) takes per optimizer step (global batch {global_batch}); choose a divisor of {share}"
            )
        micros = [pins.micro_batch]
    ckpts = [pins.gradient_checkpointing] if pins.gradient_checkpointing is not None else [False, True]
    ligers = [pins.liger_kernel] if pins.liger_kernel is not None else ([False, True] if liger_available else [False])
    options = []
    for m, ckpt, liger in product(micros, ckpts, ligers):
        peak = peak_gib(shape, lora, lengths.tokens(m, padding_free), ckpt, liger)
        speed = relative_speed(m * (lengths.mean if padding_free else lengths.longest), ckpt, liger)
        options.append((peak <= usable, speed, m, not ckpt, peak, ckpt, liger))
    fitting = [o for o in options if o[0]]
    if not fitting:
        smallest = min(options, key=lambda o: o[4])
        raise BatchPlanError(
            f"no batch plan fits this GPU: the smallest ({_describe(smallest[2], smallest[5], smallest[6])}) needs "
            f"~{smallest[4]:.1f} GiB, {total_gib:.1f} GiB card leaves {usable:.1f} GiB usable (memory model: "
            "core/training/batch_plan.py); use a larger GPU, or shard the model (gpu resource launch_config='fsdp2')"
        )
    _, speed, m, _, peak, ckpt, liger = max(fitting, key=lambda o: o[1:4])
    pinned = [k for k, v in asdict(pins).items() if v is not None]
    reason = (
        f"{_describe(m, ckpt, liger)}, {attn}: predicted peak {peak:.1f} of {usable:.1f} GiB usable "
        f"({total_gib:.1f} GiB card), the fastest of {len(fitting)} fitting option(s) by the throughput model"
        + (f"; pinned: {', '.join(pinned)}" if pinned else "")
    )
    return BatchPlan(m, share // m, processes, ckpt, attn, liger, round(peak, 1), round(usable, 1), reason)


def plan_cpu(
    micro_batch: int, global_batch: int, processes: int = 1, attn: str = "sdpa", pins: Pins = Pins()
) -> BatchPlan:
    """On the CPU: the configured micro-batch (or the pinned one), at most each process's share; no memory model,
    no checkpointing (recomputing a small model only costs time), no Liger (GPU kernels)."""
    share = split_global_batch(global_batch, processes)
    m = min(pins.micro_batch or micro_batch, share)
    if share % m:
        raise BatchPlanError(
            f"micro-batch {m} does not divide the {share} samples each of {processes} process(es) takes per "
            f"optimizer step (global batch {global_batch}); choose a divisor of {share}"
        )
    reason = f"CPU: micro-batch {m} x accumulation {share // m} x {processes} process(es) = {global_batch}"
    return BatchPlan(m, share // m, processes, bool(pins.gradient_checkpointing), attn, False, None, None, reason)


def _describe(micro: int, ckpt: bool, liger: bool) -> str:
    return f"micro-batch {micro}{', checkpointing' if ckpt else ''}{', Liger' if liger else ''}"


def example_plans(cards=(("24 GB", 23.6), ("80 GB", 79.1), ("141 GB", 139.8)), lengths: Lengths | None = None) -> str:
    """The planner's choices at the Llama-3.1-8B shape (seed's LoRA, global batch 32, one GPU), as README lines."""
    from llama_sft_dagster.config.training import LORA_TARGETS
    from llama_sft_dagster.core.training.llama31 import LLAMA31_8B_INSTRUCT

    shape = ModelShape.from_config(LLAMA31_8B_INSTRUCT)
    lengths = lengths or BITEXT_HEAD_256
    lines = []
    for liger in (False, True):
        for name, gib in cards:
            plan = plan_gpu(gib, shape, shape.lora_params(64, LORA_TARGETS), lengths, 32, liger_available=liger)
            lines.append(f"{name} ({gib} GiB), Liger {'installed' if liger else 'absent'}: {plan.reason}")
    return "\n".join(lines)


# templated lengths (Llama 3.1 tokenizer, seed system prompt) of the 256 Bitext rows the H200 runs trained on
BITEXT_HEAD_256 = Lengths(mean=306.4, std=47.7, longest=416, max_length=512)
