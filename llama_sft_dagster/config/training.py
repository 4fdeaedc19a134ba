"""Typed config of the model and training groups: `base_tokenizer` (which model), `base_model` (the demo
model's pretraining), `sft_dataset` (format, loss masking, max length), `train_adapter` (LoRA + trainer
hyperparameters), the merge check. Field names are TRL's / PEFT's.

Defaults: `full` = the seed's arguments; `demo` = the same code with small numbers for 2 CPU cores.
Conflicting settings are rejected with a message naming the field (like litgpt's args.py).
"""

from typing import Literal

import dagster as dg
from pydantic import Field, model_validator

from llama_sft_dagster.config.profiles import profiled
from llama_sft_dagster.core.training.chat_format import SYSTEM_PROMPT

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class SftDatasetConfig(dg.Config):
    dataset_format: Literal["prompt_completion", "messages"] = Field(
        "prompt_completion",
        description="TRL row format: conversational prompt/completion (works with the stock "
        "Llama-3.1 template) or one `messages` list (needs {% generation %} markers and assistant_only_loss).",
    )
    completion_only_loss: bool = Field(True, description="Supervise only the completion (prompt/completion rows).")
    assistant_only_loss: bool = Field(False, description="Supervise only {% generation %} spans (messages rows).")
    max_length: int = Field(512, gt=0, description="Trainer max sequence length in tokens (seed: 512).")
    filter_on_templated_length: bool = Field(
        True,
        description="Drop samples whose chat-templated length exceeds max_length (counted, stored in "
        "rejects.parquet with reason templated_too_long). False: the trainer truncates them at max_length, as the "
        "seed did silently; sft_dataset then counts them ({split}_truncated_samples) and the length check warns.",
    )
    system_prompt: str = Field(SYSTEM_PROMPT, description="System message of every sample (seed's, verbatim).")
    # multi-turn (core/training/chat_format.py): the walkthrough's single user->assistant pair by default
    context: Literal["none", "earlier_turns"] = Field(
        "none",
        description="'none': each sample is one user turn -> its reply (the seed's). 'earlier_turns': a dialogue's "
        "earlier turns precede it as chat context (loss on that reply only), oldest dropped first to fit "
        "context_max_tokens.",
    )
    context_max_tokens: int = Field(
        512, gt=0, description="Templated-token budget of a sample with context (earlier_turns); whole turns are cut."
    )
    data_system_message: Literal["replace", "keep"] = Field(
        "replace",
        description="A system message in the data (earlier_turns): 'replace' it by system_prompt, or 'keep' it.",
    )
    loss_turns: Literal["last", "all"] = Field(
        "last",
        description="Assistant turns of a multi-turn sample (earlier_turns) that carry the loss: 'last' (the "
        "pair's reply, the default) or 'all' (every reply kept in its context too, each with its <|eot_id|>).",
    )

    @model_validator(mode="after")
    def _loss_mask_is_real(self):
        if self.dataset_format == "messages" and self.completion_only_loss and not self.assistant_only_loss:
            raise ValueError(
                "completion_only_loss=True does nothing on dataset_format='messages' rows (there is no "
                "completion mask, every token is supervised): use assistant_only_loss=True or "
                "dataset_format='prompt_completion'"
            )
        if self.dataset_format == "prompt_completion" and not self.completion_only_loss:
            raise ValueError(
                "completion_only_loss=False with dataset_format='prompt_completion' supervises the "
                "system prompt and instruction too; set completion_only_loss=True"
            )
        if self.assistant_only_loss and self.dataset_format != "messages":
            raise ValueError("assistant_only_loss=True needs dataset_format='messages'")
        if self.loss_turns == "all" and self.context != "earlier_turns":
            raise ValueError(
                "loss_turns='all' needs context='earlier_turns': a sample without context has one assistant turn"
            )
        return self


