"""GPU acceptance check: a Llama-3.1-8B-shaped model through the project's training code, before a real run.

    make gpu-check                                   # = python benchmarks/gpu_check.py (3 configurations, 20 steps)
    python benchmarks/gpu_check.py --steps 5 --kernels flash_attention_2,sdpa --modes padded,padding_free,planned
    python benchmarks/gpu_check.py --shape rehearsal --allow-cpu --steps 1 --warmup 0   # the code path on a CPU

No hub access: the model is built from Llama-3.1-8B-Instruct's config values (core/training/llama31.py;
vocab 128,256, hidden 4096, 32 layers, GQA 32/8, rope llama3) with random weights in bf16 on the GPU, and
the tokenizer is the local Llama-3.1 one (--tokenizer-dir, default ../shared/data/llama31_tokenizer). The
data are real Bitext rows from ../shared/data, templated by the project (seed system prompt), in the seed's
batch shape (micro-batch 8, max_length 512). Three configurations (--modes): `padded` (the seed's: padded
micro-batch 8, gradient checkpointing), `padding_free` (the previous default: padding-free micro-batch 8,
checkpointing) and `planned` (the batch planner's choice for this GPU's memory and these rows' lengths:
micro-batch, checkpointing, Liger when installed; core/training/batch_plan.py). Each optimizer step is one
micro-batch here (accumulation 1: the throughput of a micro-batch does not depend on it). For each attention
kernel x configuration it runs
`core.training.trainer.setup` (the same SFTTrainer, LoRA r64/alpha128 on the seven projections, bf16,
gradient checkpointing, fused AdamW as the full profile) with the model passed in, the blocking masking
check (`verify_trainer_masking`) on its batches, then `--warmup` + `--steps` optimizer steps, and prints
the median step time, tokens/s, MFU against the device's datasheet bf16 peak (benchmarks/training_throughput.py's
FLOP count), peak CUDA memory, and whether the masking check passed, then a markdown table of them; the last line
is JSON with every figure.

Without CUDA it prints one line and exits 0 (unless --allow-cpu). flash_attention_2 is skipped, with
the reason, when flash-attn does not import. Exit status 1 when a masking check fails.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

BITEXT = "bitext/Bitext_Sample_Customer_Support_Training_Dataset_27K_responses-v11.head5000.csv"
MODES = {"padded": False, "padding_free": True, "planned": True}  # padding_free of each configuration


def sft_rows(n: int) -> list[dict]:
    """n real Bitext rows as the project's prompt/completion rows (the seed's system prompt)."""
    from llama_sft_dagster.config.profiles import shared_data
    from llama_sft_dagster.core.sources.bitext import load_bitext_file
    from llama_sft_dagster.core.training.chat_format import build_rows

    table = load_bitext_file(shared_data(BITEXT)).slice(0, n)
    return build_rows(table.column("instruction").to_pylist(), table.column("response").to_pylist())


def model_folder(tokenizer_dir: str, shape: dict | None, out: Path) -> Path:
    """Tokenizer (pad token set) + config.json of the shape: what `setup` reads from base_dir."""
    from transformers import AutoTokenizer

    from llama_sft_dagster.core.training.llama31 import ensure_pad_token, rehearsal_config

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    rehearsal_config(shape, ensure_pad_token(tok)).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def build_model(folder: Path, plan):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(folder)
    with torch.device(plan.device):  # random init directly on the device, in the plan's dtype
        return AutoModelForCausalLM.from_config(
            config, dtype=getattr(torch, plan.dtype), attn_implementation=plan.attn_implementation
        )


def batch_for(mode: str, folder: Path, rows: list[dict], plan, config):
    """The configuration's BatchPlan, one micro-batch per optimizer step."""
    import dataclasses
    import json

    from llama_sft_dagster.core.training.batch_plan import Lengths, ModelShape, plan_cpu, plan_gpu
    from llama_sft_dagster.core.training.trainer import configured_batch
    from llama_sft_dagster.resources.gpu import liger_importable

    if mode != "planned":
        batch = configured_batch(config, plan)
    elif plan.device != "cuda":
        batch = plan_cpu(config.per_device_train_batch_size, 32, 1, plan.attn_implementation)
    else:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(folder)
        lengths = [len(tok.apply_chat_template(r["prompt"] + r["completion"])["input_ids"]) for r in rows]
        shape = ModelShape.from_config(json.loads((folder / "config.json").read_text()))
        batch = plan_gpu(
            plan.total_memory_gb,
            shape,
            shape.lora_params(config.lora_r, config.lora_target_modules),
            Lengths.of(lengths, 512),
            32,
            attn=plan.attn_implementation,
            liger_available=liger_importable(),
        )
    return dataclasses.replace(batch, accumulation=1)


