"""Merge a LoRA adapter into its base model on CPU, like litgpt `scripts/merge_lora.py`.

The base model's identity comes from the adapter's own `adapter_config.json`
(`base_model_name_or_path`, `revision`), so an adapter can only be merged into the model it was
trained on. Runs on CPU explicitly: the 8B base in bf16 needs ~16 GB of RAM and no GPU.
Output: `save_pretrained` folder (safetensors) + tokenizer + `merge_info.json`. Returns early when
`out_dir` already holds the merge of this exact adapter.

    python -c "from llama_sft_dagster.core.training.merge import merge_lora; merge_lora('adapter', 'merged')"
"""

from __future__ import annotations

import json
from pathlib import Path

from llama_sft_dagster.core.data.storage import atomic_dir
from llama_sft_dagster.core.versions import folder_version

MERGE_INFO = "merge_info.json"


def adapter_digest(adapter_dir: Path) -> str:
    return folder_version(adapter_dir, ("adapter_config.json", "adapter_model.safetensors"))


def base_identity(adapter_dir: Path) -> tuple[str, str | None]:
    config = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
    base = config.get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{adapter_dir}/adapter_config.json has no base_model_name_or_path")
    return base, config.get("revision")


def already_merged(adapter_dir: Path, out_dir: Path) -> bool:
    info = Path(out_dir) / MERGE_INFO
    return info.exists() and json.loads(info.read_text()).get("adapter_digest") == adapter_digest(adapter_dir)


def merge_lora(
    adapter_dir: str | Path,
    out_dir: str | Path,
    dtype: str | None = None,
    trust_remote_code: bool = False,
    token: str | None = None,
) -> Path:
    """Merge `adapter_dir` into its base on CPU and save to `out_dir`; no-op if already merged.

    `dtype` defaults to the base config's dtype (bf16 for Llama-3.1, fp32 for the demo model)."""
    import torch
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    if already_merged(adapter_dir, out_dir):
        return out_dir
    base, revision = base_identity(adapter_dir)
    if dtype is None:
        dtype = str(AutoConfig.from_pretrained(base, revision=revision, token=token).dtype or "float32").removeprefix(
            "torch."
        )
    model = AutoModelForCausalLM.from_pretrained(
        base,
        revision=revision,
        token=token,
        dtype=getattr(torch, dtype),
        device_map={"": "cpu"},
        trust_remote_code=trust_remote_code,
    )
    merged = PeftModel.from_pretrained(model, adapter_dir, device_map={"": "cpu"}).merge_and_unload()
    with atomic_dir(out_dir) as tmp:  # a kill mid-save keeps the previous merged model whole
        merged.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(adapter_dir).save_pretrained(tmp)
        (tmp / MERGE_INFO).write_text(
            json.dumps(
                {"adapter_digest": adapter_digest(adapter_dir), "base": base, "revision": revision, "dtype": dtype},
                indent=2,
            )
        )
    return out_dir


def probe_logits(adapter_dir: Path, merged_dir: Path, prompts: list[str], dtype: str = "float32") -> dict:
    """Comparison on probe prompts: max |merged - adapter| and max |merged - base|
    over all logits (CPU). The merge is right when the first is ~0 and the second is not."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base, revision = base_identity(adapter_dir)
    tok = AutoTokenizer.from_pretrained(merged_dir)
    kw = dict(dtype=getattr(torch, dtype), device_map={"": "cpu"})
    enc = tok(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        merged = AutoModelForCausalLM.from_pretrained(merged_dir, **kw).eval()
        m = merged(**enc).logits
        del merged
        base_model = AutoModelForCausalLM.from_pretrained(base, revision=revision, **kw).eval()
        b = base_model(**enc).logits
        peft = PeftModel.from_pretrained(base_model, adapter_dir).eval()
        a = peft(**enc).logits
    keep = enc["attention_mask"].bool()
    return {
        "max_abs_diff_merged_vs_adapter": float((m - a).abs()[keep].max()),
        "max_abs_diff_merged_vs_base": float((m - b).abs()[keep].max()),
        "max_abs_logit": float(m.abs()[keep].max()),
        "probe_prompts": len(prompts),
        "dtype": dtype,
    }
