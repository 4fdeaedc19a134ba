"""Profiles and project-local state.

Three profiles share one code path; only numbers and sources differ:
- `demo` (default, offline): a generated corpus, a tiny Llama-architecture model built locally.
- `full`: hub datasets, `meta-llama/Llama-3.1-8B-Instruct`, the seed's hyperparameters, on a GPU.
- `rehearsal` (offline, CPU): the full profile's defaults with the real data samples and Llama 3.1's
  real tokenizer and chat template from `../shared/data` beside the repo, a tiny random-init model with
  Llama-3.1-8B-Instruct's config values, and a few steps (core/training/llama31.py).

Choose with `SFT_PROFILE=full` before starting Dagster. Config fields take their default from
`by_profile(demo=..., full=...)`, so the seed's value is written next to every demo value.
State (artifacts, Dagster home, MLflow store, TensorBoard logs) lives under `SFT_STATE_DIR`
(default `./.sft_state`, git-ignored).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

PROFILES = ("demo", "rehearsal", "full")
T = TypeVar("T")


def active_profile() -> str:
    name = os.environ.get("SFT_PROFILE", "demo").strip().lower()
    if name not in PROFILES:
        raise ValueError(f"SFT_PROFILE={name!r} is not a profile; choose one of {', '.join(PROFILES)}")
    return name


_UNSET = object()


def by_profile(*, demo: T, full: T, rehearsal: T = _UNSET) -> T:
    """The default of a tunable: `full` is the seed's value, `demo` the offline CPU value.

    `rehearsal` runs the full profile's code and defaults offline on CPU, so it takes `full`'s value
    unless it must differ (a local tokenizer, a tiny model, few steps)."""
    profile = active_profile()
    if profile == "demo":
        return demo
    if profile == "rehearsal" and rehearsal is not _UNSET:
        return rehearsal
    return full


# The rehearsal's inputs: the real data samples and Llama-3.1 tokenizer in ../shared/data beside the repo.
REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def shared_data(rel: str) -> str:
    """Path of a file under ../shared/data beside the repo (a config default of the rehearsal profile)."""
    return str(SHARED_DATA / rel)


def repo_path(path: str) -> Path:
    """`path` as given when absolute, else relative to the repository root (not to the working directory)."""
    return Path(path) if Path(path).is_absolute() else REPO_ROOT / path


def state_dir() -> Path:
    return Path(os.environ.get("SFT_STATE_DIR", ".sft_state"))


def default_artifact_root() -> str:
    return str(state_dir() / "artifacts")
