"""The base model: a tiny Llama built locally (demo profile) or a hub snapshot (full profile).

`base_tokenizer` builds or fetches the tokenizer alone; `base_model` the weights beside a copy of it.
Demo: a byte-level BPE tokenizer trained with `tokenizers` on the corpus, carrying the Llama-3
special tokens and chat template, and a random-init LlamaForCausalLM (hidden 64, 2 layers, 4 heads,
2 KV heads) saved as safetensors. Deterministic: the same texts and seed give the same files.
Full: `huggingface_hub.snapshot_download` of safetensors weights + tokenizer at a resolved revision.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

BEGIN = "<|begin_of_text|>"
END = "<|end_of_text|>"
START_HEADER = "<|start_header_id|>"
END_HEADER = "<|end_header_id|>"
EOT = "<|eot_id|>"
# Llama 3.1 reserves this token for right padding in fine-tuning; we pad with it in both profiles so
# that padding never doubles as <|eot_id|> (which is supervised) or <|end_of_text|>.
PAD = "<|finetune_right_pad_id|>"
SPECIAL_TOKENS = [BEGIN, END, START_HEADER, END_HEADER, EOT, PAD]

# Llama-3 chat format, with {% generation %} markers so TRL's assistant_only_loss can find the reply.
LLAMA3_CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{% generation %}{{- message['content'] | trim + '<|eot_id|>' }}{% endgeneration %}"
    "{%- else %}"
    "{{- message['content'] | trim + '<|eot_id|>' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)

# Tiny-model shape: the "hidden 64, 2 layers, 4 heads, 2 KV heads" (GQA like Llama-3).
DEMO_MODEL = dict(
    hidden_size=64,
    intermediate_size=176,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=1024,
    rope_theta=500000.0,
)
DEMO_VOCAB_SIZE = 4096
PRETRAINING_FILE = "pretraining.json"  # the demo pretraining's loss and time, for the asset's metadata


def train_demo_tokenizer(texts: Iterable[str], vocab_size: int = DEMO_VOCAB_SIZE):
    """A byte-level BPE (like Llama-3's tiktoken BPE) with Llama-3 special tokens and template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer)
    # add_special_tokens=True prepends <|begin_of_text|>, as the Llama-3 tokenizer does
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BEGIN} $A", pair=f"{BEGIN} $A {BEGIN} $B", special_tokens=[(BEGIN, tok.token_to_id(BEGIN))]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BEGIN,
        eos_token=EOT,
        pad_token=PAD,
        model_max_length=DEMO_MODEL["max_position_embeddings"],
    )
    fast.chat_template = LLAMA3_CHAT_TEMPLATE
    return fast


def build_demo_tokenizer(texts: Iterable[str], out_dir: Path, vocab_size: int = DEMO_VOCAB_SIZE) -> Path:
    """Train the demo tokenizer on `texts` and save it to `out_dir` (the `base_tokenizer` folder)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_demo_tokenizer(texts, vocab_size).save_pretrained(out_dir)
    return out_dir


def build_demo_model(
    tokenizer_dir: Path, texts: Iterable[str], out_dir: Path, seed: int = 0, pretrain: Mapping | None = None
) -> Path:
    """A tiny Llama for the tokenizer saved in `tokenizer_dir`, saved with that tokenizer to `out_dir`.

    `pretrain` (keyword arguments of core.demo.pretrain.pretrain: steps, batch_size, seq_len,
    learning_rate) trains the random init on `texts` first; its figures go to PRETRAINING_FILE."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        **DEMO_MODEL,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    out_dir.mkdir(parents=True, exist_ok=True)
    if pretrain:
        from llama_sft_dagster.core.demo.pretrain import pretrain as run_pretraining

        figures = run_pretraining(model, tokenizer, list(texts), seed=seed, **pretrain)
        (out_dir / PRETRAINING_FILE).write_text(json.dumps(figures, indent=2))
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def build_demo_base_model(
    texts: Iterable[str],
    out_dir: Path,
    seed: int = 0,
    vocab_size: int = DEMO_VOCAB_SIZE,
    pretrain: Mapping | None = None,
) -> Path:
    """Tokenizer and tiny Llama in one folder (what `base_tokenizer` then `base_model` build), for tests."""
    texts = list(texts)
    build_demo_tokenizer(texts, out_dir, vocab_size)
    return build_demo_model(out_dir, texts, out_dir, seed, pretrain)


TOKENIZER_FILES = ["tokenizer*", "special_tokens_map.json", "*.jinja", "config.json", "generation_config.json"]


def resolve_hub_tokenizer(model_id: str, revision: str | None, token: str | None, out_dir: Path, **kwargs):
    """Download only the tokenizer (and the small config files) of `model_id` at `revision`: a few MB, all the
    data stages need. Returns (folder, commit sha); `base_model` downloads the weights at that same sha.
    `kwargs`: resolve_hub_base_model's api, timeout and retries."""
    return resolve_hub_base_model(model_id, revision, token, out_dir, patterns=TOKENIZER_FILES, **kwargs)


def resolve_hub_base_model(
    model_id: str,
    revision: str | None,
    token: str | None,
    out_dir: Path,
    api=None,
    timeout: float = 30.0,
    retries: int = 4,
    patterns: list[str] | None = None,
) -> tuple[Path, str]:
    """Download safetensors weights + tokenizer of `model_id` at `revision`; return (folder, commit sha).

    The commit sha is the asset's data version: a new upstream revision makes training stale.
    Only safetensors are fetched (no pickle), and no remote code. A gated repository without a token
    fails with one line naming HF_TOKEN (core/sources/hub.py). snapshot_download writes each file to an
    `.incomplete` name and renames it when done, and skips finished files, so a retry resumes.
    The tokenizer gets Llama 3.1's reserved pad token (the hub's has none; core/training/llama31.py).
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError

    from llama_sft_dagster.core.sources.hub import HubTokenMissing, gated_message, hub_retrying, resolve_model

    sha = resolve_model(model_id, revision, token, api=api, timeout=timeout, retries=retries)
    try:
        path = hub_retrying(
            lambda: snapshot_download(
                model_id,
                revision=sha,
                token=token,
                local_dir=Path(out_dir),
                etag_timeout=timeout,
                allow_patterns=patterns or ["*.json", "*.safetensors", "tokenizer*", "*.jinja"],
            ),
            f"hub model {model_id}",
            retries,
        )
    except GatedRepoError as exc:
        raise HubTokenMissing(gated_message(model_id, bool(token))) from exc
    set_pad_token(Path(path))
    return Path(path), sha


def set_pad_token(model_dir: Path) -> None:
    """Give a saved tokenizer without a pad token Llama 3.1's reserved one (see llama31.ensure_pad_token)."""
    from transformers import AutoTokenizer

    from llama_sft_dagster.core.training.llama31 import ensure_pad_token

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        ensure_pad_token(tokenizer)
        tokenizer.save_pretrained(model_dir)
