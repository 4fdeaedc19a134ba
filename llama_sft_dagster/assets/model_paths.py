"""Where the base tokenizer's and base model's files live, for the assets that read them (token filter and
sft_dataset read the tokenizer; training, merge and evaluation the weights)."""

from pathlib import Path

from llama_sft_dagster.resources.artifacts import ArtifactStore

BASE_TOKENIZER_ASSET = "base_tokenizer"
BASE_MODEL_ASSET = "base_model"
SOURCE_FILE = "source.json"  # beside the tokenizer folder: model_id and the revision it was fetched at


def base_tokenizer_dir(artifacts: ArtifactStore) -> Path:
    """Folder with the tokenizer files (and, for a hub model, its config.json), a save_pretrained layout."""
    return artifacts.path(BASE_TOKENIZER_ASSET, "tokenizer")


def base_model_dir(artifacts: ArtifactStore) -> Path:
    """Folder with the base model's config, safetensors weights and tokenizer (a save_pretrained layout)."""
    return artifacts.path(BASE_MODEL_ASSET, "model")


def load_base_tokenizer(artifacts: ArtifactStore, reader: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(artifacts.upstream(BASE_TOKENIZER_ASSET, reader, "tokenizer"))
