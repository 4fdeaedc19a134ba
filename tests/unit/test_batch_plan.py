"""The batch planner (core/training/batch_plan.py) and the refusals before any download (GpuResource).

Pure: the memory model against the peaks measured on an H200 (README "Run the real job on a GPU"), the seed's
global batch on any process count, pins, the 24/80/141 GB choices. With a tiny model: a planned micro-batch x
accumulation trains to the same losses as the configured 8 x 4.
"""

from __future__ import annotations

import dataclasses
import math

import pytest

from llama_sft_dagster.config.training import LORA_TARGETS, SftDatasetConfig, TrainConfig
from llama_sft_dagster.core.training.batch_plan import (
    BITEXT_HEAD_256,
    BatchPlanError,
    Lengths,
    ModelShape,
    Pins,
    peak_gib,
    plan_cpu,
    plan_gpu,
    usable_gib,
)
from llama_sft_dagster.core.training.device import MachineFacts, TrainingRefused, plan_device
from llama_sft_dagster.core.training.llama31 import LLAMA31_8B_INSTRUCT
from llama_sft_dagster.resources.gpu import GpuResource

SHAPE = ModelShape.from_config(LLAMA31_8B_INSTRUCT)
LORA = SHAPE.lora_params(64, LORA_TARGETS)
H200, H100, CARD_24 = 139.8, 79.1, 23.6  # GiB torch reports for a 141 GB, an 80 GB and a 24 GB card


def test_shape_counts_the_8b_parameters_and_the_seeds_lora():
    assert SHAPE.params() == 8_030_261_248  # Llama-3.1-8B's published count
    assert LORA == 167_772_160  # r64 on the seven projections of 32 layers


@pytest.mark.parametrize(
    ("micro", "checkpointing", "liger", "padding_free", "measured"),
    [
        (8, True, False, True, 18.8),
        (8, True, False, False, 19.1),
        (8, False, False, True, 38.7),
        (32, False, False, True, 106.0),
        (32, False, True, True, 92.3),
    ],
)
def test_memory_model_matches_the_measured_h200_peaks(micro, checkpointing, liger, padding_free, measured):
    tokens = BITEXT_HEAD_256.tokens(micro, padding_free)
    assert math.isclose(peak_gib(SHAPE, LORA, tokens, checkpointing, liger), measured, rel_tol=0.08)


def test_micro_batch_64_without_checkpointing_does_not_fit_as_measured():
    assert peak_gib(SHAPE, LORA, BITEXT_HEAD_256.tokens(64), False, False) > usable_gib(H200)


@pytest.mark.parametrize("card", [CARD_24, H100, H200])
@pytest.mark.parametrize("liger", [False, True])
def test_the_plan_keeps_the_seeds_global_batch_and_fits(card, liger):
    plan = plan_gpu(card, SHAPE, LORA, BITEXT_HEAD_256, 32, liger_available=liger)
    assert plan.global_batch == 32 and plan.micro_batch * plan.accumulation == 32
    assert plan.predicted_peak_gib <= plan.usable_gib < card
    assert plan.liger_kernel is liger  # Liger only helps (less memory, faster) where it is installed
    assert "predicted peak" in plan.reason


def test_choices_for_24_80_and_141_gb_cards():
    small, mid, big = (plan_gpu(c, SHAPE, LORA, BITEXT_HEAD_256, 32) for c in (CARD_24, H100, H200))
    assert small.gradient_checkpointing and small.micro_batch >= 8  # the seed's checkpointing is what fits 24 GB
    assert not mid.gradient_checkpointing and mid.predicted_peak_gib < 80 and mid.accumulation == 2
    assert not big.gradient_checkpointing and big.micro_batch == 32 and big.accumulation == 1


@pytest.mark.parametrize("processes", [1, 2, 4, 8, 16, 32])
def test_global_batch_is_32_on_any_process_count_that_divides_it(processes):
    for plan in (
        plan_gpu(H200, SHAPE, LORA, BITEXT_HEAD_256, 32, processes),
        plan_cpu(8, 32, processes),
    ):
        assert plan.global_batch == 32 and plan.processes == processes


