"""LoRA SFT of the base model, shaped like litgpt `finetune/lora.py` (setup / fit / save) and TRL
`scripts/sft.py` (SFTTrainer(..., peft_config=...), train(), save_model()).

    trainer = setup(base_dir, train_rows, eval_rows, config, data, plan, output_dir, batch=batch)
    result, resumed_from = fit(trainer, output_dir, fingerprint)
    save_best_adapter(trainer, adapter_dir); summary(trainer, result)

`config` is the TrainConfig itself (config/training.py; TRL's sft.py hands its dataclasses to the trainer the
same way), `data` the sft_dataset format (max_length, completion_only_loss, assistant_only_loss), `plan` the
DevicePlan (core/training/device.py), `batch` the BatchPlan (core/training/batch_plan.py: micro-batch x
accumulation for the config's global batch, checkpointing, Liger; default: the config's own split).
Every SFTConfig field is set by name from those, so a new TrainConfig field reaches the trainer only
where it is mapped here. Weights are saved as safetensors
only (transformers 5 and PEFT write nothing else). Heavy imports stay inside the functions.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_sft_dagster.core.training.batch_plan import BatchPlan
from llama_sft_dagster.core.training.device import DevicePlan

RUN_CONFIG = "run_config.json"  # fingerprint of the run that owns the checkpoints folder


def lora_config(config):
    """PEFT's LoraConfig of a TrainConfig (seed: r64, alpha 128, dropout 0.05, the seven projections)."""
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.lora_target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


def configured_batch(config, plan: DevicePlan) -> BatchPlan:
    """The config's own split on one process (what runs when no batch plan is given: tests, benchmarks)."""
    micro, accum = config.per_device_train_batch_size, config.gradient_accumulation_steps
    return BatchPlan(
        micro, accum, 1, plan.gradient_checkpointing, plan.attn_implementation, False, None, None, "configured"
    )


# Attention kernels that keep the samples of a padding-free row apart. flash_attention_2 gets the sample
# boundaries as cu_seq_lens from TRL's collator (varlen kernel). sdpa and eager get a block-diagonal causal
# mask that transformers 5.24 builds from position_ids when a batch has no attention_mask and no cache
# (masking_utils.find_packed_sequence_indices; SFTTrainer.compute_loss passes use_cache=False).
# tests/unit/test_padding_free.py checks per-sample losses equal the padded run's with sdpa and eager. Any other
# kernel (flex, remote code) is not known to, so it trains padded: one row would attend across samples.
BOUNDARY_AWARE_ATTENTION = ("flash_attention_2", "sdpa", "eager")


def batching(config, plan: DevicePlan) -> dict:
    """How micro-batches are built: {"padding_free", "packing", "padded_reason"}.

    padding_free: TRL's collator concatenates the batch's samples into one row (no padding); the samples
    per step stay those of the padded run. packing: TRL best-fit-decreasing packing into max_length rows
    (padding-free too, but more samples per step). Packing on a kernel that cannot see boundaries is an
    error; padding_free falls back to padded batches there, with the reason."""
    padding_free, packing = config.padding_free, config.packing
    attn = plan.attn_implementation
    if attn in BOUNDARY_AWARE_ATTENTION:
        return {"padding_free": padding_free or packing, "packing": packing, "padded_reason": None}
    if packing:
        raise ValueError(
            f"packing=True needs an attention kernel that separates packed samples "
            f"({', '.join(BOUNDARY_AWARE_ATTENTION)}); attn_implementation={attn!r} would attend "
            "across them"
        )
    reason = f"attn_implementation={attn!r} does not separate samples in one row" if padding_free else None
    return {"padding_free": False, "packing": False, "padded_reason": reason}


