"""The Hugging Face hub, for the full profile's base model (and any gated download)."""
from typing import Optional

import dagster as dg
from pydantic import Field


class HuggingFaceHub(dg.ConfigurableResource):
    """Hub access. The token comes only from the environment (`dg.EnvVar("HF_TOKEN")`): it is never
    written to metadata, logs, MLflow params or checkpoints."""

    token: Optional[str] = Field(None, description="Hub token; set HF_TOKEN in the environment.")