@pytest.mark.parametrize("processes", [3, 5, 64])
def test_a_process_count_that_cannot_keep_the_global_batch_is_refused(processes):
    with pytest.raises(BatchPlanError, match=f"cannot be split evenly over {processes} processes"):
        plan_gpu(H200, SHAPE, LORA, BITEXT_HEAD_256, 32, processes)
    with pytest.raises(BatchPlanError, match="gpu resource `processes`"):
        plan_cpu(8, 32, processes)


def test_cpu_keeps_the_configured_split_and_halves_it_over_two_processes():
    one, two = plan_cpu(8, 8, 1), plan_cpu(8, 8, 2)  # the demo profile: 8 x 1
    assert (one.micro_batch, one.accumulation) == (8, 1) and (two.micro_batch, two.accumulation) == (4, 1)
    seed = plan_cpu(8, 32, 2)
    assert (seed.micro_batch, seed.accumulation, seed.global_batch) == (8, 2, 32)


def test_pins_are_kept_and_a_pin_that_cannot_work_is_an_error():
    pinned = plan_gpu(H200, SHAPE, LORA, BITEXT_HEAD_256, 32, pins=Pins(4, True, None))
    assert (pinned.micro_batch, pinned.accumulation, pinned.gradient_checkpointing) == (4, 8, True)
    assert "pinned: micro_batch, gradient_checkpointing" in pinned.reason
    with pytest.raises(BatchPlanError, match="micro_batch_size=5 does not divide"):
        plan_gpu(H200, SHAPE, LORA, BITEXT_HEAD_256, 32, pins=Pins(micro_batch=5))
    with pytest.raises(BatchPlanError, match="no batch plan fits"):
        plan_gpu(CARD_24, SHAPE, LORA, BITEXT_HEAD_256, 32, pins=Pins(32, False, False))


def test_a_gpu_too_small_for_any_plan_is_refused_naming_the_memory():
    with pytest.raises(BatchPlanError, match=r"no batch plan fits this GPU: .*needs ~1[0-9]\.\d GiB, 15.6 GiB card"):
        plan_gpu(15.6, SHAPE, LORA, Lengths.of([512], 512), 32)


# --- refusals before any download (GpuResource.refuse_unworkable) --------------------------------------


def _cuda(memory_gib: float, bf16: bool = True):
    return plan_device("cuda", MachineFacts(True, bf16, False, "Some GPU", memory_gib), attn_implementation="sdpa")


def test_full_profile_refuses_cpu_and_fp32_in_one_line_naming_the_setting():
    from llama_sft_dagster.config.profiles import profile_defaults

    full = profile_defaults(GpuResource, "full")
    assert full["allow_cpu_training"] is False and full["allow_fp32_training"] is False
    gpu = GpuResource(allow_cpu_training=False, allow_fp32_training=False)
    with pytest.raises(TrainingRefused, match="allow_cpu_training=True") as cpu:
        gpu.refuse_unworkable(plan_device("auto", MachineFacts(False)))
    with pytest.raises(TrainingRefused, match="in float32 on Some GPU.*allow_fp32_training=True") as fp32:
        gpu.refuse_unworkable(_cuda(80, bf16=False))
    assert "\n" not in str(cpu.value) + str(fp32.value)
    # asked for explicitly: no refusal
    GpuResource(allow_cpu_training=True).refuse_unworkable(plan_device("auto", MachineFacts(False)))
    GpuResource(allow_fp32_training=True).refuse_unworkable(_cuda(80, bf16=False))