def build_sft_config(
    output_dir: Path,
    config,
    data: Mapping,
    plan: DevicePlan,
    report_to: Sequence[str] = ("none",),
    batch: BatchPlan | None = None,
):
    """SFTConfig of the run. `padding_free` stays False here even when batches are padding-free: TRL 1.16
    refuses padding_free=True with max_length set and no packing (it would not truncate), so max_length
    truncation runs as in the padded run and `use_padding_free_collator` swaps the collator afterwards."""
    from trl import SFTConfig

    batch = batch or configured_batch(config, plan)
    return SFTConfig(
        output_dir=str(output_dir),
        # how the run is computed (the batch plan): micro-batch x accumulation x processes = the global batch
        per_device_train_batch_size=batch.micro_batch,
        gradient_accumulation_steps=batch.accumulation,
        gradient_checkpointing=batch.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if batch.gradient_checkpointing else None,
        use_liger_kernel=batch.liger_kernel,
        # what the run computes (TrainConfig, the seed's values)
        per_device_eval_batch_size=config.per_device_eval_batch_size,
        num_train_epochs=config.num_train_epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=config.warmup_steps,
        max_grad_norm=config.max_grad_norm,
        weight_decay=config.weight_decay,
        logging_steps=config.logging_steps,
        eval_steps=config.eval_steps,
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        load_best_model_at_end=config.load_best_model_at_end,
        metric_for_best_model=config.metric_for_best_model,
        seed=config.seed,
        data_seed=config.seed,
        greater_is_better=False,
        eval_strategy="steps",
        save_strategy="steps",
        logging_first_step=True,
        bf16=plan.bf16,
        tf32=plan.tf32 if plan.device == "cuda" else None,
        optim=plan.optim,
        use_cpu=plan.device == "cpu",
        max_length=data["max_length"],
        completion_only_loss=data["completion_only_loss"],
        assistant_only_loss=data["assistant_only_loss"],
        # "bfd" keeps sample boundaries and truncates at max_length; TRL makes packed batches padding-free
        packing=batching(config, plan)["packing"],
        packing_strategy="bfd",
        padding_free=False,
        trust_remote_code=config.trust_remote_code,
        report_to=list(report_to),
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


def use_padding_free_collator(trainer):
    """Replace the trainer's padded collator with TRL's padding-free one (same pad token and multiple)."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    padded = trainer.data_collator
    trainer.data_collator = DataCollatorForLanguageModeling(
        pad_token_id=padded.pad_token_id, padding_free=True, pad_to_multiple_of=padded.pad_to_multiple_of
    )
    trainer.padding_free = True
    return trainer


def load_tokenizer(base_dir: Path, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    from llama_sft_dagster.core.training.llama31 import ensure_pad_token

    tokenizer = AutoTokenizer.from_pretrained(base_dir, trust_remote_code=trust_remote_code)
    ensure_pad_token(tokenizer)  # else TRL pads with eos, <|eot_id|> for Llama 3.1 (core/training/llama31.py)
    return tokenizer


def load_base(base_dir: Path, plan: DevicePlan, trust_remote_code: bool = False):
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(base_dir, trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(
        base_dir,
        dtype=getattr(torch, plan.dtype),
        attn_implementation=plan.attn_implementation,
        trust_remote_code=trust_remote_code,
    )
    return model, tokenizer


def setup(
    base_dir: Path,
    train_rows: list[dict],
    eval_rows: list[dict],
    config,
    data: Mapping,
    plan: DevicePlan,
    output_dir: Path,
    report_to: Sequence[str] = ("none",),
    monitor=None,
    model=None,
    batch: BatchPlan | None = None,
):
    """The SFTTrainer that trains (and, in the masking check, only prepares) the data. `model`: an already
    built base model to use instead of loading base_dir's weights (benchmarks/gpu_check.py: random 8B weights
    built on the GPU; the tokenizer still comes from base_dir)."""
    from datasets import Dataset
    from trl import SFTTrainer

    class MonitoredSFTTrainer(SFTTrainer):
        # the monitor counts tokens of every training micro-batch (see core/training/monitoring.py)
        def training_step(self, model, inputs, num_items_in_batch=None):
            if monitor is not None:
                monitor.observe_batch(inputs)
            return super().training_step(model, inputs, num_items_in_batch)

    if model is None:
        model, tokenizer = load_base(base_dir, plan, config.trust_remote_code)
    else:
        tokenizer = load_tokenizer(base_dir, config.trust_remote_code)
    args = build_sft_config(output_dir, config, data, plan, report_to, batch)
    # rows carrying sft_dataset's input_ids (core/training/tokenized.py) are "processed" to TRL: not tokenized again
    trainer = MonitoredSFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
        processing_class=tokenizer,
        peft_config=lora_config(config),
        callbacks=[monitor] if monitor is not None else None,
    )
    plan_batches = batching(config, plan)
    if plan_batches["padding_free"] and not plan_batches["packing"]:
        use_padding_free_collator(trainer)
    elif plan_batches["padded_reason"]:
        import logging

        logging.getLogger(__name__).warning("padding_free=True but training padded: %s", plan_batches["padded_reason"])
    return trainer


@dataclass
class PreparedData:
    """What the masking check reads from a trainer (verify_trainer_masking), without the model."""

    processing_class: Any
    args: Any
    train_dataset: Any
    eval_dataset: Any
    data_collator: Any


def prepare_data(
    base_dir: Path,
    train_rows: list[dict],
    eval_rows: list[dict],
    config,
    data: Mapping,
    plan: DevicePlan,
    output_dir: Path,
) -> PreparedData:
    """The processed datasets and the collator `setup`'s SFTTrainer would build, without loading the base model.

    The datasets go through TRL 1.16's own `SFTTrainer._prepare_dataset` (labels from the masks, truncation at
    max_length, packing, shuffle), which reads only the tokenizer, the chat template and completion_only_loss
    from the trainer; the collator is built with SFTTrainer.__init__'s arguments and `setup`'s padding-free swap.
    tests/unit/test_tokenized.py checks both against a real SFTTrainer's."""
    from types import SimpleNamespace

    from datasets import Dataset
    from trl import SFTTrainer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from llama_sft_dagster.core.training.tokenized import training_chat_template

    tokenizer = load_tokenizer(base_dir, config.trust_remote_code)
    args = build_sft_config(output_dir, config, data, plan)
    train = Dataset.from_list(train_rows)
    completion_only = (
        "prompt" in train.column_names and "completion" in train.column_names
        if args.completion_only_loss is None
        else args.completion_only_loss
    )
    trainer_view = SimpleNamespace(
        _tokenizer=tokenizer,
        completion_only_loss=completion_only,
        chat_template=training_chat_template(tokenizer, args.assistant_only_loss),
    )

    def prepare(dataset, packing: bool, name: str):
        return SFTTrainer._prepare_dataset(trainer_view, dataset, tokenizer, args, packing, None, name)

    eval_packing = args.packing if args.eval_packing is None else args.eval_packing
    tokenizer.pad_token = args.pad_token or tokenizer.pad_token or tokenizer.eos_token  # as SFTTrainer.__init__
    collator = DataCollatorForLanguageModeling(
        pad_token_id=tokenizer.pad_token_id,
        pad_to_multiple_of=args.pad_to_multiple_of,
        padding_free=args.padding_free or (args.packing and args.packing_strategy in {"bfd", "bfd_split"}),
    )
    prepared = PreparedData(
        tokenizer,
        args,
        prepare(train, args.packing, "train"),
        prepare(Dataset.from_list(eval_rows), eval_packing, "eval") if eval_rows else None,
        collator,
    )
    plan_batches = batching(config, plan)
    return (
        use_padding_free_collator(prepared)
        if plan_batches["padding_free"] and not plan_batches["packing"]
        else prepared
    )


