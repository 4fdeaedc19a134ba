"""Where the repo and the real data samples (../shared/data beside the repo) are."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_file(rel: str) -> Path:
    """A real data sample under ../shared/data, or a skip that says where it was looked for."""
    path = SHARED_DATA / rel
    if not path.exists():
        pytest.skip(f"real data sample not found at {path} (see ../shared/data/README.md)")
    return path
