"""Profiles and project-local state.

Two profiles share one code path; only numbers and sources differ:
- `demo` (default, offline): a generated corpus, a tiny Llama-architecture model built locally.
- `full`: hub datasets, `meta-llama/Llama-3.1-8B-Instruct`, the seed's hyperparameters, on a GPU.

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


def state_dir() -> Path:
    return Path(os.environ.get("SFT_STATE_DIR", ".sft_state"))


def default_artifact_root() -> str:
    return str(state_dir() / "artifacts")
