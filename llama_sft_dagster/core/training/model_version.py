"""The version of a model folder without re-reading its weights on every training run.

`base_model` knows its version when it builds or downloads the folder (the hub commit sha, or the
content hash of the demo model) and records it beside the folder with each file's size and mtime.
`model_folder_version` returns that record while every file still matches it (a `stat` per file), and
falls back to hashing the content (then records the new version) when a file was added, removed or
rewritten. Hashing an 8B model's 16 GB on every `train_adapter` run is what this avoids.
"""
from __future__ import annotations

import json
from pathlib import Path

from llama_sft_dagster.core.data.storage import atomic_path
from llama_sft_dagster.core.versions import folder_version

STAMP_SUFFIX = ".version.json"


def stamp_path(folder: Path) -> Path:
    folder = Path(folder)
    return folder.with_name(folder.name + STAMP_SUFFIX)  # beside the folder: not part of its content


def file_stats(folder: Path) -> dict[str, list[int]]:
    folder = Path(folder)
    return {str(p.relative_to(folder)): [p.stat().st_size, p.stat().st_mtime_ns]
            for p in sorted(folder.rglob("*")) if p.is_file()}


def stamp_version(folder: Path, version: str) -> str:
    with atomic_path(stamp_path(folder)) as tmp:
        tmp.write_text(json.dumps({"version": version, "files": file_stats(folder)}, indent=1))
    return version


def model_folder_version(folder: Path) -> str:
    """The recorded version of `folder` if no file changed since it was recorded, else its content hash."""
    stamp = stamp_path(folder)
    if stamp.exists():
        try:
            record = json.loads(stamp.read_text())
        except (OSError, ValueError):
            record = {}
        if record.get("version") and record.get("files") == file_stats(folder):
            return record["version"]
    return stamp_version(folder, folder_version(folder))
