"""The project's persistent Dagster instance: DAGSTER_HOME, default <state dir>/dagster_home.

Staleness lives in the instance (code versions and data versions of past runs), so every command
of the project uses the same one. Its dagster.yaml is the repo's (telemetry off, the `gpu` pool).
"""

import os
import shutil
from pathlib import Path

from llama_sft_dagster.config.profiles import state_dir

REPO_INSTANCE_CONFIG = Path(__file__).resolve().parents[2] / "dagster.yaml"


def ensure_dagster_home() -> Path:
    """Set DAGSTER_HOME (if unset) to the project-local folder and put the project's dagster.yaml there."""
    home = Path(os.environ.get("DAGSTER_HOME") or (state_dir() / "dagster_home")).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() and REPO_INSTANCE_CONFIG.exists():
        # copy then rename: a second command starting now must not read a half-copied file
        tmp = home / f".dagster.yaml.{os.getpid()}.tmp"
        shutil.copyfile(REPO_INSTANCE_CONFIG, tmp)
        os.replace(tmp, config)
    os.environ["DAGSTER_HOME"] = str(home)
    return home
