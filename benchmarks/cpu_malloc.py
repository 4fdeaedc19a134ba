"""CPU training's allocator: glibc defaults (the baseline, as a CPU run starts without the project) against the
tunables the training launcher sets on the CPU (GpuResource.cpu_reuse_memory, core/training/device.py).

    python benchmarks/cpu_malloc.py                 # rehearsal shape: hidden 64, Llama 3.1's 128,256 vocabulary
    python benchmarks/cpu_malloc.py --tokens 4096 --repeats 2

The measured op is what dominates a CPU training step at the rehearsal shape: TRL's chunked log-prob (the loss
path of SFTTrainer.compute_loss, `fused_lm_head=True`) forward and backward over `--tokens` positions, with the
entropy and top-1 outputs SFTTrainer asks for. Each mode runs in its own child process, since glibc reads its
tunables at process start. Reported per mode: wall seconds, user and system CPU seconds, minor page faults and
peak RSS; then the baseline / tunables ratio of wall time. One JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def measure(tokens: int, hidden: int, vocab: int, repeats: int) -> dict:
    import torch
    from trl.kernels.chunked_logprob import ChunkedLogProbFunction
    from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE

    torch.manual_seed(0)
    states = torch.randn(tokens, hidden, requires_grad=True)
    weight = torch.randn(vocab, hidden) * 0.02
    targets = torch.randint(0, vocab, (tokens,))
    before, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(repeats):
        out = ChunkedLogProbFunction.apply(
            states,
            weight,
            None,
            targets,
            1.0,
            _CHUNKED_LOGPROB_CHUNK_SIZE,
            None,
            1.0,
            ("log_probs", "entropy", "is_top1"),
        )
        out[0].sum().backward()
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "seconds": round(time.perf_counter() - t0, 2),
        "user_s": round(after.ru_utime - before.ru_utime, 1),
        "system_s": round(after.ru_stime - before.ru_stime, 1),
        "minor_faults": after.ru_minflt - before.ru_minflt,
        "peak_rss_mb": round(after.ru_maxrss / 1024, 1),
    }


def main() -> None:
    from llama_sft_dagster.core.training.device import CPU_MALLOC_TUNABLES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=2000, help="positions per call (a rehearsal micro-batch: ~2,000)")
    parser.add_argument("--hidden", type=int, default=64, help="hidden size (the rehearsal model's)")
    parser.add_argument("--vocab", type=int, default=128_256, help="vocabulary (Llama 3.1's)")
    parser.add_argument("--repeats", type=int, default=4, help="forward+backward calls timed per mode")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.tokens, args.hidden, args.vocab, args.repeats)))
        return
    base_env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    modes = {
        "glibc defaults (baseline)": base_env,
        "launcher tunables": {**base_env, "GLIBC_TUNABLES": CPU_MALLOC_TUNABLES},
    }
    results = {}
    for name, env in modes.items():
        cmd = [sys.executable, __file__, "--child", *sys.argv[1:]]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        results[name] = json.loads(out.strip().splitlines()[-1])
        r = results[name]
        print(
            f"{name:28s} {r['seconds']:7.2f} s  user {r['user_s']:6.1f} s  system {r['system_s']:6.1f} s  "
            f"minor faults {r['minor_faults']:>10,}  peak RSS {r['peak_rss_mb']:8.1f} MB"
        )
    base, tuned = results.values()
    ratio = round(base["seconds"] / tuned["seconds"], 2)
    shape = f"{args.tokens} tokens x {args.vocab} vocabulary, {args.repeats} calls"
    print(f"baseline / tunables wall time: {ratio}x  ({shape})")
    print(json.dumps({"args": vars(args), "tunables": CPU_MALLOC_TUNABLES, "results": results, "speedup": ratio}))


if __name__ == "__main__":
    main()
