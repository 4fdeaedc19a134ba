"""Is the merged model the base model plus the adapter? Two checks, chosen by the memory they need.

- `weight_check` (layer-wise, any host): for every LoRA-wrapped projection, the merged weight must
  equal base + (alpha/r) * B @ A up to the roundings of the merge in the merged dtype, and one must differ
  from the base. It reads one projection at a time from the safetensors files (the largest Llama-3.1-8B
  projection, 14336 x 4096, is 0.23 GB in float32, and three copies are held), so it fits next to
  nothing else on a 24 GiB host.
- `merge.probe_logits` (whole model): merged vs adapter-on-base logits on probe prompts. It holds one
  full model at a time in the probe dtype, ~1.2x the model's size (Llama-3.1-8B in bf16: ~19 GB).

`plan_merge_check` runs the weight check always and the logits comparison when it fits in the RAM
available (mode "auto"), or as told ("logits" / "weights").
"""

from __future__ import annotations

import json
from pathlib import Path

BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
LOGITS_OVERHEAD = 1.2  # model + activations + logits of a few short probes, measured on the demo model: < 1.1x


def safetensors_keys(folder: Path) -> dict[str, Path]:
    """Tensor name -> the .safetensors file of `folder` holding it (sharded or not)."""
    from safetensors import safe_open

    out = {}
    for file in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(file, framework="pt") as fh:
            out.update({k: file for k in fh.keys()})
    return out


def model_bytes(folder: Path, dtype: str) -> int:
    """Parameters of the model in `folder` times the size of `dtype` (from the safetensors headers)."""
    from safetensors import safe_open

    n = 0
    for file in Path(folder).glob("*.safetensors"):
        with safe_open(file, framework="pt") as fh:
            for k in fh.keys():
                shape = fh.get_slice(k).get_shape()
                count = 1
                for d in shape:
                    count *= d
                n += count
    return n * BYTES[dtype]


def plan_merge_check(mode: str, model_size_bytes: int, available_bytes: int) -> dict:
    """{"weights": True, "logits": bool, "reason": str}: what the merge check runs."""
    if mode not in ("auto", "logits", "weights"):
        raise ValueError(f"mode {mode!r}: choose 'auto', 'logits' or 'weights'")
    need = int(model_size_bytes * LOGITS_OVERHEAD)
    gib = 1024**3
    if mode == "weights":
        return {"weights": True, "logits": False, "reason": "mode=weights"}
    if mode == "logits" or need <= available_bytes:
        return {
            "weights": True,
            "logits": True,
            "reason": f"mode={mode}: logits need ~{need / gib:.1f} GiB, {available_bytes / gib:.1f} GiB available",
        }
    return {
        "weights": True,
        "logits": False,
        "reason": f"logits comparison needs ~{need / gib:.1f} GiB, only {available_bytes / gib:.1f} GiB available: "
        "layer-wise weight check only",
    }


def weight_check(adapter_dir: Path, merged_dir: Path, base_dir: Path) -> dict:
    """Layer-wise merge check (see the module docstring); returns metrics and `passed`."""
    from safetensors import safe_open

    config = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
    r, alpha = config["r"], config["lora_alpha"]
    scale = alpha / (r**0.5) if config.get("use_rslora") else alpha / r
    adapter = safetensors_keys(adapter_dir)
    merged, base = safetensors_keys(merged_dir), safetensors_keys(base_dir)
    modules = sorted(k[: -len(".lora_A.weight")] for k in adapter if k.endswith(".lora_A.weight"))
    worst_rel, changed, missing = 0.0, 0, []
    merged_dtype = None

    def tensor(files: dict[str, Path], key: str):
        with safe_open(files[key], framework="pt") as fh:
            return fh.get_tensor(key)

    for module in modules:
        name = module.removeprefix("base_model.model.") + ".weight"
        if name not in merged or name not in base:
            missing.append(name)
            continue
        a, b = tensor(adapter, module + ".lora_A.weight").float(), tensor(adapter, module + ".lora_B.weight").float()
        m = tensor(merged, name)
        merged_dtype = str(m.dtype).removeprefix("torch.")
        w = tensor(base, name).float()
        delta = scale * (b @ a)
        expected = w + delta
        m = m.float()
        # PEFT loads A and B in the base's dtype, then rounds the delta and the sum to it: with u the unit
        # roundoff (bf16 2**-8) |error| <= u (|w| + 3 |delta| + 3 |scale| |B| |A|), first order. fp32 differs
        # by summation order only, bounded loosely with u = 2**-20. A wrong merge (scale, missing or
        # transposed module) is off by about |delta| itself, far above this.
        u = {"bfloat16": 2.0**-8, "float16": 2.0**-11}.get(merged_dtype, 2.0**-20)
        tol = u * (w.abs() + 3 * delta.abs() + 3 * abs(scale) * (b.abs() @ a.abs())) + 1e-30
        worst_rel = max(worst_rel, float(((m - expected).abs() / tol).max()))
        changed += int(bool((m != w).any()))
        del a, b, m, w, delta, expected, tol
    passed = bool(modules) and not missing and worst_rel <= 1.0 and changed > 0
    return {
        "weights_modules_checked": len(modules) - len(missing),
        "weights_missing": len(missing),
        "weights_max_error_over_bound": round(worst_rel, 4),
        "weights_modules_changed": changed,
        "weights_merged_dtype": merged_dtype or "",
        "weights_passed": passed,
    }
