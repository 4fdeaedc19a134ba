"""Llama-3.1-8B-Instruct's identity, for the `rehearsal` profile and for the checks every profile runs.

`LLAMA31_8B_INSTRUCT` holds the values of the hub repository's `config.json` and
`generation_config.json` (meta-llama/Llama-3.1-8B-Instruct). The rehearsal base model keeps every
value that decides tokenization, masking, positions and stopping (vocabulary, special token ids,
rope_scaling llama3, GQA, rms_norm_eps, untied embeddings, bf16 dtype) and shrinks only the widths
and depth (`REHEARSAL_SHAPE`), so the full profile's code path runs on a CPU in minutes.

`ensure_pad_token` gives the tokenizer Llama 3.1's reserved padding token when it has none: the real
tokenizer ships without one, and TRL would otherwise pad with eos = `<|eot_id|>`.

    python -c "from llama_sft_dagster.core.training.llama31 import build_rehearsal_base_model as b; b('tok', 'out')"
"""

from __future__ import annotations

from pathlib import Path

EOT = "<|eot_id|>"
PAD = "<|finetune_right_pad_id|>"  # id 128004: reserved by Meta for right padding in fine-tuning

# meta-llama/Llama-3.1-8B-Instruct config.json (transformers names)
LLAMA31_8B_INSTRUCT = dict(
    vocab_size=128256,
    bos_token_id=128000,
    eos_token_id=[128001, 128008, 128009],
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=128,
    hidden_act="silu",
    max_position_embeddings=131072,
    rms_norm_eps=1e-5,
    rope_theta=500000.0,
    tie_word_embeddings=False,
    attention_bias=False,
    mlp_bias=False,
    rope_scaling={
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    },
)
# its generation_config.json: sampling defaults and the three stop ids (<|end_of_text|>, <|eom_id|>, <|eot_id|>)
LLAMA31_GENERATION = dict(
    bos_token_id=128000, eos_token_id=[128001, 128008, 128009], do_sample=True, temperature=0.6, top_p=0.9
)
LLAMA31_DTYPE = "bfloat16"

# Tiny widths, real everything else. The 128,256-row embedding and lm_head dominate (8.2 M of 8.3 M
# parameters at hidden 32), so hidden stays small; 4 heads over 2 KV heads keeps GQA.
REHEARSAL_SHAPE = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8
)


class PadTokenError(ValueError):
    """The tokenizer would pad with a token the model must learn (end of turn / end of text)."""


def ensure_pad_token(tokenizer) -> int:
    """Set the pad token to `<|finetune_right_pad_id|>` when the tokenizer has none; return its id.

    Refuses a pad equal to eos / `<|eot_id|>`: the collator sets padded labels to -100, so a pad that
    is also the end-of-turn token makes generation configs treat padding as a stop and, in any
    collator that masks by token id, removes the one token that teaches the model to stop."""
    if tokenizer.pad_token is None:
        if PAD not in tokenizer.get_vocab():
            raise PadTokenError(f"the tokenizer has no pad token and no {PAD}; set one that is not eos")
        tokenizer.pad_token = PAD
    eot = tokenizer.convert_tokens_to_ids(EOT) if EOT in tokenizer.get_vocab() else None
    if tokenizer.pad_token_id in {tokenizer.eos_token_id, eot}:
        raise PadTokenError(f"pad token {tokenizer.pad_token!r} is the end-of-turn/eos token; pad with {PAD}")
    return tokenizer.pad_token_id


def rehearsal_config(shape: dict | None = None, pad_token_id: int | None = None):
    """A LlamaConfig with Llama-3.1-8B-Instruct's values and the tiny `shape` (default REHEARSAL_SHAPE)."""
    from transformers import LlamaConfig

    values = {**LLAMA31_8B_INSTRUCT, **(REHEARSAL_SHAPE if shape is None else shape)}
    config = LlamaConfig(**values, pad_token_id=pad_token_id)
    config.dtype = LLAMA31_DTYPE  # saved as "dtype": the merge keeps bf16 as for the real weights
    return config


def save_rehearsal_tokenizer(tokenizer_dir: str | Path, out_dir: str | Path):
    """Copy the local Llama-3.1 tokenizer (pad token set) to `out_dir`; return it."""
    from transformers import AutoTokenizer

    tokenizer_dir, out_dir = Path(tokenizer_dir), Path(out_dir)
    if not (tokenizer_dir / "tokenizer.json").is_file():
        raise FileNotFoundError(
            f"{tokenizer_dir}: no tokenizer.json (the rehearsal needs a local Llama-3.1 "
            "tokenizer folder; set TokenizerConfig.tokenizer_dir of base_tokenizer)"
        )
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    if len(tokenizer) != LLAMA31_8B_INSTRUCT["vocab_size"]:
        raise ValueError(f"{tokenizer_dir}: {len(tokenizer)} tokens, Llama 3.1 has {LLAMA31_8B_INSTRUCT['vocab_size']}")
    ensure_pad_token(tokenizer)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out_dir)
    return tokenizer


def build_rehearsal_base_model(
    tokenizer_dir: str | Path, out_dir: str | Path, seed: int = 0, shape: dict | None = None
) -> Path:
    """Copy the local Llama-3.1 tokenizer (pad token set) and a random-init Llama-3.1-shaped model to `out_dir`."""
    import torch
    from transformers import GenerationConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    tokenizer = save_rehearsal_tokenizer(tokenizer_dir, out_dir)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(rehearsal_config(shape, tokenizer.pad_token_id))  # fp32 init; saved in bf16 like the hub
    model.generation_config = GenerationConfig(**LLAMA31_GENERATION)
    model.to(getattr(torch, LLAMA31_DTYPE)).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
