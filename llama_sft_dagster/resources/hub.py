"""The Hugging Face hub, for the full profile's base model (and any gated download)."""

import dagster as dg
from pydantic import Field


class HuggingFaceHub(dg.ConfigurableResource):
    """Hub access. The token comes only from the environment (`dg.EnvVar("HF_TOKEN")`): it is never
    written to metadata, logs, MLflow params or checkpoints."""

    token: str | None = Field(
        None,
        description="Hub token; set HF_TOKEN in the environment. Needed only for "
        "gated repositories (the Llama weights); public data loads without it.",
    )
    timeout_s: float = Field(30.0, gt=0, description="Timeout of each hub request (metadata and file downloads).")
    retries: int = Field(4, ge=0, description="Retries of a failed hub call (downloads resume), with backoff.")
