"""A clear error when an asset is run before its upstream exists (e.g. on an empty store).

`dagster asset materialize --select train_adapter` runs only train_adapter; on an empty store its
inputs do not exist yet, and the fix is to select its upstream too: `--select '*train_adapter'`.
"""

from pathlib import Path

from llama_sft_dagster.resources.artifacts import ArtifactStore


class MissingUpstreamError(FileNotFoundError):
    """An upstream asset's files are missing: it has not been materialized in this artifact store."""


def require_upstream(artifacts: ArtifactStore, upstream: str, consumer: str, filename: str = "data.parquet") -> Path:
    """Path of `upstream`'s file for `consumer`, or an error that says which selection to run."""
    path = artifacts.path(upstream, filename)
    if not path.exists():
        raise MissingUpstreamError(
            f"{consumer} needs {upstream}, which has not been materialized ({path} does not exist). "
            f"Materialize {consumer} together with its upstream: "
            f"dagster asset materialize --select '*{consumer}'  (or: sft-materialize-stale --select '*{consumer}')"
        )
    return path
