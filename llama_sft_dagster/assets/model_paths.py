"""Where the files the assets share live: the base tokenizer's and base model's folders (token filter and
sft_dataset read the tokenizer; training, merge and evaluation the weights) and the names of the files one asset
writes for another (each named here once)."""

from pathlib import Path

from llama_sft_dagster.resources.artifacts import ArtifactStore

BASE_TOKENIZER_ASSET = "base_tokenizer"
BASE_MODEL_ASSET = "base_model"
FORMAT_FILE = "format.json"  # sft_dataset's settings (template, max_length) that training, checks and evaluation share
# the training run's summary beside its adapter (the MLflow run id; adapter_evaluation and the rank sweep read it)
RUN_FILE = "run.json"
SOURCE_FILE = "source.json"  # beside the tokenizer folder: model_id and the revision it was fetched at


def base_tokenizer_dir(artifacts: ArtifactStore) -> Path:
    """Folder with the tokenizer files (and, for a hub model, its config.json), a save_pretrained layout."""
    return artifacts.path(BASE_TOKENIZER_ASSET, "tokenizer")


def base_model_dir(artifacts: ArtifactStore) -> Path:
    """Folder with the base model's config, safetensors weights and tokenizer (a save_pretrained layout)."""
    return artifacts.path(BASE_MODEL_ASSET, "model")
