"""Model group: `base_tokenizer` (a few MB: all the data stages and sft_dataset read) and `base_model` (the
weights, read only by training, the merge and evaluation; for the full profile a 16 GB gated download).

The hub model depends on no data: a change of raw data re-runs neither. The demo's tokenizer and tiny model
are trained on the demo corpus (they stand in for a real model's pretraining), so in the demo profile both
also depend on `raw_pairs`.
"""

import json
import time

import dagster as dg

from llama_sft_dagster.assets._versioned import versioned_asset
from llama_sft_dagster.assets.model_paths import (
    BASE_MODEL_ASSET,
    BASE_TOKENIZER_ASSET,
    SOURCE_FILE,
    base_model_dir,
    base_tokenizer_dir,
)
from llama_sft_dagster.config.training import BaseModelConfig, TokenizerConfig
from llama_sft_dagster.core.data.storage import atomic_dir, read_parquet
from llama_sft_dagster.core.versions import folder_version, stamp_version
from llama_sft_dagster.resources.artifacts import ArtifactStore
from llama_sft_dagster.resources.gpu import GpuResource
from llama_sft_dagster.resources.hub import HuggingFaceHub

LOCAL_MODELS = ("demo", "rehearsal")  # built here; any other model_id is a hub model


def _demo_deps(*always: str):
    return lambda profile: [*always, *(["raw_pairs"] if profile == "demo" else [])]


def _corpus_texts(artifacts: ArtifactStore, reader: str):
    pairs = read_parquet(artifacts.upstream("raw_pairs", reader), columns=["instruction", "response"])
    return [
        f"{i}\n{r}"
        for i, r in zip(pairs.column("instruction").to_pylist(), pairs.column("response").to_pylist(), strict=True)
    ]


def refuse_unworkable(context, gpu: GpuResource, model_config: dict | None = None) -> None:
    """Stop a hub model's run before its downloads when this machine cannot train it (CPU, fp32, too little GPU
    memory for any plan; GpuResource.refuse_unworkable). Not when every step runs in its own pod (SFT_EXECUTOR=k8s):
    this step's pod is not the training pod, which checks again before training."""
    from llama_sft_dagster.config.k8s import step_executor
    from llama_sft_dagster.config.training import TrainConfig
    from llama_sft_dagster.core.training.device import TrainingRefused

    if step_executor() is not None:
        return
    lora = TrainConfig()  # the profile's default LoRA: what train_adapter adds unless its config says otherwise
    try:
        gpu.refuse_unworkable(gpu.plan(context.log), model_config, (lora.lora_r, lora.lora_target_modules))
    except TrainingRefused as exc:
        raise dg.Failure(str(exc), allow_retries=False) from exc


@versioned_asset(
    deps_for=_demo_deps(),
    group_name="model",
    kinds={"tokenizers"},
    description="The base model's tokenizer alone (save_pretrained folder + source.json with model_id and the "
    "resolved revision): a BPE trained on raw_pairs (demo), the local Llama-3.1 tokenizer (rehearsal), or the "
    "tokenizer files of meta-llama/Llama-3.1-8B-Instruct at a resolved hub revision (a few MB, no weights).",
)
def base_tokenizer(
    context: dg.AssetExecutionContext,
    config: TokenizerConfig,
    artifacts: ArtifactStore,
    hub: HuggingFaceHub,
    gpu: GpuResource,
) -> dg.MaterializeResult:
    from llama_sft_dagster.config.profiles import repo_path
    from llama_sft_dagster.core.training import base_model as core
    from llama_sft_dagster.core.training.llama31 import save_rehearsal_tokenizer

    texts = _corpus_texts(artifacts, BASE_TOKENIZER_ASSET) if config.model_id == "demo" else None
    artifacts.asset_dir(BASE_TOKENIZER_ASSET)  # this run is its only writer
    out_dir, revision = base_tokenizer_dir(artifacts), None
    if config.model_id in LOCAL_MODELS:
        with atomic_dir(out_dir) as tmp:
            if texts is None:
                save_rehearsal_tokenizer(repo_path(config.tokenizer_dir), tmp)
            else:
                core.build_demo_tokenizer(texts, tmp, config.demo_vocab_size)
        version = folder_version(out_dir)
    else:
        refuse_unworkable(context, gpu)  # CPU or fp32: before the first byte is downloaded
        _, revision = core.resolve_hub_tokenizer(
            config.model_id, config.revision, hub.token, out_dir, timeout=hub.timeout_s, retries=hub.retries
        )
        refuse_unworkable(context, gpu, json.loads((out_dir / "config.json").read_text()))  # GPU memory
        version = revision
    stamp_version(out_dir, version)
    source = {"model_id": config.model_id, "revision": revision}
    artifacts.path(BASE_TOKENIZER_ASSET, SOURCE_FILE).write_text(json.dumps(source))
    context.log.info(f"tokenizer of {config.model_id} ready at {out_dir} (version {version})")
    return dg.MaterializeResult(
        metadata={"path": dg.MetadataValue.path(str(out_dir)), **source, "version": version},
        data_version=dg.DataVersion(version),
    )