class TrainConfig(dg.Config):
    lora_r: int = Field(64, gt=0, description="LoRA rank (seed: 64).")
    lora_alpha: int = Field(128, gt=0, description="LoRA alpha (seed: 128, scale alpha/r = 2).")
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0, description="LoRA dropout (seed: 0.05).")
    lora_target_modules: list[str] = Field(
        default_factory=lambda: list(LORA_TARGETS),
        description="Projections wrapped by LoRA (seed: q/k/v/o/gate/up/down).",
    )
    # the global batch is per_device_train_batch_size x gradient_accumulation_steps (seed: 8 x 4 = 32 samples per
    # optimizer step) on any machine: the batch planner (gpu resource, core/training/batch_plan.py) may split it
    # into another micro-batch x accumulation x processes, never change it
    per_device_train_batch_size: int = Field(
        8,
        gt=0,
        description="Micro-batch size of the seed's one-GPU run (seed: 8); global batch = this x "
        "gradient_accumulation_steps, kept on any process count (the gpu resource's batch plan splits it).",
    )
    gradient_accumulation_steps: int = profiled(
        demo=1, full=4, gt=0, description="Micro-batches per optimizer step of the seed's one-GPU run (seed: 4)."
    )
    per_device_eval_batch_size: int = Field(16, gt=0, description="Eval batch size (seed: 16).")
    eval_max_samples: int = profiled(
        demo=0,
        full=0,
        rehearsal=16,
        ge=0,
        description="Evaluate on this many validation samples, evenly spaced over the split (0 = all, the seed). "
        "Rehearsal: 16 (one eval batch), because each evaluated token costs a 128,256-wide logit row on the CPU.",
    )
    num_train_epochs: float = Field(3.0, gt=0, description="Epochs (seed: 3); ignored when max_steps > 0.")
    max_steps: int = profiled(
        demo=40,
        full=-1,
        rehearsal=3,
        description="Optimizer steps; -1 = use num_train_epochs (seed). Demo: 40 steps (~1 min on 2 "
        "cores); rehearsal: 3 of the seed's 32 samples, each evaluated and saved (the full code "
        "path with a best-checkpoint choice, not a training run; after warmup's lr-0 step, 2 "
        "updates move the adapter enough for merged_model_logits to tell it from the base).",
    )
    # demo 1e-3: on the pretrained demo base, 5e-3 (r=64, alpha=128, 1 warmup step) tripled the train loss
    # in the first steps and 10 steps did not recover it (tuned worse than base); 1e-3 for 40 steps: 1.18 -> 1.07
    learning_rate: float = profiled(
        demo=1e-3, full=2e-4, gt=0, description="Peak LR (seed: 2e-4; demo 1e-3, measured on the pretrained demo base)."
    )
    lr_scheduler_type: str = Field("cosine", description="LR schedule (seed: cosine).")
    warmup_steps: float = Field(
        0.03,
        ge=0,
        description="Warmup; < 1 is a ratio of total steps (transformers 5 "
        "TrainingArguments.get_warmup_steps), seed: 3% warmup.",
    )
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping (seed: 1.0).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay (TrainingArguments default 0).")
    logging_steps: int = profiled(demo=2, full=10, rehearsal=1, gt=0, description="Log train loss every N steps.")
    eval_steps: int = profiled(demo=10, full=200, rehearsal=1, gt=0, description="Evaluate every N steps (seed: 200).")
    save_steps: int = profiled(
        demo=10, full=200, rehearsal=1, gt=0, description="Checkpoint every N steps (seed: 200)."
    )
    save_total_limit: int = Field(3, gt=0, description="Checkpoints kept (seed: 3; the best one is always kept).")
    load_best_model_at_end: bool = Field(True, description="Save the adapter of the lowest eval_loss (seed: on).")
    metric_for_best_model: str = Field("eval_loss", description="Metric choosing the best checkpoint (seed).")
    padding_free: bool = Field(
        True,
        description="Concatenate each micro-batch's samples into one row without padding (TRL's padding-free "
        "collator): same samples per step and the same loss as padded batches, no compute spent on padding (demo "
        "corpus: 22% of padded positions, benchmarks/training_throughput.py). Only on attention kernels that "
        "separate the samples by position_ids (flash_attention_2, sdpa, eager: every kernel the device plan "
        "picks); others train padded with a warning.",
    )
    packing: bool = Field(
        False,
        description="TRL best-fit-decreasing packing (packing_strategy='bfd') of several samples into each "
        "max_length row, padding-free. Off: a micro-batch then holds ~max_length/sample_length times more samples, "
        "which changes the seed's samples per optimizer step (8 x 4) and so its learning-rate schedule.",
    )
    seed: int = Field(42, description="Trainer seed (data order, LoRA init).")
    trust_remote_code: bool = Field(False, description="Run hub model code; Llama needs none.")
    monitor_log_every: int = profiled(demo=2, full=10, rehearsal=1, gt=0, description="Monitor metrics every N steps.")
    monitor_deep_every: int = profiled(
        demo=10, full=200, rehearsal=1, gt=0, description="LoRA drift / effective-rank metrics every N steps."
    )
    progress_every: int = profiled(
        demo=10,
        full=50,
        rehearsal=1,
        gt=0,
        description="A progress line (step/total, loss, tokens/s, ETA) in the run log every N steps.",
    )

    @model_validator(mode="after")
    def _consistent(self):
        if self.load_best_model_at_end and self.save_steps % self.eval_steps:
            raise ValueError(
                f"save_steps={self.save_steps} must be a multiple of eval_steps={self.eval_steps} "
                "when load_best_model_at_end=True (a checkpoint must exist at every evaluation)"
            )
        if self.max_steps == 0 or (self.max_steps < 0 and self.max_steps != -1):
            raise ValueError(f"max_steps={self.max_steps}: use a positive number, or -1 for num_train_epochs")
        if self.metric_for_best_model != "eval_loss" and self.load_best_model_at_end:
            raise ValueError(f"metric_for_best_model={self.metric_for_best_model!r}: only 'eval_loss' is computed")
        bad = sorted(set(self.lora_target_modules) - set(LORA_TARGETS))
        if bad:
            raise ValueError(f"lora_target_modules has unknown projections {bad}; choose from {LORA_TARGETS}")
        return self