def test_a_gpu_that_cannot_hold_the_model_is_refused_and_a_24_gb_card_is_not():
    gpu, lora = GpuResource(allow_cpu_training=False, allow_fp32_training=False), (64, LORA_TARGETS)
    with pytest.raises(TrainingRefused, match="Some GPU: no batch plan fits this GPU"):
        gpu.refuse_unworkable(_cuda(15.6), LLAMA31_8B_INSTRUCT, lora)
    gpu.refuse_unworkable(_cuda(CARD_24), LLAMA31_8B_INSTRUCT, lora)


# --- the planned split trains like the configured one (tiny demo model, CPU) ---------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from llama_sft_dagster.core.demo.corpus import generate_bitext_rows
    from llama_sft_dagster.core.training.base_model import build_demo_base_model
    from llama_sft_dagster.core.training.chat_format import build_rows

    t = generate_bitext_rows(seed=13, n_rows=300)
    pairs = [(i, r) for i, r in zip(t.column("instruction").to_pylist(), t.column("response").to_pylist()) if r][:72]
    base = build_demo_base_model((f"{i} {r}" for i, r in pairs), tmp_path_factory.mktemp("base"), vocab_size=700)
    rows = build_rows([p[0] for p in pairs], [p[1] for p in pairs])
    return base, rows[:64], rows[64:]


@pytest.mark.slow
def test_planned_micro_batch_and_accumulation_train_to_the_seeds_8_x_4_losses(demo, tmp_path):
    """2 optimizer steps of 32 samples: 8 x 4 (the seed) against 2 x 16 (a plan's split of the same global batch).
    The Trainer normalises each micro-batch's loss by the whole step's supervised tokens, so the two runs sum the
    same per-token losses in another order: float32 rounding only. lora_dropout=0: dropout masks are drawn per
    tensor shape, so 2-sample and 8-sample micro-batches would drop different activations."""
    from llama_sft_dagster.core.training.trainer import setup

    base, train_rows, eval_rows = demo
    config = TrainConfig(  # no evaluation or checkpoint inside the 2 steps: only the training losses are compared
        max_steps=2,
        eval_steps=10,
        save_steps=10,
        load_best_model_at_end=False,
        logging_steps=1,
        gradient_accumulation_steps=4,
        lora_dropout=0.0,
    )
    cpu = plan_device("cpu", MachineFacts(False))
    logs = {}
    for name, batch in (("seed", None), ("planned", plan_cpu(8, 32, 1, pins=Pins(micro_batch=2)))):
        data = SftDatasetConfig().model_dump()
        trainer = setup(base, train_rows, eval_rows, config, data, cpu, tmp_path / name, batch=batch)
        split = (trainer.args.per_device_train_batch_size, trainer.args.gradient_accumulation_steps)
        assert split == ((8, 4) if batch is None else (2, 16))
        trainer.train()
        logs[name] = [(h["loss"], h["grad_norm"]) for h in trainer.state.log_history if "loss" in h]
        assert trainer.state.global_step == 2
    assert len(logs["seed"]) == len(logs["planned"]) == 2
    for (la, ga), (lb, gb) in zip(logs["seed"], logs["planned"], strict=True):
        assert math.isclose(la, lb, rel_tol=1e-4) and math.isclose(ga, gb, rel_tol=1e-3)


def test_the_kernel_the_planner_trains_with_is_one_that_keeps_padding_free_samples_apart():
    """The plan's kernel is the device plan's; tests/unit/test_padding_free.py proves per-token losses of padding-free
    rows equal the padded run's (and a crossed-attention control differs) for each of BOUNDARY_AWARE_ATTENTION."""
    from llama_sft_dagster.core.training.trainer import BOUNDARY_AWARE_ATTENTION, batching

    for plan in (plan_device("cpu", MachineFacts(False)), _cuda(H200)):
        kernel = plan_gpu(H200, SHAPE, LORA, BITEXT_HEAD_256, 32, attn=plan.attn_implementation).attn_implementation
        assert kernel in BOUNDARY_AWARE_ATTENTION
        assert batching(TrainConfig(), dataclasses.replace(plan, attn_implementation=kernel))["padding_free"]
