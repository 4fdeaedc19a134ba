"""Where assets keep their files."""

from pathlib import Path

import dagster as dg
from pydantic import Field

from llama_sft_dagster.core.data.storage import confined, ensure_writable_dir
from llama_sft_dagster.config.profiles import default_artifact_root


class MissingUpstreamError(FileNotFoundError):
    """An upstream asset's files are missing: it has not been materialized in this artifact store."""


class ArtifactStore(dg.ConfigurableResource):
    """Local folder for every asset's files: `<root>/<asset name>/...`.

    Paths handed out are confined to `root`, so no config value can write elsewhere.
    """

    root: str = Field(default_factory=default_artifact_root, description="Folder holding all asset files.")

    def root_path(self) -> Path:
        return Path(self.root).resolve()

    def asset_dir(self, asset_name: str) -> Path:
        return ensure_writable_dir(confined(self.root_path(), asset_name))

    def path(self, asset_name: str, filename: str = "data.parquet") -> Path:
        """Path of a file of `asset_name` (for reading upstream, without creating anything)."""
        return confined(self.root_path(), Path(asset_name) / filename)

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
