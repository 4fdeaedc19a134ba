"""Training throughput: padded against padding-free micro-batches, same samples, same config.

    python benchmarks/training_throughput.py --profile demo --steps 20      # tiny demo model, CPU here
    SFT_PROFILE=full HF_TOKEN=... python benchmarks/training_throughput.py --profile full --steps 20   # GPU

The data is the project's own: `<root>/sft_dataset/{train,validation}.parquet` and `<root>/base_model/model`
(root: --root, default the project state's artifact root). When they are missing the script materializes
`*sft_dataset *base_model` (demo: generated corpus + tiny model; full: hub datasets + Llama-3.1-8B-Instruct, which needs
HF_TOKEN and network). Each batching mode runs in its own child process (so its peak memory is its own):
`core.training.setup` with the profile's TrainConfig defaults (only padding_free / packing, max_steps and
no eval/save within the run changed), `--warmup` untimed steps, then `--steps` timed optimizer steps.

Reported per mode:
  tokens/s          non-padding tokens of the timed micro-batches / their wall time
  samples/s         samples of the timed micro-batches / wall time
  padding share     padded positions / all positions, of the timed batches and of one whole epoch of the
                    trainer's dataloader (the demo corpus "before/after" figure)
  peak memory       CUDA: torch.cuda.max_memory_allocated; CPU: peak RSS sampled every 10 ms (_measure.py)
  MFU               model FLOP/s / peak FLOP/s. Model FLOPs per sample of length T (PaLM, Chowdhery et al.
                    2022, appendix B): 6*N*T + 6*L*d*T^2, i.e. 6N per token (2N forward, 4N backward) plus
                    attention scores and values (12*L*d*T per token for full attention, halved for causal).
                    N = parameters that multiply every token: all but the input embedding table. Padding and
                    gradient-checkpointing recompute are not useful work and are not counted. Under LoRA the
                    frozen weights need no weight gradient (about 4N instead of 6N), so `mfu_lora` uses
                    4*N_frozen + 6*N_trainable; `mfu` keeps the usual 6N convention.
  peak FLOP/s       --peak-tflops, else on CUDA the datasheet dense bf16 figure of the GPU (GPU_PEAK_TFLOPS)
                    and otherwise (CPU, or a GPU not in the table) a matmul measured in this run in the
                    training dtype: an achievable peak, so CPU MFU is relative to what torch reaches here.
The table is followed by one JSON line with every figure and the padded/padding-free ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from transformers import TrainerCallback

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

MODES = {
    "padded": {"padding_free": False, "packing": False},
    "padding_free": {"padding_free": True, "packing": False},
    "bfd_packing": {"padding_free": True, "packing": True},
}
# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's datasheets; the first matching name wins.
GPU_PEAK_TFLOPS = [
    ("H100 PCIe", 756.0),
    ("H100", 989.0),
    ("H200", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
]


def measured_peak_flops(device: str, dtype: str, n: int = 2048, seconds: float = 2.0) -> float:
    """FLOP/s of repeated n x n matmuls in `dtype` on `device` (2*n^3 FLOPs each)."""
    import torch

    a = torch.randn(n, n, device=device, dtype=getattr(torch, dtype))
    b = torch.randn(n, n, device=device, dtype=getattr(torch, dtype))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(3):
        a @ b
    sync()
    t0, runs = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        a @ b
        runs += 1
    sync()
    return 2 * n**3 * runs / (time.perf_counter() - t0)


def peak_flops(plan, override_tflops: float | None) -> tuple[float, str]:
    if override_tflops:
        return override_tflops * 1e12, "--peak-tflops"
    if plan.device == "cuda" and plan.dtype == "bfloat16":
        for name, tflops in GPU_PEAK_TFLOPS:
            if name.lower() in plan.device_name.lower():
                return tflops * 1e12, f"datasheet bf16 dense ({name})"
    return measured_peak_flops(plan.device, plan.dtype), f"measured {plan.dtype} matmul on {plan.device}"


def model_flops(lengths: list[int], n_frozen: int, n_trainable: int, layers: int, hidden: int) -> tuple[float, float]:
    """(6N convention, LoRA-aware) training FLOPs of samples with these token counts (see module docstring)."""
    attention = sum(6 * layers * hidden * t * t for t in lengths)
    tokens = sum(lengths)
    return 6 * (n_frozen + n_trainable) * tokens + attention, (4 * n_frozen + 6 * n_trainable) * tokens + attention


class ThroughputMeter(TrainerCallback):
    """Counts every timed training micro-batch (setup's `monitor` slot calls observe_batch, as for
    TrainingMonitor) and times the optimizer steps after the first `warmup`."""

    def __init__(self, warmup: int):
        self.warmup, self.timing, self.t0, self.t1 = warmup, False, None, None
        self.positions = 0
        self.lengths: list[int] = []

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.warmup and self.t0 is None:
            self._sync()
            self.t0, self.timing = time.perf_counter(), True

    def on_step_end(self, args, state, control, **kwargs):
        if self.timing:
            self._sync()
            self.t1 = time.perf_counter()

    @staticmethod
    def _sync() -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def observe_batch(self, inputs) -> None:
        if not self.timing:
            return
        self.positions += int(inputs["input_ids"].numel())
        self.lengths += sample_lengths(inputs)

    def result(self) -> dict:
        seconds = self.t1 - self.t0
        tokens = sum(self.lengths)
        return {
            "timed_seconds": seconds,
            "tokens": tokens,
            "samples": len(self.lengths),
            "positions": self.positions,
            "tokens_per_s": tokens / seconds,
            "samples_per_s": len(self.lengths) / seconds,
            "padding_share": 1 - tokens / self.positions,
        }


def sample_lengths(batch) -> list[int]:
    """Non-padding length of every sample in a collated batch, padded or padding-free."""
    if "attention_mask" in batch:
        return batch["attention_mask"].sum(dim=1).tolist()
    starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist()
    ends = starts[1:] + [batch["position_ids"].shape[1]]
    # tail padding of pad_to_multiple_of restarts at 0 too but is 1 token per "sample"; none without it
    return [e - s for s, e in zip(starts, ends)]


def epoch_padding_share(trainer) -> float:
    positions = tokens = 0
    for batch in trainer.get_train_dataloader():
        positions += int(batch["input_ids"].numel())
        tokens += sum(sample_lengths(batch))
    return 1 - tokens / positions


def child(mode: str, root: Path, steps: int, warmup: int, peak_tflops: float | None) -> dict:
    import tempfile

    import torch
    from _measure import StageMeter

    from llama_sft_dagster.assets.training import load_sft
    from llama_sft_dagster.config.training import TrainConfig
    from llama_sft_dagster.core.training.trainer import setup
    from llama_sft_dagster.resources.artifacts import ArtifactStore
    from llama_sft_dagster.resources.gpu import GpuResource

    fmt, train_rows, eval_rows = load_sft(ArtifactStore(root=str(root)), "train_adapter")
    plan = GpuResource().plan()
    # no evaluation or checkpoint inside the measured run: eval/save steps beyond max_steps
    hp = TrainConfig(
        **MODES[mode], max_steps=warmup + steps, eval_steps=10**9, save_steps=10**9, load_best_model_at_end=False
    )
    meter, rss = ThroughputMeter(warmup), StageMeter()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = setup(
            root / "base_model" / "model",
            train_rows,
            eval_rows[:16],
            hp,
            fmt,
            plan,
            Path(tmp),
            monitor=meter,
        )
        epoch_share = epoch_padding_share(trainer)
        if plan.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        with rss.stage("train") as stage:
            trainer.train()
        trainable, total = trainer.model.get_nb_trainable_parameters()
        base = trainer.model.get_base_model()
        embed = base.get_input_embeddings().weight.numel()
        cfg = base.config
    out = meter.result()
    flops_6n, flops_lora = model_flops(
        meter.lengths, total - trainable - embed, trainable, cfg.num_hidden_layers, cfg.hidden_size
    )
    peak, peak_source = peak_flops(plan, peak_tflops)
    out.update(
        {
            "mode": mode,
            "epoch_padding_share": epoch_share,
            "train_samples": len(train_rows),
            "peak_memory_gb": (
                torch.cuda.max_memory_allocated() if plan.device == "cuda" else stage["peak_rss_mb"] * 2**20
            )
            / 2**30,
            "peak_memory_kind": "cuda max allocated" if plan.device == "cuda" else "process RSS",
            "model_flops_per_s": flops_6n / out["timed_seconds"],
            "mfu": flops_6n / out["timed_seconds"] / peak,
            "mfu_lora": flops_lora / out["timed_seconds"] / peak,
            "peak_flops": peak,
            "peak_flops_source": peak_source,
            "params_total": total,
            "params_trainable": trainable,
            "params_input_embedding": embed,
            "device": plan.device_name,
            "dtype": plan.dtype,
            "attn_implementation": plan.attn_implementation,
            "micro_batch": hp.per_device_train_batch_size,
            "grad_accum": hp.gradient_accumulation_steps,
            "max_length": fmt["max_length"],
            "steps": steps,
            "warmup_steps": warmup,
        }
    )
    return out


def ensure_data(root: Path) -> None:
    """Materialize `*sft_dataset` and `*base_model` into `root` unless their outputs are there."""
    if (root / "sft_dataset" / "train.parquet").exists() and (root / "base_model" / "model" / "config.json").exists():
        return
    import dagster as dg

    from llama_sft_dagster import definitions
    from llama_sft_dagster.resources.artifacts import ArtifactStore

    resources = {**definitions.build_resources(), "artifacts": ArtifactStore(root=str(root))}
    result = dg.materialize(
        [*definitions.sources.raw_sources, *definitions.all_assets],
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
        selection="*sft_dataset *base_model",  # the data stages need only base_tokenizer, training the weights
    )
    if not result.success:
        raise SystemExit("materializing *sft_dataset *base_model failed")


def print_table(results: list[dict]) -> None:
    cols = [
        ("mode", "{}"),
        ("tokens_per_s", "{:,.0f}"),
        ("samples_per_s", "{:.2f}"),
        ("padding_share", "{:.1%}"),
        ("epoch_padding_share", "{:.1%}"),
        ("peak_memory_gb", "{:.2f}"),
        ("mfu", "{:.2%}"),
        ("mfu_lora", "{:.2%}"),
    ]
    rows = [[c for c, _ in cols]] + [[f.format(r[c]) for c, f in cols] for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(cols))]
    for row in rows:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", choices=["demo", "full"], default="demo")
    ap.add_argument("--steps", type=int, default=20, help="timed optimizer steps per mode")
    ap.add_argument("--warmup", type=int, default=3, help="untimed optimizer steps first (allocator, kernels)")
    ap.add_argument("--modes", default="padded,padding_free", help=f"comma list of {', '.join(MODES)}")
    ap.add_argument("--repeats", type=int, default=1, help="runs per mode (alternating); the fastest is reported")
    ap.add_argument("--root", type=Path, help="artifact root holding sft_dataset and base_model (default: state dir)")
    ap.add_argument("--peak-tflops", type=float, help="peak FLOP/s of the device in TFLOP/s (default: see docstring)")
    ap.add_argument("--child", choices=list(MODES), help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ["SFT_PROFILE"] = args.profile  # config defaults are read at import (settings.by_profile)
    from llama_sft_dagster.config.profiles import default_artifact_root

    root = (args.root or Path(default_artifact_root())).resolve()
    if args.child:
        print(json.dumps(child(args.child, root, args.steps, args.warmup, args.peak_tflops)))
        return
    ensure_data(root)
    if not args.peak_tflops:  # once, in the parent: every mode is divided by the same peak
        from llama_sft_dagster.resources.gpu import GpuResource

        peak, source = peak_flops(GpuResource().plan(), None)
        args.peak_tflops, peak_source = peak / 1e12, source
    else:
        peak_source = "--peak-tflops"
    runs: dict[str, list[dict]] = {}
    for _ in range(args.repeats):  # modes alternate, so a busy period of the machine hits each mode alike
        for mode in args.modes.split(","):
            cmd = [
                sys.executable,
                __file__,
                "--profile",
                args.profile,
                "--steps",
                str(args.steps),
                "--warmup",
                str(args.warmup),
                "--root",
                str(root),
                "--child",
                mode,
                "--peak-tflops",
                repr(args.peak_tflops),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                sys.stderr.write(proc.stderr[-4000:])
                raise SystemExit(f"mode {mode} failed (exit {proc.returncode})")
            runs.setdefault(mode, []).append(json.loads(proc.stdout.strip().splitlines()[-1]))
    # the fastest repeat of each mode: interference from other processes only ever slows a run down
    results = [
        {
            **max(rs, key=lambda r: r["tokens_per_s"]),
            "peak_flops_source": peak_source,
            "repeats_tokens_per_s": [r["tokens_per_s"] for r in rs],
        }
        for rs in runs.values()
    ]
    r0 = results[0]
    print(
        f"{args.profile} profile, {r0['device']} ({r0['dtype']}, {r0['attn_implementation']}), micro-batch "
        f"{r0['micro_batch']} x {r0['grad_accum']}, {args.steps} timed steps after {args.warmup}; peak "
        f"{r0['peak_flops'] / 1e12:.2f} TFLOP/s ({r0['peak_flops_source']}); memory = {r0['peak_memory_kind']}"
    )
    print_table(results)
    by_mode = {r["mode"]: r for r in results}
    ratios = {}
    if "padded" in by_mode:
        for mode, r in by_mode.items():
            if mode != "padded":
                ratios[f"{mode}_vs_padded"] = {
                    k: r[k] / by_mode["padded"][k] for k in ("tokens_per_s", "samples_per_s", "peak_memory_gb")
                }
        for name, ratio in ratios.items():
            print(f"{name}: " + ", ".join(f"{k} x{v:.2f}" for k, v in ratio.items()))
    print(
        json.dumps(
            {
                "benchmark": "training_throughput",
                "date": date.today().isoformat(),
                "profile": args.profile,
                "machine": {
                    "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                },
                "results": results,
                "ratios": ratios,
            }
        )
    )


if __name__ == "__main__":
    main()
