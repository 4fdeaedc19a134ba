"""CPU merge: logits agree with the adapter, differ from the base, early return, base read from the adapter."""

import json

import pytest

from llama_sft_dagster.core.training import merge
from support.adapters import make_adapter, tiny_base


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_base(tmp_path_factory.mktemp("base"))  # ~650 KB of weights


def test_merge_matches_adapter_and_returns_early(base, tmp_path):
    adapter = make_adapter(base, tmp_path / "adapter", zero_b=False)
    assert merge.base_identity(adapter)[0] == str(base)
    out = merge.merge_lora(adapter, tmp_path / "merged")
    assert (out / "model.safetensors").exists() and not list(out.glob("*.bin"))
    assert json.loads((out / merge.MERGE_INFO).read_text())["adapter_digest"] == merge.adapter_digest(adapter)
    r = merge.probe_logits(adapter, out, ["my order has not arrived", "help me track it"])
    assert r["max_abs_diff_merged_vs_adapter"] <= 1e-4 < r["max_abs_diff_merged_vs_base"]
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert merge.merge_lora(adapter, out) == out and (out / "model.safetensors").stat().st_mtime_ns == stamp


def test_noop_adapter_does_not_differ_from_base(base, tmp_path):
    """PEFT's init (B = 0) changes nothing: the check's 'differs from base' half must see that."""
    adapter = make_adapter(base, tmp_path / "zero", zero_b=True)
    r = merge.probe_logits(adapter, merge.merge_lora(adapter, tmp_path / "merged0"), ["my order"])
    assert r["max_abs_diff_merged_vs_base"] <= 1e-4


def test_adapter_without_base_identity_is_rejected(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 4}))
    with pytest.raises(ValueError, match="base_model_name_or_path"):
        merge.base_identity(tmp_path)
