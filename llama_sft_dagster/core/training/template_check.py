"""What every templated sample must look like, checked on the token ids the trainer trains on.

- exactly one `<|begin_of_text|>`, at position 0: a tokenizer that adds BOS to text the chat template
  already starts with BOS gives two (TRL tokenizes with add_special_tokens=False to avoid it);
- the system turn first: its header, Llama 3.1's stock "Cutting Knowledge Date / Today Date" lines
  when the tokenizer's template writes them (the real Llama-3.1-Instruct one always does), then the
  seed's system prompt, then `<|eot_id|>`;
- a pad token that is not `<|eot_id|>` / eos: padding positions get label -100, and a pad that is the
  end-of-turn token makes configs and collators that go by id treat the one stop token as padding.
Used by core/training/masking.py's `verify_trainer_masking` (the blocking masking check).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

BOS = "<|begin_of_text|>"
EOT = "<|eot_id|>"
SYSTEM_HEADER = "<|start_header_id|>system<|end_header_id|>\n\n"
# written by the Llama-3.1-Instruct template before the system message (its default date_string)
LLAMA31_STOCK_HEADER = "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"


def expected_system_turn(tokenizer, system_prompt: str) -> str:
    stock = LLAMA31_STOCK_HEADER if "Cutting Knowledge Date" in (tokenizer.chat_template or "") else ""
    return BOS + SYSTEM_HEADER + stock + system_prompt.strip() + EOT


def template_problems(tokenizer, ids: Sequence[int], system_prompt: str) -> list[str]:
    """Problems of one sample's non-padding ids (empty when it is right)."""
    problems = []
    n_bos = list(ids).count(tokenizer.bos_token_id)
    if n_bos != 1 or ids[0] != tokenizer.bos_token_id:
        problems.append(f"{n_bos} {BOS} tokens (expected exactly one, first)")
    text = tokenizer.decode(list(ids), clean_up_tokenization_spaces=False)
    expected = expected_system_turn(tokenizer, system_prompt)
    got = text[: text.find(EOT) + len(EOT)] if EOT in text else text
    if got != expected:
        problems.append(f"system turn {got[:120]!r} != expected {expected[:120]!r}")
    return problems


def pad_problem(tokenizer, pad_token_id: int | None) -> str | None:
    """Why `pad_token_id` must not pad, or None when it is fine."""
    stops = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(EOT)}
    if "<|end_of_text|>" in tokenizer.get_vocab():
        stops.add(tokenizer.convert_tokens_to_ids("<|end_of_text|>"))
    if pad_token_id is None:
        return "no pad token: TRL would pad with eos (<|eot_id|> for Llama 3.1)"
    if pad_token_id in stops:
        return (
            f"pad token id {pad_token_id} ({tokenizer.convert_ids_to_tokens(pad_token_id)}) is a stop token; "
            "pad with <|finetune_right_pad_id|>"
        )
    return None


def stop_token_problems(model_dir) -> tuple[list[str], dict]:
    """Why a saved model would not stop on `<|eot_id|>` (tokenizer eos, generation_config eos ids, pad)."""
    from transformers import AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(model_dir)
    eot = tok.convert_tokens_to_ids(EOT)
    gen = GenerationConfig.from_pretrained(model_dir)
    eos = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]
    problems = []
    if tok.eos_token != EOT:
        problems.append(f"tokenizer eos_token is {tok.eos_token!r}, not {EOT}")
    if eot not in eos:
        problems.append(f"generation_config eos_token_id {gen.eos_token_id} does not include {EOT} ({eot})")
    if tok.pad_token_id == eot or gen.pad_token_id == eot:
        problems.append(f"pad token is {EOT}: padding and the end of turn are the same token")
    metadata = {
        "eot_id": eot,
        "tokenizer_eos": str(tok.eos_token),
        "generation_eos_token_id": json.dumps(eos),
        "pad_token": str(tok.pad_token),
        "generation_pad_token_id": str(gen.pad_token_id),
    }
    return problems, metadata
