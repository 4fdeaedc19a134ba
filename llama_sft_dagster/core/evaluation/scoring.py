"""Score a causal LM on chat rows and generate replies: the torch side of adapter_evaluation.

Reply tokens are found as TRL's completion-only loss finds them: the prompt rendered with
`add_generation_prompt=True` is a prefix of the full conversation; every token after it (the reply
and its <|eot_id|>) is scored. Rows longer than `max_length` are cut there, as the trainer cuts them.

    model, tok = load_model(path, plan)
    scores = score_rows(model, tok, rows, max_length=512, batch_size=16)   # [{"nll", "tokens", "correct"}]
    replies = generate_replies(model, tok, prompts, max_new_tokens=128, batch_size=8)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from llama_sft_dagster.core.training.chat_format import conversation


def load_model(path, plan):
    """Model (eval mode, on the plan's device and dtype) and tokenizer of a save_pretrained folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=getattr(torch, plan.dtype), attn_implementation=plan.attn_implementation
    )
    return model.to(plan.device).eval(), tokenizer


def _ids(tokenizer, messages: list[dict], generation_prompt: bool) -> list[int]:
    out = tokenizer.apply_chat_template(
        [messages], tokenize=True, return_dict=True, add_generation_prompt=generation_prompt
    )
    return list(out["input_ids"][0])


def reply_span(tokenizer, row: Mapping, max_length: int) -> tuple[list[int], int]:
    """(token ids cut at max_length, index of the first reply token)."""
    conv = conversation(row)
    prompt, full = _ids(tokenizer, conv[:-1], True), _ids(tokenizer, conv, False)
    if full[: len(prompt)] != prompt:
        raise ValueError(
            f"row {row.get('pair_id', '?')}: the chat template renders the prompt differently alone "
            "and inside the conversation, so the reply tokens cannot be located"
        )
    return full[:max_length], len(prompt)


def score_rows(model, tokenizer, rows: Sequence[Mapping], *, max_length: int, batch_size: int) -> list[dict]:
    """Per row: summed negative log-likelihood, count and argmax-correct count of its reply tokens.

    Only the positions that predict a reply token go through the LM head (`logits_to_keep` as a boolean mask):
    a full (batch, length, 128,256) float32 logit tensor is 4 GB at 16 x 512, most of it prompt, system prompt
    and padding that no score reads (benchmarks/eval_scoring.py)."""
    import torch

    spans = [reply_span(tokenizer, r, max_length) for r in rows]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device, out = next(model.parameters()).device, []
    for start in range(0, len(spans), batch_size):
        chunk = spans[start : start + batch_size]
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        scored = torch.zeros_like(ids, dtype=torch.bool)  # positions whose next token is a reply token
        for i, (seq, first) in enumerate(chunk):
            ids[i, : len(seq)] = torch.tensor(seq)
            mask[i, : len(seq)] = 1
            scored[i, first - 1 : len(seq) - 1] = True
        with torch.no_grad():
            logits = model(
                input_ids=ids.to(device), attention_mask=mask.to(device), logits_to_keep=scored.to(device)
            ).logits.float()  # (scored positions, vocabulary), row-major over the batch
        row, pos = scored.nonzero(as_tuple=True)
        target = ids[row, pos + 1].to(device)
        nll = torch.nn.functional.cross_entropy(logits, target, reduction="none")
        correct = logits.argmax(-1) == target
        n = len(chunk)
        row = row.to(device)
        sums = torch.zeros(n, dtype=nll.dtype, device=device).index_add_(0, row, nll)
        tokens = torch.bincount(row, minlength=n)
        hits = torch.bincount(row, weights=correct.to(nll.dtype), minlength=n)
        out += [{"nll": float(sums[i]), "tokens": int(tokens[i]), "correct": int(hits[i])} for i in range(n)]
    return out


def generate_replies(
    model, tokenizer, prompts: Sequence[list[dict]], *, max_new_tokens: int, batch_size: int
) -> list[str]:
    """Greedy replies to chat prompts, stopping at <|eot_id|> (left-padded batches)."""
    import torch

    eot = tokenizer.convert_tokens_to_ids("<|eot_id|>")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eot
    device, replies = next(model.parameters()).device, []
    for start in range(0, len(prompts), batch_size):
        seqs = [_ids(tokenizer, p, True) for p in prompts[start : start + batch_size]]
        width = max(len(s) for s in seqs)
        ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs], device=device)
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=device)
        with torch.no_grad():
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=eot,
                pad_token_id=pad,
            )
        replies += [tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in out]
    return replies
