"""Training-side preparation, before/after sft_dataset stores the token ids: tokenizer calls and wall time.

    python benchmarks/training_prep.py --profile demo [--root DIR] [--repeats 3]

Materializes `*sft_dataset` into --root when it is missing (benchmarks/training_throughput.py's ensure_data),
then times, in this one process, the three places the templated dataset is tokenized:
  sft_dataset      before: the templated-length pass (one batched template + tokenize of the conversations);
                   after: core/training/tokenized.trainer_tokens (conversations and prompts, batched)
  masking check    before: core.training.setup on the text rows (loads the base model; TRL tokenizes per row);
                   after: trainer.prepare_data on the stored ids (no model, no tokenizing)
  train setup      core.training.setup (as every training rank runs it) on text rows / on the stored ids
TRL's per-row tokenizer calls are counted by wrapping trl.trainer.sft_trainer._tokenize. Each figure is the
fastest of --repeats. One JSON line follows the table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def timed(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def counter():
    import trl.trainer.sft_trainer as sft

    calls, real = [0], sft._tokenize

    def counted(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    sft._tokenize = counted
    return calls


def measure(root: Path, repeats: int) -> dict:
    from llama_sft_dagster.assets.training import load_sft
    from llama_sft_dagster.config.training import TrainConfig
    from llama_sft_dagster.core.training.chat_format import templated_lengths
    from llama_sft_dagster.core.training.masking import spread
    from llama_sft_dagster.core.training.tokenized import TOKEN_COLUMNS, trainer_tokens
    from llama_sft_dagster.core.training.trainer import load_tokenizer, prepare_data, setup
    from llama_sft_dagster.resources.artifacts import ArtifactStore
    from llama_sft_dagster.resources.gpu import GpuResource

    base = root / "base_model" / "model"
    fmt, train_ids, eval_ids = load_sft(ArtifactStore(root=str(root)), "train_adapter")
    text = [[{k: v for k, v in r.items() if k not in TOKEN_COLUMNS} for r in rows] for rows in (train_ids, eval_ids)]
    plan, hp = GpuResource().plan(), TrainConfig()
    pick = spread(range(len(eval_ids)), hp.eval_max_samples or len(eval_ids))  # the eval subset a rank trains with
    tok, calls, out = load_tokenizer(base), counter(), {"train_rows": len(train_ids), "eval_rows": len(eval_ids)}
    rows = text[0] + text[1]

    def count(name, fn):
        before = calls[0]
        seconds, _ = timed(fn, repeats)
        out[f"{name}_s"], out[f"{name}_trl_tokenizer_calls"] = round(seconds, 3), (calls[0] - before) // repeats

    count("sft_dataset_before", lambda: templated_lengths(tok, rows))
    count("sft_dataset_after", lambda: trainer_tokens(tok, rows, fmt["assistant_only_loss"]))
    with tempfile.TemporaryDirectory() as tmp:
        count("masking_check_before", lambda: setup(base, text[0], text[1], hp, fmt, plan, Path(tmp)))
        count("masking_check_after", lambda: prepare_data(base, train_ids, eval_ids, hp, fmt, plan, Path(tmp)))
        count(
            "train_setup_before",
            lambda: setup(base, text[0], [text[1][i] for i in pick], hp, fmt, plan, Path(tmp)),
        )
        count(
            "train_setup_after",
            lambda: setup(base, train_ids, [eval_ids[i] for i in pick], hp, fmt, plan, Path(tmp)),
        )
    for part in ("sft_dataset", "masking_check", "train_setup"):
        out[f"{part}_ratio"] = round(out[f"{part}_before_s"] / out[f"{part}_after_s"], 2)
    before = sum(out[f"{p}_before_s"] for p in ("sft_dataset", "masking_check", "train_setup"))
    after = sum(out[f"{p}_after_s"] for p in ("sft_dataset", "masking_check", "train_setup"))
    out.update(total_before_s=round(before, 3), total_after_s=round(after, 3), total_ratio=round(before / after, 2))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", choices=["demo", "rehearsal", "full"], default="demo")
    ap.add_argument("--root", type=Path, help="artifact root (default: a fresh temporary folder)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    os.environ["SFT_PROFILE"] = args.profile  # config defaults are read at import (config/profiles.py)
    from training_throughput import ensure_data

    with tempfile.TemporaryDirectory() as tmp:
        root = (args.root or Path(tmp)).resolve()
        ensure_data(root)
        out = measure(root, args.repeats)
    print(f"{'part':<15}{'before s':>10}{'after s':>10}{'ratio':>8}{'TRL tokenize calls before/after':>34}")
    for part in ("sft_dataset", "masking_check", "train_setup"):
        calls = f"{out[f'{part}_before_trl_tokenizer_calls']}/{out[f'{part}_after_trl_tokenizer_calls']}"
        print(
            f"{part:<15}{out[f'{part}_before_s']:>10.3f}{out[f'{part}_after_s']:>10.3f}"
            f"{out[f'{part}_ratio']:>8.2f}{calls:>34}"
        )
    print(f"{'total':<15}{out['total_before_s']:>10.3f}{out['total_after_s']:>10.3f}{out['total_ratio']:>8.2f}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
