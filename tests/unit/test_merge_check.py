"""Layer-wise merge check (what fits a 24 GiB host for 8B) and the choice between it and the logits check."""

import pytest

from llama_sft_dagster.core.training import merge
from llama_sft_dagster.core.training.merge_check import model_bytes, plan_merge_check, weight_check
from support.adapters import make_adapter, tiny_base

GIB = 1024**3


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_base(tmp_path_factory.mktemp("base"))  # ~650 KB of weights


def test_weight_check_passes_on_a_real_merge_and_fails_on_a_wrong_one(base, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    adapter = make_adapter(base, tmp_path / "adapter", zero_b=False)
    merged = merge.merge_lora(adapter, tmp_path / "merged")
    good = weight_check(adapter, merged, base)
    assert good["weights_passed"] and good["weights_modules_checked"] == 3 * 2  # 3 projections x 2 layers
    assert good["weights_modules_changed"] == 6 and good["weights_max_error_over_bound"] <= 1.0
    broken = tmp_path / "broken"
    broken.mkdir()
    tensors = {k: v.clone() for k, v in load_file(merged / "model.safetensors").items()}
    key = "model.layers.1.mlp.down_proj.weight"
    tensors[key] = tensors[key] + 1e-3 * torch.randn_like(tensors[key])  # one projection off
    save_file(tensors, broken / "model.safetensors", metadata={"format": "pt"})
    bad = weight_check(adapter, broken, base)
    assert not bad["weights_passed"] and bad["weights_max_error_over_bound"] > 1.0


def test_weight_check_fails_when_the_merge_changed_nothing(base, tmp_path):
    adapter = make_adapter(base, tmp_path / "adapter", zero_b=False)
    r = weight_check(adapter, base, base)  # "merged" = the base itself
    assert not r["weights_passed"] and r["weights_modules_changed"] == 0


def test_plan_runs_logits_only_when_the_model_fits():
    eight_b_bf16 = 8_030_261_248 * 2
    assert plan_merge_check("auto", eight_b_bf16, 40 * GIB)["logits"]
    tight = plan_merge_check("auto", eight_b_bf16, 16 * GIB)  # a 24 GiB host with other work running
    assert tight["weights"] and not tight["logits"] and "layer-wise" in tight["reason"]
    assert plan_merge_check("weights", 1, 40 * GIB)["logits"] is False
    assert plan_merge_check("logits", eight_b_bf16, 1 * GIB)["logits"] is True
    with pytest.raises(ValueError, match="mode"):
        plan_merge_check("both", 1, 1)


def test_model_bytes_reads_the_parameter_count_from_the_headers(base):
    from transformers import AutoModelForCausalLM

    n = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(base).parameters())
    assert model_bytes(base, "bfloat16") == 2 * n and model_bytes(base, "float32") == 4 * n