@versioned_asset(
    deps_for=_demo_deps(BASE_TOKENIZER_ASSET),
    group_name="model",
    kinds={"pytorch", "safetensors"},
    description="Base model weights + tokenizer (save_pretrained folder) of base_tokenizer's model: the tiny "
    "demo Llama with a short causal-LM pretraining on the raw_pairs text (standing in for a real base model's), "
    "a tiny Llama-3.1-shaped model (rehearsal), or the hub snapshot at the revision base_tokenizer resolved.",
)
def base_model(
    context: dg.AssetExecutionContext,
    config: BaseModelConfig,
    artifacts: ArtifactStore,
    hub: HuggingFaceHub,
    gpu: GpuResource,
) -> dg.MaterializeResult:
    from llama_sft_dagster.core.training import base_model as core
    from llama_sft_dagster.core.training.llama31 import build_rehearsal_base_model

    tokenizer_dir = artifacts.upstream(BASE_TOKENIZER_ASSET, BASE_MODEL_ASSET, "tokenizer")
    source = json.loads(artifacts.path(BASE_TOKENIZER_ASSET, SOURCE_FILE).read_text())
    artifacts.claim(BASE_MODEL_ASSET)  # one writer at a time, also for the hub download
    out_dir, extra = base_model_dir(artifacts), {}
    if source["model_id"] in LOCAL_MODELS:
        texts = _corpus_texts(artifacts, BASE_MODEL_ASSET) if source["model_id"] == "demo" else None
        artifacts.asset_dir(BASE_MODEL_ASSET)
        started = time.monotonic()
        with atomic_dir(out_dir) as tmp:
            if texts is None:
                build_rehearsal_base_model(tokenizer_dir, tmp, config.demo_seed)
            else:
                core.build_demo_model(tokenizer_dir, texts, tmp, config.demo_seed, config.pretrain_kwargs())
        version = folder_version(out_dir)
        pretraining = out_dir / core.PRETRAINING_FILE
        if pretraining.exists():
            extra = {**json.loads(pretraining.read_text()), "build_seconds": round(time.monotonic() - started, 1)}
    else:  # the same commit as the tokenizer the data stages counted with
        refuse_unworkable(context, gpu, json.loads((tokenizer_dir / "config.json").read_text()))  # before 16 GB
        _, version = core.resolve_hub_base_model(
            source["model_id"], source["revision"], hub.token, out_dir, timeout=hub.timeout_s, retries=hub.retries
        )
    stamp_version(out_dir, version)  # train_adapter reads it instead of hashing the weights again
    context.log.info(f"base model {source['model_id']} ready at {out_dir} (version {version})")
    return dg.MaterializeResult(
        metadata={"path": dg.MetadataValue.path(str(out_dir)), **source, "version": version, **extra},
        data_version=dg.DataVersion(version),
    )
