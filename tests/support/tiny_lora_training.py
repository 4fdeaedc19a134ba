"""A real tiny Llama + PEFT LoRA trained for a few steps with transformers' Trainer, on random ids.

Shared by tests/unit/test_monitoring.py and tests/graph/test_tracking.py. The Trainer subclass wires the monitor
exactly as llama_sft_dagster/core/training/monitoring.py's docstring tells the training code to.
"""

from __future__ import annotations

from pathlib import Path

PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
VOCAB = 256
PAD = 0


def tiny_lora_model(seed: int = 0):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=VOCAB,
        max_position_embeddings=128,
        pad_token_id=PAD,
    )
    base = LlamaForCausalLM(config)
    return get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=PROJECTIONS, task_type="CAUSAL_LM"))


def random_examples(n: int = 32, seed: int = 0) -> list[dict]:
    """Variable-length sequences; the first half of each is prompt (label -100), so efficiency < 1."""
    import random

    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        ids = [rng.randrange(1, VOCAB) for _ in range(rng.randrange(6, 24))]
        half = len(ids) // 2
        examples.append({"input_ids": ids, "labels": [-100] * half + ids[half:]})
    return examples


def pad_collate(examples: list[dict]) -> dict:
    import torch

    width = max(len(e["input_ids"]) for e in examples)
    batch = {"input_ids": [], "labels": [], "attention_mask": []}
    for e in examples:
        pad = width - len(e["input_ids"])
        batch["input_ids"].append(e["input_ids"] + [PAD] * pad)
        batch["labels"].append(e["labels"] + [-100] * pad)
        batch["attention_mask"].append([1] * len(e["input_ids"]) + [0] * pad)
    return {k: torch.tensor(v) for k, v in batch.items()}


def train_tiny(
    monitor,
    output_dir: Path,
    *,
    max_steps: int = 6,
    report_to=("none",),
    max_grad_norm: float = 1e-4,
    gradient_accumulation_steps: int = 2,
):
    """Train with `monitor` as callback; returns (trainer, model). Clipping is forced on by default."""
    from transformers import Trainer, TrainingArguments

    class MonitoredTrainer(Trainer):
        def training_step(self, model, inputs, num_items_in_batch=None):
            monitor.observe_batch(inputs)
            return super().training_step(model, inputs, num_items_in_batch)

    model = tiny_lora_model()
    args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=max_steps,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=gradient_accumulation_steps,
        learning_rate=1e-2,
        logging_steps=1,
        max_grad_norm=max_grad_norm,
        save_strategy="no",
        report_to=list(report_to),
        use_cpu=True,
        dataloader_num_workers=0,
        seed=0,
        remove_unused_columns=False,
        disable_tqdm=True,
    )
    trainer = MonitoredTrainer(
        model=model, args=args, train_dataset=random_examples(), data_collator=pad_collate, callbacks=[monitor]
    )
    try:
        trainer.train()
    finally:
        monitor.close()
    return trainer, model
