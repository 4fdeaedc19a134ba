"""Where the base model's files live, for the assets that read them (token filter, training, merge)."""

from pathlib import Path

from llama_sft_dagster.resources.artifacts import ArtifactStore

BASE_MODEL_ASSET = "base_model"


def base_model_dir(artifacts: ArtifactStore) -> Path:
    """Folder with the base model's config, safetensors weights and tokenizer (a save_pretrained layout)."""
    return artifacts.path(BASE_MODEL_ASSET, "model")


def load_base_tokenizer(artifacts: ArtifactStore):
    from transformers import AutoTokenizer

    artifacts.upstream(BASE_MODEL_ASSET, "token_limit_filtered", "model/tokenizer_config.json")
    return AutoTokenizer.from_pretrained(base_model_dir(artifacts))