def attention_kernel(model) -> str:
    """The attention implementation the loaded model runs (what the plan asked for, as transformers applied it)."""
    config = model.get_base_model().config if hasattr(model, "get_base_model") else model.config
    return str(getattr(config, "_attn_implementation", None) or "unknown")


def resume_checkpoint(output_dir: Path, run_fingerprint: str) -> str | None:
    """The latest checkpoint of an interrupted run with the same fingerprint, else None.

    A folder left by another config, or by a run that finished, is cleared so stale optimizer state
    can never be resumed into a different run."""
    output_dir = Path(output_dir)
    marker = output_dir / RUN_CONFIG
    owner = json.loads(marker.read_text()) if marker.exists() else {}
    if owner.get("fingerprint") == run_fingerprint and not owner.get("completed"):
        last = last_complete_checkpoint(output_dir)
        if last:
            return last
    if output_dir.exists():
        shutil.rmtree(output_dir)
    output_dir.mkdir(parents=True)
    marker.write_text(json.dumps({"fingerprint": run_fingerprint, "completed": False}))
    return None


def last_complete_checkpoint(output_dir: Path) -> str | None:
    """The highest checkpoint-N holding trainer_state.json; later, half-written ones are removed.

    The Trainer writes a checkpoint in place, trainer_state.json last (transformers 5.24
    `Trainer._save_checkpoint`), and `train(resume_from_checkpoint=...)` fails on a folder without it,
    so a kill mid-save would otherwise block every later run."""
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    steps = sorted(
        (int(p.name.rsplit("-", 1)[1]), p)
        for p in Path(output_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*")
        if p.is_dir() and p.name.rsplit("-", 1)[1].isdigit()
    )
    for _, folder in reversed(steps):
        if (folder / "trainer_state.json").is_file():
            return str(folder)
        shutil.rmtree(folder)
    return None


def main_decides(trainer, decide):
    """Run `decide()` on the main process only and give every rank its answer (plain call on one process).

    Folder decisions (clear or resume the checkpoints) must be taken once: two ranks each clearing the
    folder would race, and all ranks must resume from the same checkpoint."""
    answer = [decide() if trainer.is_world_process_zero() else None]
    if trainer.args.world_size > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(answer, from_process=0)
    return answer[0]


def fit(trainer, output_dir: Path, run_fingerprint: str):
    """Train, resuming an interrupted run of the same config (same total steps); returns (result, resumed_from).

    Under torchrun every rank calls this; rank 0 alone decides which checkpoint (if any) to resume and
    marks the folder completed."""
    from llama_sft_dagster.core.data.storage import ArtifactPathError, write_failure

    try:
        resumed_from = main_decides(trainer, lambda: resume_checkpoint(output_dir, run_fingerprint))
        result = trainer.train(resume_from_checkpoint=resumed_from)
        if trainer.is_world_process_zero():
            (Path(output_dir) / RUN_CONFIG).write_text(json.dumps({"fingerprint": run_fingerprint, "completed": True}))
    except Exception as exc:  # a full disk mid-checkpoint surfaces as torch/safetensors errors without the path
        reason = write_failure(exc, Path(output_dir))
        if reason is None:
            raise
        raise ArtifactPathError(
            f"could not write checkpoints to {str(output_dir)!r}: {reason}; the previous "
            "adapter is kept, and a rerun resumes from the last complete checkpoint"
        ) from exc
    return result, resumed_from


def save_best_adapter(trainer, adapter_dir: Path) -> Path:
    """Write the adapter now in the model (the best one, with load_best_model_at_end) atomically.

    Every rank calls this: under FSDP the adapter's full state dict is gathered from all ranks (a
    collective); rank 0 alone writes, and the others wait until the folder is in place."""
    from llama_sft_dagster.core.data.storage import atomic_dir

    state_dict = None
    if getattr(trainer, "is_fsdp_enabled", False):
        state_dict = trainer.accelerator.get_state_dict(trainer.model)
    if trainer.is_world_process_zero():
        model = trainer.accelerator.unwrap_model(trainer.model)
        # atomic_dir swaps the new folder in by rename: a kill mid-save leaves the previous adapter whole
        with atomic_dir(Path(adapter_dir)) as tmp:
            model.save_pretrained(tmp, state_dict=state_dict)
            trainer.processing_class.save_pretrained(tmp)
    trainer.accelerator.wait_for_everyone()
    return Path(adapter_dir)


def summary(trainer, result) -> dict:
    """The seed's summary scalars from the trainer's state and the train() result."""
    history = trainer.state.log_history
    losses = [(h["step"], h["loss"]) for h in history if "loss" in h]
    evals = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    trainable, total = trainer.model.get_nb_trainable_parameters()
    m = result.metrics
    out = {
        "train_loss_mean": float(result.training_loss),
        "first_train_loss": losses[0][1] if losses else None,
        "final_train_loss": losses[-1][1] if losses else None,
        "best_eval_loss": trainer.state.best_metric,
        "best_eval_step": trainer.state.best_global_step,
        "final_eval_loss": evals[-1][1] if evals else None,
        "global_steps": trainer.state.global_step,
        "train_runtime_s": m.get("train_runtime"),
        "train_steps_per_second": m.get("train_steps_per_second"),
        "train_samples_per_second": m.get("train_samples_per_second"),
        "total_flos": float(trainer.state.total_flos),
        "trainable_params": int(trainable),
        "total_params": int(total),
        "trainable_percent": round(100.0 * trainable / total, 4),
        "train_samples": len(trainer.train_dataset),
        "validation_samples": len(trainer.eval_dataset) if trainer.eval_dataset is not None else 0,
    }
    return {k: v for k, v in out.items() if v is not None}
