"""A short causal-LM pretraining of the demo base model on the demo corpus text (CPU, about a minute).

It stands in for the real base model's pretraining: a random-init Llama cannot show what a fine-tune
adds (its replies are noise before and after), while a model that already writes the corpus's kind of
text can be compared per intent before and after the LoRA fine-tune (adapter_evaluation).

The texts are plain documents ("instruction\\nresponse", no chat template, no system prompt), packed into
`seq_len` blocks separated by <|end_of_text|>, so the chat format and the reply-after-request mapping are
left for the fine-tune to learn. Deterministic: same texts, seed and settings give the same weights.

    python -c "from llama_sft_dagster.core.demo.pretrain import pack; print(pack([[1, 2], [3]], 0, 2))"
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def pack(token_lists: Iterable[Sequence[int]], separator: int, seq_len: int) -> list[list[int]]:
    """Concatenate the documents (each followed by `separator`) and cut the stream into full blocks.

    The last, partial block is dropped (a standard causal-LM packing): every block has `seq_len` tokens."""
    if seq_len < 2:
        raise ValueError(f"seq_len={seq_len}: a causal-LM block needs at least 2 tokens")
    stream: list[int] = []
    for ids in token_lists:
        stream.extend(ids)
        stream.append(separator)
    return [stream[i : i + seq_len] for i in range(0, len(stream) - seq_len + 1, seq_len)]


def lr_at(step: int, steps: int, peak: float, warmup: int) -> float:
    """Linear warmup to `peak`, then cosine decay to 10% of it (the usual pretraining schedule)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def pretrain(
    model,
    tokenizer,
    texts: Iterable[str],
    *,
    steps: int,
    batch_size: int,
    seq_len: int,
    learning_rate: float,
    seed: int,
    warmup: int = 20,
) -> dict:
    """Train `model` in place on `texts` for `steps` AdamW steps; returns the loss figures (no timings: the
    figures are saved with the model, whose content version must not change from one build to the next)."""
    import torch

    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    packed = pack(ids, tokenizer.convert_tokens_to_ids("<|end_of_text|>"), seq_len)
    if not packed:  # a corpus this small (a test's, a heavily filtered one) keeps the random init, and says so
        return {"pretrain_steps": 0, "pretrain_skipped": f"the text gives no full block of {seq_len} tokens"}
    blocks = torch.tensor(packed)
    batch_size = min(batch_size, len(blocks))  # a small corpus: every block in every step
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    model.train()
    # one shuffled order per epoch, concatenated: every block is seen once before any is seen twice
    epochs = math.ceil(steps * batch_size / len(blocks))
    order = torch.cat([torch.randperm(len(blocks), generator=generator) for _ in range(epochs)])
    losses = []
    for step in range(steps):
        batch = blocks[order[step * batch_size : (step + 1) * batch_size]]
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps, learning_rate, warmup)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    model.eval()
    tail = losses[-10:]
    return {
        "pretrain_steps": steps,
        "pretrain_blocks": len(blocks),
        "pretrain_batch_size": batch_size,
        "pretrain_tokens_seen": steps * batch_size * seq_len,
        "pretrain_first_loss": round(losses[0], 4),
        "pretrain_final_loss": round(sum(tail) / len(tail), 4),
    }
