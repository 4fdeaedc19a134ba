"""Every resource the graph needs, on local state (demo data, CPU, SQLite MLflow)."""

from pathlib import Path


def project_resources(root: Path, **overrides) -> dict:
    """All resources on local state under `root`; `overrides` replace single ones (e.g. bitext=...)."""
    from llama_sft_dagster.housekeeping.pool_guard import GpuPoolGuard
    from llama_sft_dagster.resources.artifacts import ArtifactStore
    from llama_sft_dagster.resources.data_sources import BitextSource, MultiwozSource
    from llama_sft_dagster.resources.gpu import GpuResource
    from llama_sft_dagster.resources.hub import HuggingFaceHub
    from llama_sft_dagster.resources.tracking import MlflowTracking

    resources = {
        "artifacts": ArtifactStore(root=str(root / "artifacts")),
        "bitext": BitextSource(location="demo"),
        "multiwoz": MultiwozSource(location="demo"),
        "hub": HuggingFaceHub(),
        "gpu": GpuResource(device="cpu", lock_dir=str(Path(root) / "locks")),
        "pool_guard": GpuPoolGuard(),
        "tracking": MlflowTracking(tracking_uri=f"sqlite:///{root / 'mlflow.db'}"),
    }
    from llama_sft_dagster.assets.source_table import SOURCES

    # every other source of the table (a team's conversations) with its defaults: off
    resources.update({s.name: s.resource() for s in SOURCES if s.name not in resources})
    return {**resources, **overrides}
