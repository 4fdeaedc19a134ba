"""Model group: the base model every later stage reads (tokenizer for the token filter, weights for training)."""

import json
import time

import dagster as dg

from llama_sft_dagster.assets._versioned import versioned_asset
from llama_sft_dagster.assets.model_paths import BASE_MODEL_ASSET, base_model_dir
from llama_sft_dagster.config.training import BaseModelConfig
from llama_sft_dagster.core.data.storage import atomic_dir, read_parquet
from llama_sft_dagster.core.versions import folder_version, stamp_version
from llama_sft_dagster.resources.artifacts import ArtifactStore
from llama_sft_dagster.resources.hub import HuggingFaceHub


@versioned_asset(
    group_name="model",
    kinds={"pytorch", "safetensors"},
    deps=["raw_pairs"],
    description="Base model + tokenizer (save_pretrained folder): the tiny demo Llama with a BPE "
    "tokenizer trained on raw_pairs and a short causal-LM pretraining on their text (standing in for a "
    "real base model's), a tiny Llama-3.1-shaped model with the real Llama-3.1 tokenizer (rehearsal), or "
    "a hub snapshot of meta-llama/Llama-3.1-8B-Instruct at a resolved revision.",
)
def base_model(
    context: dg.AssetExecutionContext, config: BaseModelConfig, artifacts: ArtifactStore, hub: HuggingFaceHub
) -> dg.MaterializeResult:
    from llama_sft_dagster.config.profiles import repo_path
    from llama_sft_dagster.core.training import base_model as core
    from llama_sft_dagster.core.training.llama31 import build_rehearsal_base_model

    artifacts.claim(BASE_MODEL_ASSET)  # one writer at a time, also for the hub download
    out_dir = base_model_dir(artifacts)
    if config.model_id == "rehearsal":
        artifacts.asset_dir(BASE_MODEL_ASSET)
        with atomic_dir(out_dir) as tmp:
            build_rehearsal_base_model(repo_path(config.tokenizer_dir), tmp, config.demo_seed)
        version = folder_version(out_dir)
        extra = {}
    elif config.model_id == "demo":
        pairs = read_parquet(artifacts.upstream("raw_pairs", "base_model"), columns=["instruction", "response"])
        texts = (
            f"{i}\n{r}"
            for i, r in zip(pairs.column("instruction").to_pylist(), pairs.column("response").to_pylist(), strict=True)
        )
        artifacts.asset_dir(BASE_MODEL_ASSET)
        started = time.monotonic()
        with atomic_dir(out_dir) as tmp:
            core.build_demo_base_model(texts, tmp, config.demo_seed, config.demo_vocab_size, config.pretrain_kwargs())
        version = folder_version(out_dir)
        pretraining = out_dir / core.PRETRAINING_FILE
        extra = {
            **(json.loads(pretraining.read_text()) if pretraining.exists() else {}),
            "build_seconds": round(time.monotonic() - started, 1),
        }
    else:
        _, version = core.resolve_hub_base_model(
            config.model_id, config.revision, hub.token, out_dir, timeout=hub.timeout_s, retries=hub.retries
        )
        extra = {}
    stamp_version(out_dir, version)  # train_adapter reads it instead of hashing the weights again
    context.log.info(f"base model {config.model_id} ready at {out_dir} (version {version})")
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(out_dir)),
            "model_id": config.model_id,
            "version": version,
            **extra,
        },
        data_version=dg.DataVersion(version),
    )
