"""Reply-token scoring (adapter_evaluation, the champion's re-score, the rank sweep): the full logit tensor (the
baseline: `model(...).logits`, then cross-entropy over every position, as a Hugging Face user scores a causal
LM) against the project's `score_rows`, which sends only the positions that predict a reply token through the
LM head (`logits_to_keep` as a boolean mask).

    python benchmarks/eval_scoring.py                       # rehearsal shape, real Bitext rows, batch 16
    python benchmarks/eval_scoring.py --rows 64 --batch-size 8

The model is the rehearsal's: Llama 3.1's tokenizer and 128,256-token vocabulary on a tiny random-init body
(core/training/llama31.py), float32 on the CPU as the rehearsal scores it. The rows are real Bitext pairs
(../shared/data) with the project's system prompt. Each mode runs in its own child process (peak RSS is per
process); both score the same rows, and the sums of nll / tokens / correct are printed to show they agree.
One JSON line at the end.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BITEXT = "bitext/Bitext_Sample_Customer_Support_Training_Dataset_27K_responses-v11.head5000.csv"


def full_logits_scores(model, tokenizer, rows, *, max_length: int, batch_size: int) -> list[dict]:
    """The baseline: logits at every position of the padded batch, cross-entropy over all, reply positions summed."""
    import torch

    from llama_sft_dagster.core.evaluation.scoring import reply_span

    spans = [reply_span(tokenizer, r, max_length) for r in rows]
    out = []
    for start in range(0, len(spans), batch_size):
        chunk = spans[start : start + batch_size]
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
        mask, labels = torch.zeros_like(ids), torch.full_like(ids, -100)
        for i, (seq, first) in enumerate(chunk):
            ids[i, : len(seq)], mask[i, : len(seq)] = torch.tensor(seq), 1
            labels[i, first : len(seq)] = ids[i, first : len(seq)]
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        target = labels[:, 1:]
        keep = target != -100
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target.clamp(min=0), reduction="none")
        correct = (logits.argmax(-1) == target) & keep
        out += [
            {"nll": float((nll[i] * keep[i]).sum()), "tokens": int(keep[i].sum()), "correct": int(correct[i].sum())}
            for i in range(len(chunk))
        ]
    return out


def bitext_rows(data: Path, n: int) -> list[dict]:
    """`n` Bitext pairs spread over the sample file, as chat rows with the project's system prompt."""
    from llama_sft_dagster.core.training.chat_format import SYSTEM_PROMPT, prompt_completion_row

    with open(data / BITEXT, newline="") as fh:
        pairs = list(csv.DictReader(fh))
    step = max(1, len(pairs) // n)
    return [prompt_completion_row(p["instruction"], p["response"], SYSTEM_PROMPT) for p in pairs[::step][:n]]


def measure(mode: str, model_dir: str, data: Path, rows: int, batch_size: int, max_length: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llama_sft_dagster.core.evaluation.scoring import score_rows

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    chat_rows = bitext_rows(data, rows)
    score = full_logits_scores if mode == "full" else score_rows
    before, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    scores = score(model, tokenizer, chat_rows, max_length=max_length, batch_size=batch_size)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "seconds": round(time.perf_counter() - t0, 2),
        "system_s": round(after.ru_stime - before.ru_stime, 1),
        "peak_rss_mb": round(after.ru_maxrss / 1024, 1),
        "rows": len(scores),
        "tokens": sum(s["tokens"] for s in scores),
        "nll": round(sum(s["nll"] for s in scores), 3),
        "correct": sum(s["correct"] for s in scores),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=32, help="Bitext rows scored (the rehearsal scores 32)")
    parser.add_argument("--batch-size", type=int, default=16, help="rows per forward pass (the seed's eval batch)")
    parser.add_argument("--max-length", type=int, default=1024, help="tokens per row at most")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "MODEL_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, model_dir = args.child
        print(json.dumps(measure(mode, model_dir, args.data, args.rows, args.batch_size, args.max_length)))
        return
    from llama_sft_dagster.core.training.llama31 import build_rehearsal_base_model

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        build_rehearsal_base_model(args.data / "llama31_tokenizer", tmp)
        for mode, name in (("full", "full logits (baseline)"), ("reply", "reply positions (score_rows)")):
            cmd = [sys.executable, __file__, "--child", mode, tmp, *sys.argv[1:]]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            r = results[name] = json.loads(out.strip().splitlines()[-1])
            print(
                f"{name:30s} {r['seconds']:7.2f} s  system {r['system_s']:5.1f} s  peak RSS {r['peak_rss_mb']:8.1f} MB"
                f"  {r['rows']} rows, {r['tokens']} reply tokens, nll {r['nll']}, correct {r['correct']}"
            )
    base, ours = results.values()
    ratio = round(base["seconds"] / ours["seconds"], 2)
    print(f"baseline / score_rows wall time: {ratio}x")
    print(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results, "speedup": ratio}))


if __name__ == "__main__":
    main()