class StepTimes:
    """Per-optimizer-step wall times after the warmup (a TrainerCallback beside the ThroughputMeter)."""

    def __init__(self, warmup: int):
        from transformers import TrainerCallback

        outer = self
        self.times: list[float] = []

        class Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                outer._sync()
                outer.started = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                outer._sync()
                if state.global_step > warmup:
                    outer.times.append(time.perf_counter() - outer.started)

        self.callback = Callback()

    @staticmethod
    def _sync():
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()


def run_one(folder: Path, rows: list[dict], plan, mode: str, steps: int, warmup: int) -> dict:
    import dataclasses
    import statistics

    import torch
    from training_throughput import ThroughputMeter, model_flops, peak_flops

    from llama_sft_dagster.config.training import SftDatasetConfig, TrainConfig
    from llama_sft_dagster.core.training.chat_format import SYSTEM_PROMPT
    from llama_sft_dagster.core.training.masking import verify_trainer_masking
    from llama_sft_dagster.core.training.trainer import attention_kernel, setup

    # no evaluation or checkpoint inside the measured steps
    hp = TrainConfig(
        padding_free=MODES[mode],
        max_steps=warmup + steps,
        eval_steps=10**9,
        save_steps=10**9,
        load_best_model_at_end=False,
        logging_steps=1,
    )
    batch = batch_for(mode, folder, rows, plan, hp)
    plan = dataclasses.replace(plan, gradient_checkpointing=batch.gradient_checkpointing)
    meter, step_times = ThroughputMeter(warmup), StepTimes(warmup)
    if plan.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = setup(
            folder,
            rows,
            rows[:16],
            hp,
            SftDatasetConfig().model_dump(),
            plan,
            Path(tmp),
            monitor=meter,
            model=build_model(folder, plan),
            batch=batch,
        )
        trainer.add_callback(step_times.callback)
        mask = verify_trainer_masking(trainer, max_batches=4, system_prompt=SYSTEM_PROMPT)
        started = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - started
        trainable, total = trainer.model.get_nb_trainable_parameters()
        base = trainer.model.get_base_model()
        embed, cfg, kernel = base.get_input_embeddings().weight.numel(), base.config, attention_kernel(trainer.model)
        peak_mem = torch.cuda.max_memory_allocated() / 2**30 if plan.device == "cuda" else None
        del trainer, base
    gc.collect()
    if plan.device == "cuda":
        torch.cuda.empty_cache()
    out = meter.result()
    flops_6n, flops_lora = model_flops(
        meter.lengths, total - trainable - embed, trainable, cfg.num_hidden_layers, cfg.hidden_size
    )
    peak, source = peak_flops(plan, None)
    return {
        "kernel": kernel,
        "mode": mode,
        "micro_batch": batch.micro_batch,
        "gradient_checkpointing": batch.gradient_checkpointing,
        "liger_kernel": batch.liger_kernel,
        "batch_plan": batch.reason,
        "median_step_s": round(statistics.median(step_times.times), 3),
        "timed_steps": len(step_times.times),
        "tokens_per_s": round(out["tokens_per_s"], 1),
        "mfu": round(flops_6n / out["timed_seconds"] / peak, 4),
        "mfu_lora": round(flops_lora / out["timed_seconds"] / peak, 4),
        "peak_flops_source": source,
        "peak_memory_gb": None if peak_mem is None else round(peak_mem, 2),
        "padding_share": out["padding_share"],
        "masking_ok": mask.ok,
        "masking_examples": mask.examples[:3],
        "train_wall_s": round(wall, 1),
        "params_total": total,
        "params_trainable": trainable,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps (the median is reported)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--kernels", default="flash_attention_2,sdpa")
    parser.add_argument("--modes", default="padded,padding_free,planned")
    parser.add_argument("--shape", choices=["8b", "rehearsal"], default="8b")
    parser.add_argument("--tokenizer-dir", default=None)
    parser.add_argument("--rows", type=int, default=256, help="real Bitext rows to train on")
    parser.add_argument("--allow-cpu", action="store_true", help="run the code path on a CPU (fp32, sdpa)")
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        print("gpu-check: no CUDA device here (torch.cuda.is_available() is False); nothing to check")
        return 0
    from llama_sft_dagster.config.profiles import shared_data
    from llama_sft_dagster.core.training.llama31 import LLAMA31_8B_INSTRUCT, REHEARSAL_SHAPE
    from llama_sft_dagster.resources.gpu import GpuResource, machine_facts

    shape = {k: LLAMA31_8B_INSTRUCT[k] for k in REHEARSAL_SHAPE} if args.shape == "8b" else REHEARSAL_SHAPE
    facts, results, skipped = machine_facts(), [], {}
    rows = sft_rows(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        folder = model_folder(args.tokenizer_dir or shared_data("llama31_tokenizer"), shape, Path(tmp))
        for kernel in args.kernels.split(","):
            if kernel == "flash_attention_2" and not (facts.cuda_available and facts.flash_attn_importable):
                skipped[kernel] = (
                    "flash-attn is not importable (pip install -e '.[gpu]')" if facts.cuda_available else "no CUDA"
                )
                continue
            plan = GpuResource(attn_implementation=kernel, device="auto").plan()
            for mode in args.modes.split(","):
                results.append(run_one(folder, rows, plan, mode, args.steps, args.warmup))
                r = results[-1]
                print(
                    f"{r['kernel']:>18} {r['mode']:>13}: {r['tokens_per_s']:>10,.0f} tokens/s  MFU {r['mfu']:.1%} "
                    f"(LoRA-aware {r['mfu_lora']:.1%})  peak {r['peak_memory_gb']} GiB  masking "
                    f"{'ok' if r['masking_ok'] else 'FAILED ' + '; '.join(r['masking_examples'])}",
                    flush=True,
                )
    for kernel, why in skipped.items():
        print(f"{kernel:>18}: skipped ({why})")
    print(markdown_table(results))
    print(
        json.dumps(
            {
                "device": facts.device_name,
                "shape": args.shape,
                "steps": args.steps,
                "warmup": args.warmup,
                "max_length": 512,
                "results": results,
                "skipped": skipped,
            }
        )
    )
    return 0 if all(r["masking_ok"] for r in results) else 1


def markdown_table(results: list[dict]) -> str:
    head = (
        "| configuration | kernel | micro-batch | checkpointing | Liger | median step s | tokens/s | MFU (6N) | "
        "peak GiB | masking |\n|---|---|---:|---|---|---:|---:|---:|---:|---|"
    )
    rows = [
        f"| {r['mode']} | {r['kernel']} | {r['micro_batch']} | {'on' if r['gradient_checkpointing'] else 'off'} | "
        f"{'on' if r['liger_kernel'] else 'off'} | {r['median_step_s']} | {r['tokens_per_s']:,.0f} | {r['mfu']:.1%} | "
        f"{r['peak_memory_gb'] if r['peak_memory_gb'] is not None else '-'} | {'ok' if r['masking_ok'] else 'FAILED'} |"
        for r in results
    ]
    return "\n".join([head, *rows])


if __name__ == "__main__":
    sys.exit(main())
