"""Profiles and project-local state.

Three profiles share one code path; only numbers and sources differ:
- `demo` (default, offline): a generated corpus, a tiny Llama-architecture model built locally.
- `full`: hub datasets, `meta-llama/Llama-3.1-8B-Instruct`, the seed's hyperparameters, on a GPU.
- `rehearsal` (offline, CPU): the full profile's defaults with the real data samples and Llama 3.1's
  real tokenizer and chat template from `../shared/data` beside the repo, a tiny random-init model with
  Llama-3.1-8B-Instruct's config values, and a few steps (core/training/llama31.py).

Choose with `SFT_PROFILE=full` before starting Dagster; it is read when the Definitions are built
(`definitions.build_defs(profile)` builds any profile's). Config fields that differ by profile are declared
`profiled(demo=..., full=..., ...)`, so the seed's value is written next to every demo value; a class's
defaults in another profile: `config_for("full", TrainConfig)`.
State (artifacts, Dagster home, MLflow store, TensorBoard logs) lives under `SFT_STATE_DIR`
(default `./.sft_state`, git-ignored).
"""

from __future__ import annotations

import os
from functools import cache
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


def by_profile(*, demo: T, full: T, rehearsal: T = _UNSET, profile: str | None = None) -> T:
    """The default of a tunable in `profile` (default: the active one): `full` is the seed's value, `demo`
    the offline CPU value.

    `rehearsal` runs the full profile's code and defaults offline on CPU, so it takes `full`'s value
    unless it must differ (a local tokenizer, a tiny model, few steps)."""
    profile = check_profile(profile or active_profile())
    if profile == "demo":
        return demo
    if profile == "rehearsal" and rehearsal is not _UNSET:
        return rehearsal
    return full


def check_profile(name: str) -> str:
    if name not in PROFILES:
        raise ValueError(f"profile {name!r} is not a profile; choose one of {', '.join(PROFILES)}")
    return name


# ---- config fields whose default depends on the profile -----------------------------------------------
# Dagster reads a Pythonic config's defaults when an asset is decorated, so the Definitions of one profile
# need config classes whose defaults are that profile's: `config_for(profile, TrainConfig)`. A field
# declared with `profiled(...)` keeps every profile's value (in its json_schema_extra) for that.
PROFILE_VALUES = "profile_values"


def profiled(*, demo, full, rehearsal=_UNSET, **field_kwargs):
    """`Field(...)` whose default is the active profile's value, and that knows every profile's value."""
    from pydantic import Field

    values = {name: by_profile(demo=demo, full=full, rehearsal=rehearsal, profile=name) for name in PROFILES}
    return Field(values[active_profile()], json_schema_extra={PROFILE_VALUES: values}, **field_kwargs)


def profile_defaults(cls: type, profile: str) -> dict:
    """{field: default in `profile`} for the `profiled` fields of a pydantic/Dagster config class."""
    check_profile(profile)
    out = {}
    for name, field in cls.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if PROFILE_VALUES in extra:
            out[name] = extra[PROFILE_VALUES][profile]
    return out


@cache
def config_for(profile: str, cls: type[T]) -> type[T]:
    """`cls` with `profile`'s defaults (a subclass of the same name), or `cls` when no default depends on it."""
    from pydantic import create_model
    from pydantic.fields import FieldInfo

    overrides = {
        name: (cls.model_fields[name].annotation, FieldInfo.merge_field_infos(cls.model_fields[name], default=value))
        for name, value in profile_defaults(cls, profile).items()
    }
    if all(cls.model_fields[name].default == value for name, value in profile_defaults(cls, profile).items()):
        return cls
    return create_model(cls.__name__, __base__=cls, __module__=cls.__module__, **overrides)


# The rehearsal's inputs: the real data samples and Llama-3.1 tokenizer in ../shared/data beside the repo.
REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def shared_data(rel: str) -> str:
    """Path of a file under ../shared/data beside the repo (a config default of the rehearsal profile)."""
    return str(SHARED_DATA / rel)


def repo_path(path: str) -> Path:
    """`path` as given when absolute, else relative to the repository root (not to the working directory)."""
    return Path(path) if Path(path).is_absolute() else REPO_ROOT / path


def recipes_text() -> str:
    """The recipes (recipes/*.yaml) by name and first comment line, for the descriptions a launchpad user
    reads; empty where the package runs without its repository (an installed wheel)."""
    lines = []
    for path in sorted((REPO_ROOT / "recipes").glob("*.yaml")):
        first = next((x.lstrip("# ").strip() for x in path.read_text().splitlines() if x.startswith("#")), "")
        lines.append(f"recipes/{path.name}: {first}")
    if not lines:
        return ""
    return (
        " Recipes (paste one into the launchpad's config editor, or `make demo CONFIG=recipes/<name>.yaml`): "
        + "; ".join(lines)
    )


def state_dir() -> Path:
    return Path(os.environ.get("SFT_STATE_DIR", ".sft_state"))


def default_artifact_root() -> str:
    return str(state_dir() / "artifacts")
