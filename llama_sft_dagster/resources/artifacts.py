"""Where assets keep their files."""

from pathlib import Path

import dagster as dg
from pydantic import Field

from llama_sft_dagster.core.storage import confined, ensure_writable_dir
from llama_sft_dagster.settings import default_artifact_root


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
