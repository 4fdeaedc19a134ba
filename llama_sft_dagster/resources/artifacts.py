"""Where assets keep their files, and who may write them right now."""

import datetime as dt
import logging
import os
import shutil
from pathlib import Path

import dagster as dg
from pydantic import Field, PrivateAttr

from llama_sft_dagster.config.profiles import default_artifact_root
from llama_sft_dagster.core.data.locks import FileLock
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
    keep_versions: int = Field(
        3,
        ge=1,
        description="Versions of each versioned asset kept besides promoted "
        "ones (a champion, now or before); older ones are deleted when a new one is published.",
    )
    _run: str | None = PrivateAttr(None)
    _log: logging.Logger | None = PrivateAttr(None)
    _held: dict = PrivateAttr(default_factory=dict)

    def root_path(self) -> Path:
        return Path(self.root).resolve()

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # only inside a run: direct uses (tests, benchmarks) must not hold locks a later run waits on
        self._run = context.run.run_id if context.run else "a run"
        self._log = context.log

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        for lock in self._held.values():
            lock.release()
        self._held.clear()

    def claim(self, asset_name: str) -> None:
        """Make this run the only writer of `asset_name` until it ends (or waits for another asset).

        Two runs of one store (the UI, the schedule, `sft-materialize-stale`, `dagster asset materialize`)
        never compute or write the same asset at the same time: the second waits, logging who holds it.
        A run about to wait first lets go of the assets it finished, so no two runs can wait on each other.
        """
        if self._run is None or asset_name in self._held:
            return
        lock = FileLock(ensure_writable_dir(self.root_path() / ".locks") / f"{asset_name}.lock")
        holder = f"{asset_name} of run {self._run}"
        if not lock.try_acquire(holder):
            for held in self._held.values():
                held.release()
            self._held.clear()

            def say(owner: str) -> None:
                (self._log or logging.getLogger(__name__)).warning(
                    f"waiting for {asset_name}: another run is writing it ({owner}; lock {lock.path})"
                )

            lock.acquire(holder, on_wait=say)
        self._held[asset_name] = lock
        if self._log is not None:
            self._log.info(f"artifacts: {asset_name} claimed by run {self._run}")

    def asset_dir(self, asset_name: str) -> Path:
        self.claim(asset_name)
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
        self.claim(consumer)  # before reading: the consumer's step starts here
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
        self.claim(asset_name)
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
