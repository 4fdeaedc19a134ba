"""Shared fixtures: the real data samples beside the repo, and isolated state folders."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def isolated_state(tmp_path, monkeypatch):
    """Every test gets its own state folder and Dagster home; nothing touches ./.sft_state."""
    state = tmp_path / "sft_state"
    monkeypatch.setenv("SFT_STATE_DIR", str(state))
    monkeypatch.setenv("DAGSTER_HOME", str(state / "dagster_home"))
    (state / "dagster_home").mkdir(parents=True)
    return state


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data samples not found at {SHARED_DATA} (see DEVELOPERS.md)")
    return SHARED_DATA


def project_resources(root: Path, **overrides) -> dict:
    """Every resource the graph needs, all on local state under `root` (demo data, CPU, SQLite MLflow)."""
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
        "tracking": MlflowTracking(tracking_uri=f"sqlite:///{root / 'mlflow.db'}"),
    }
    return {**resources, **overrides}


def shared_file(rel: str) -> Path:
    """A real data sample under ../shared/data, or a skip that says where it was looked for."""
    path = SHARED_DATA / rel
    if not path.exists():
        pytest.skip(f"real data sample not found at {path} (see ../shared/data/README.md)")
    return path
