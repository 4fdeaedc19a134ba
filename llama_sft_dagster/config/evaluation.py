"""Typed config of the evaluation group: adapter_evaluation, champion_model, lora_rank_sweep."""

import dagster as dg
from pydantic import ConfigDict, Field, create_model

from llama_sft_dagster.config.profiles import profiled
from llama_sft_dagster.config.training import TrainConfig

SWEEP_RANKS = ("8", "16", "32", "64", "128")  # the seed's r=64 with two ranks either side (alpha = 2r, as the seed)


class EvaluationConfig(dg.Config):
    per_device_eval_batch_size: int = Field(16, gt=0, description="Rows scored per forward pass (seed eval batch: 16).")
    # rehearsal: a few rows of each kind, because every scored token costs a 128,256-wide logit row on the CPU
    # (with the full profile's numbers the rehearsal's evaluation took 186 s of its ~460, before scoring went to
    # the reply positions only: benchmarks/eval_scoring.py)
    validation_max_rows: int = profiled(
        demo=0,
        full=0,
        rehearsal=16,
        ge=0,
        description="Validation rows scored, evenly spaced over the split (0 = all).",
    )
    held_out_max_pairs: int = profiled(
        demo=160,
        full=2000,
        rehearsal=16,
        ge=0,
        description="Held-out MultiWOZ dev/test pairs scored (stable hash-ordered subset).",
    )
    samples_per_group: int = profiled(
        demo=2, full=2, rehearsal=1, ge=0, description="Generation samples per Bitext intent and per MultiWOZ domain."
    )
    sample_seed: int = Field(0, description="Seed of the sample pick: the same prompts for every adapter.")
    max_new_tokens: int = profiled(
        demo=48,
        full=256,
        rehearsal=8,
        gt=0,
        description="Greedy generation budget per sample (stops earlier at <|eot_id|>).",
    )


class ChampionConfig(dg.Config):
    registered_model_name: str = Field("llama-sft-merged", description="MLflow registered model of the merged models.")
    min_improvement: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="Relative loss improvement over the champion "
        "needed to take its place (0: any improvement on the same evaluation rows).",
    )


# train_adapter's fields but the two the partition sets: lora_r is the partition's rank and lora_alpha is
# alpha_per_rank * r, so neither appears in the launchpad to be overwritten silently
SWEEP_SET_FIELDS = ("lora_r", "lora_alpha")
_SWEEP_FIELDS = {n: (f.annotation, f) for n, f in TrainConfig.model_fields.items() if n not in SWEEP_SET_FIELDS}


class _StrictConfig(dg.Config):
    model_config = ConfigDict(extra="forbid")  # RankSweepConfig(lora_r=8) fails naming the field


RankSweepConfig = create_model(
    "RankSweepConfig",
    __base__=_StrictConfig,
    __doc__="train_adapter's config without lora_r (the partition's rank) and lora_alpha (alpha_per_rank * r).",
    **{
        **_SWEEP_FIELDS,
        "alpha_per_rank": (
            float,
            Field(2.0, gt=0, description="lora_alpha / lora_r of every rank (seed: 128 / 64 = 2)."),
        ),
        "max_steps": (
            int,
            profiled(
                demo=20,
                full=-1,
                description="Optimizer steps of every rank (one budget for all); demo: 20, to fit a CPU.",
            ),
        ),
    },
)
