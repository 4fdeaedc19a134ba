"""A tiny demo base model and LoRA adapters on it, for the merge, merge-check and disk-full tests."""

from pathlib import Path

ORDER_TEXTS = [f"my order {i} has not arrived, please help me track it" for i in range(200)]


def tiny_base(folder: Path) -> Path:
    from llama_sft_dagster.core.training.base_model import build_demo_base_model

    return build_demo_base_model(ORDER_TEXTS, folder, vocab_size=500)


def make_adapter(
    base_dir: Path,
    out: Path,
    zero_b: bool = False,
    seed: int = 0,
    targets: tuple[str, ...] = ("q_proj", "v_proj", "down_proj"),
) -> Path:
    """A saved LoRA adapter on `base_dir`; lora_B random (so it changes the model) unless `zero_b`."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base_dir),
        LoraConfig(r=4, lora_alpha=8, target_modules=list(targets), task_type="CAUSAL_LM"),
    )
    if not zero_b:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.5)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(out)
    return out
