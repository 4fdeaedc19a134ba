"""Shared benchmark pieces: a per-stage wall-clock and peak-RSS meter, and the benchmark tokenizer."""

from __future__ import annotations

import json
import resource
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import psutil

BOS = "<|begin_of_text|>"
EOS = "<|end_of_text|>"


class StageMeter:
    """Times named stages and samples this process's RSS every 10 ms to report each stage's peak."""

    def __init__(self, interval: float = 0.01):
        self.stages: list[dict] = []
        self._proc = psutil.Process()
        self._interval = interval
        self._peak = 0
        self._stop = threading.Event()
        self._record: dict = {}
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self._proc.memory_info().rss)
            time.sleep(self._interval)

    @contextmanager
    def stage(self, name: str, **extra):
        self._peak = self._proc.memory_info().rss
        t0 = time.perf_counter()
        record = self._record = {"stage": name, **extra}
        yield record
        record["seconds"] = round(time.perf_counter() - t0, 3)
        self._peak = max(self._peak, self._proc.memory_info().rss)
        record["peak_rss_mb"] = round(self._peak / 2**20, 1)
        self.stages.append(record)

    def note(self, **values) -> None:
        """Add figures to the stage being measured (e.g. how many texts the token filter tokenized)."""
        self._record.update(values)

    def finish(self) -> dict:
        self._stop.set()
        # ru_maxrss is the process high-water mark (KiB on Linux), sampled or not
        return {
            "stages": self.stages,
            "process_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }


def write_result(path: Path, result: dict) -> None:
    Path(path).write_text(json.dumps(result, indent=1))


def build_tokenizer(parquet: Path, out_dir: Path, sample_rows: int = 30_000, vocab_size: int = 16_000) -> Path:
    """A Llama-like fast tokenizer (byte-level BPE, BOS added) trained on the corpus, saved with
    save_pretrained into `out_dir` (the base_model/model layout the token filter reads).

    Only for `data_graph.py --tokenizer train`, where the real Llama 3 tokenizer is not at hand: a real
    fast tokenizer of similar granularity, so the token stage does the same kind of work."""
    import pyarrow.parquet as pq
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    pf = pq.ParquetFile(parquet)
    batch = next(pf.iter_batches(batch_size=sample_rows, columns=["instruction", "response"]))
    texts = [f"{i} {r}" for i, r in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist())]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=EOS)
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out_dir)
    return out_dir