class TokenizerConfig(dg.Config):
    """Which model the pipeline tunes. The tokenizer is fetched first and alone (a few MB): the data stages need
    only it, and `base_model` downloads the weights at the revision this asset resolved."""

    model_id: str = profiled(
        demo="demo",
        full="meta-llama/Llama-3.1-8B-Instruct",
        rehearsal="rehearsal",
        description="Hub model id, 'demo' for the tiny Llama built locally, or 'rehearsal' for a "
        "tiny random-init model with Llama-3.1-8B-Instruct's config and its real tokenizer.",
    )
    tokenizer_dir: str = Field(
        "../shared/data/llama31_tokenizer",
        description="model_id='rehearsal': folder of the Llama-3.1 tokenizer and chat template; "
        "a relative path is relative to the repository root.",
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit); None = main.")
    demo_vocab_size: int = Field(4096, gt=256, description="BPE vocabulary of the demo tokenizer.")


class BaseModelConfig(dg.Config):
    """The weights: model_id and revision come from `base_tokenizer` (TokenizerConfig)."""

    demo_seed: int = Field(0, description="Seed of the demo model's random init and pretraining order.")
    # 64 blocks of 128 tokens: on 2 cores a 64x128 step took 1.6 s against 2.1 s for 8x256 (the tiny model's
    # step is overhead-bound), so 100 steps see 819K tokens (1.3 epochs) instead of 205K. Measured on the demo
    # corpus: 8x256 at 3e-3 left greedy replies looping "3.\n3.\n"; 64x128 at 3e-3 reached pretraining loss 1.62,
    # at 1e-2 0.70 (base -> tuned reply loss 1.30 -> 0.85, every group better) with readable corpus-like replies
    demo_pretrain_steps: int = Field(
        100,
        ge=0,
        description="Causal-LM pretraining steps of the demo model on the "
        "raw_pairs text (0: random init, which no fine-tune can be judged against).",
    )
    demo_pretrain_batch_size: int = Field(64, gt=0, description="Blocks per pretraining step.")
    demo_pretrain_seq_len: int = Field(128, ge=2, description="Tokens per pretraining block.")
    demo_pretrain_learning_rate: float = Field(1e-2, gt=0, description="Peak AdamW learning rate of the pretraining.")

    def pretrain_kwargs(self) -> dict | None:
        if not self.demo_pretrain_steps:
            return None
        return {
            "steps": self.demo_pretrain_steps,
            "batch_size": self.demo_pretrain_batch_size,
            "seq_len": self.demo_pretrain_seq_len,
            "learning_rate": self.demo_pretrain_learning_rate,
        }


class MergeCheckConfig(dg.Config):
    probe_dtype: str = profiled(
        demo="float32",
        full="bfloat16",
        description="dtype of the logit comparison (fp32 bound 1e-4; bf16 bound is relative).",
    )
    probes: int = Field(4, gt=0, description="Validation prompts used as probes.")
    mode: str = Field(
        "auto",
        description="'auto': the layer-wise weight check always, the whole-model logits "
        "comparison too when it fits in the RAM available (8B in bf16: ~19 GB); 'logits' or "
        "'weights' to force one (core/training/merge_check.py).",
    )
