"""Where assets keep their files, and who may write them right now."""

import logging
from pathlib import Path

import dagster as dg
from pydantic import Field, PrivateAttr

from llama_sft_dagster.core.data.locks import FileLock
from llama_sft_dagster.core.data.storage import confined, ensure_writable_dir
from llama_sft_dagster.config.profiles import default_artifact_root


class MissingUpstreamError(FileNotFoundError):
    """An upstream asset's files are missing: it has not been materialized in this artifact store."""


class ArtifactStore(dg.ConfigurableResource):
    """Local folder for every asset's files: `<root>/<asset name>/...`.

    Paths handed out are confined to `root`, so no config value can write elsewhere.
    """

    root: str = Field(default_factory=default_artifact_root, description="Folder holding all asset files.")
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
                    f"waiting for {asset_name}: another run is writing it ({owner}; lock {lock.path})")

            lock.acquire(holder, on_wait=say)
        self._held[asset_name] = lock
        if self._log is not None:
            self._log.info(f"artifacts: {asset_name} claimed by run {self._run}")

    def asset_dir(self, asset_name: str) -> Path:
        self.claim(asset_name)
        return ensure_writable_dir(confined(self.root_path(), asset_name))

    def path(self, asset_name: str, filename: str = "data.parquet") -> Path:
        """Path of a file of `asset_name` (for reading upstream, without creating anything)."""
        return confined(self.root_path(), Path(asset_name) / filename)

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
