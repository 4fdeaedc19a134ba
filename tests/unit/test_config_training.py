"""Training config: seed values in the full profile, conflicting settings rejected naming the field."""

import pytest
from pydantic import ValidationError

from llama_sft_dagster.config.profiles import config_for, profile_defaults
from llama_sft_dagster.config.training import SftDatasetConfig, TokenizerConfig, TrainConfig
from llama_sft_dagster.resources.gpu import GpuResource


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"save_steps": 15, "eval_steps": 10}, "save_steps"),
        ({"max_steps": 0}, "max_steps"),
        ({"metric_for_best_model": "eval_accuracy"}, "metric_for_best_model"),
        ({"lora_target_modules": ["q_proj", "lm_head"]}, "lora_target_modules"),
    ],
)
def test_train_config_conflicts_name_the_field(kwargs, field):
    with pytest.raises(ValidationError, match=field):
        TrainConfig(**kwargs)


def test_save_steps_free_without_load_best():
    assert TrainConfig(save_steps=15, eval_steps=10, load_best_model_at_end=False).save_steps == 15


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"dataset_format": "messages", "completion_only_loss": True}, "completion_only_loss"),
        ({"completion_only_loss": False}, "completion_only_loss"),
        ({"assistant_only_loss": True}, "assistant_only_loss"),
    ],
)
def test_sft_dataset_config_rejects_masks_that_do_nothing(kwargs, field):
    with pytest.raises(ValidationError, match=field):
        SftDatasetConfig(**kwargs)


def test_messages_with_assistant_only_loss_is_allowed():
    config = SftDatasetConfig(dataset_format="messages", completion_only_loss=False, assistant_only_loss=True)
    assert (config.dataset_format, config.completion_only_loss, config.assistant_only_loss) == (
        "messages",
        False,
        True,
    )


def test_full_profile_defaults_are_the_seeds():
    full = config_for("full", TrainConfig)
    c = full()
    assert (c.per_device_train_batch_size, c.gradient_accumulation_steps, c.per_device_eval_batch_size) == (8, 4, 16)
    assert (c.num_train_epochs, c.max_steps, c.learning_rate, c.lr_scheduler_type, c.warmup_steps) == (
        3,
        -1,
        2e-4,
        "cosine",
        0.03,
    )
    assert (c.eval_steps, c.save_steps, c.save_total_limit, c.max_grad_norm) == (200, 200, 3, 1.0)
    assert (c.lora_r, c.lora_alpha, c.lora_dropout) == (64, 128, 0.05) and len(c.lora_target_modules) == 7
    assert config_for("full", SftDatasetConfig)().max_length == 512
    # a profile's class is the config class with other defaults: validation and methods are the same
    assert issubclass(full, TrainConfig) and full.__name__ == "TrainConfig" and full is config_for("full", TrainConfig)
    with pytest.raises(ValidationError, match="save_steps"):
        full(save_steps=150)


def test_each_profile_has_its_defaults_in_one_interpreter():
    assert TrainConfig().learning_rate == 1e-3  # the demo profile, active in the tests
    assert config_for("demo", TrainConfig) is TrainConfig
    assert [config_for(p, TrainConfig)().max_steps for p in ("demo", "rehearsal", "full")] == [40, 3, -1]
    assert config_for("rehearsal", TokenizerConfig)().model_id == "rehearsal"
    assert profile_defaults(GpuResource, "full") == {
        "allow_cpu_training": False,
        "allow_fp32_training": False,
    }
    with pytest.raises(ValueError, match="'fast' is not a profile"):
        config_for("fast", TrainConfig)


def test_sft_config_is_explicit_and_warmup_is_a_ratio(tmp_path):
    """SFTConfig defaults differ from TrainingArguments (bf16, checkpointing): check what we build."""
    from llama_sft_dagster.core.training.device import MachineFacts, plan_device
    from llama_sft_dagster.core.training.trainer import build_sft_config

    c = TrainConfig()
    args = build_sft_config(tmp_path, c, SftDatasetConfig().model_dump(), plan_device("auto", MachineFacts(False)))
    assert not args.bf16 and not args.gradient_checkpointing and args.use_cpu and args.optim == "adamw_torch"
    assert args.completion_only_loss and not args.assistant_only_loss and args.max_length == 512
    assert args.load_best_model_at_end and args.metric_for_best_model == "eval_loss" and not args.greater_is_better
    assert args.get_warmup_steps(1000) == 30  # 0.03 of the total steps (transformers 5: float < 1 is a ratio)


def test_rank_sweep_config_has_no_rank_to_overwrite():
    """The partition sets lora_r and alpha_per_rank sets lora_alpha: the sweep's config does not offer either
    (a value typed there would be overwritten silently), and an attempt names the field."""
    import pydantic

    from llama_sft_dagster.assets.rank_sweep import rank_config
    from llama_sft_dagster.config.evaluation import RankSweepConfig

    assert not {"lora_r", "lora_alpha"} & set(RankSweepConfig.model_fields)
    with pytest.raises(pydantic.ValidationError, match="lora_r"):
        RankSweepConfig(lora_r=8)
    trained = rank_config(RankSweepConfig(alpha_per_rank=1.5, learning_rate=1e-4), 16)
    assert (trained.lora_r, trained.lora_alpha, trained.learning_rate) == (16, 24, 1e-4)
