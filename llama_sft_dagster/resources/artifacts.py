"""Where assets keep their files."""

import datetime as dt
import os
import shutil
from pathlib import Path

import dagster as dg
from pydantic import Field

from llama_sft_dagster.config.profiles import default_artifact_root
from llama_sft_dagster.core.data.retention import to_remove
from llama_sft_dagster.core.data.storage import confined, ensure_writable_dir

VERSIONS = "versions"  # <root>/<asset>/versions/<version>/: one folder per materialization of a versioned asset
CURRENT = "current"  # <root>/<asset>/current -> versions/<version>: the one downstream assets read
PROMOTED = "PROMOTED"  # marker file in a version folder that retention never deletes (a champion, now or before)


class MissingUpstreamError(FileNotFoundError):
    """An upstream asset's files are missing: it has not been materialized in this artifact store."""


class ArtifactStore(dg.ConfigurableResource):
    """Local folder for every asset's files: `<root>/<asset name>/...`.

    The training-side assets (train_adapter, merged_model, adapter_evaluation) are versioned: each
    materialization writes `<root>/<asset>/versions/<UTC time>-<run id>/`, then `publish` points
    `<root>/<asset>/current` at it and deletes versions beyond `keep_versions` (never a promoted one).
    So a retraining leaves last week's adapter in place, and the path in an old materialization's
    metadata stays valid. `path`/`upstream` read through `current`, so readers need not know.
    Paths handed out are confined to `root`, so no config value can write elsewhere.
    """

    root: str = Field(default_factory=default_artifact_root, description="Folder holding all asset files.")
    keep_versions: int = Field(3, ge=1, description="Versions of each versioned asset kept besides promoted "
                               "ones (a champion, now or before); older ones are deleted when a new one is published.")

    def root_path(self) -> Path:
        return Path(self.root).resolve()

    def asset_dir(self, asset_name: str) -> Path:
        return ensure_writable_dir(confined(self.root_path(), asset_name))

    def path(self, asset_name: str, filename: str = "data.parquet") -> Path:
        """Path of a file of `asset_name` (for reading upstream, without creating anything); a versioned
        asset's file is read from its current version (the path returned is the version's real path)."""
        current = self.root_path() / asset_name / CURRENT
        base = Path(asset_name) / CURRENT if current.is_symlink() else Path(asset_name)
        return confined(self.root_path(), base / filename)

    def upstream(self, name: str, consumer: str, filename: str = "data.parquet") -> Path:
        """Path of upstream asset `name`'s file, read by `consumer`; a clear error if it was never built.

        `dagster asset materialize --select train_adapter` on an empty store runs only that asset, so
        the message names the selection that also builds its upstream.
        """
        path = self.path(name, filename)
        if not path.exists():
            raise MissingUpstreamError(
                f"{consumer} needs {name}, which has not been materialized ({path} does not exist). "
                f"Materialize {consumer} together with its upstream: "
                f"dagster asset materialize --select '*{consumer}'  (or: sft-materialize-stale --select '*{consumer}')"
            )
        return path

    def new_version(self, asset_name: str, run_id: str) -> Path:
        """A fresh version folder of `asset_name` for this run (not yet current: see `publish`)."""
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        return ensure_writable_dir(confined(self.root_path(), Path(asset_name) / VERSIONS / f"{stamp}-{run_id[:8]}"))

    def publish(self, asset_name: str, version_dir: Path) -> list[str]:
        """Make `version_dir` the current version (atomic link swap), then apply retention.

        Returns the names of the versions deleted."""
        base = self.asset_dir(asset_name)
        version_dir = confined(base / VERSIONS, Path(version_dir).name)
        tmp = base / f".{CURRENT}.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(Path(VERSIONS) / version_dir.name)  # relative: a copied store keeps working
        os.replace(tmp, base / CURRENT)
        names = [p.name for p in (base / VERSIONS).iterdir() if p.is_dir()]
        promoted = {n for n in names if (base / VERSIONS / n / PROMOTED).exists()}
        removed = to_remove(names, self.keep_versions, promoted, current=version_dir.name)
        for name in removed:
            shutil.rmtree(base / VERSIONS / name, ignore_errors=True)
        return removed

    def versions(self, asset_name: str) -> list[Path]:
        """Every kept version folder of `asset_name`, oldest first."""
        folder = self.root_path() / asset_name / VERSIONS
        return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    def mark_promoted(self, version_dir: Path, note: str) -> None:
        """Exempt a version folder from retention (it is, or was, a champion)."""
        version_dir = confined(self.root_path(), Path(version_dir).resolve().relative_to(self.root_path()))
        (version_dir / PROMOTED).write_text(note + "\n")
