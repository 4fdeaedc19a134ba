"""Which files under a MultiWOZ folder are read, which are skipped and why (Dagster-free).

Every file under the folder gets exactly one verdict, so nothing is ignored without a word:
- `<split>/dialogues_NNN.json` for a split of `train/`, `dev/`, `test/`: read;
- the published folder's own non-dialogue files (`schema.json`, `dialog_acts.json`, README, the
  conversion script) and hidden files (`.DS_Store`, editor backups): skipped, with that reason;
- anything else (`validation/`, `train/dialogues_1.json`, `train/extra.json`, ...): an unexpected file.
  With `unexpected_files="fail"` (the default) the run fails naming it; with "skip" it is skipped and
  listed. Skipped files travel in the table's schema metadata (`skipped_files`) into the asset metadata.

    python -c "from llama_sft_dagster.core.sources.multiwoz_files import survey; print(survey('MultiWOZ_2.2'))"
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from llama_sft_dagster.core.sources.errors import RawDataError

SPLITS = ("train", "dev", "test")
DIALOGUE_FILE = re.compile(r"dialogues_\d{3}\.json")
# Top-level files of budzianowski/multiwoz:data/MultiWOZ_2.2/ that hold no dialogues.
PUBLISHED_EXTRAS = ("schema.json", "dialog_acts.json", "README.md", "convert_to_multiwoz_format.py", "requirements.txt")
UNEXPECTED_POLICIES = ("fail", "skip")
META_SKIPPED_FILES = b"multiwoz_skipped_files"


@dataclass
class Survey:
    read: list[tuple[Path, str, str]] = field(default_factory=list)  # (path, relative name, split)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative name, reason)
    unexpected: list[str] = field(default_factory=list)


def shown_path(folder: str | Path, rel: str) -> str:
    """The file as the user would type it: the configured folder joined with the relative name."""
    return f"{str(folder).rstrip('/')}/{rel}"


def _verdict(rel: str) -> tuple[str, str | None, str | None]:
    """('read', split, None) | ('skip', None, reason) | ('unexpected', None, hint)."""
    parts = rel.split("/")
    if any(p.startswith(".") for p in parts):
        return "skip", None, "hidden file"
    if len(parts) == 1 and parts[0] in PUBLISHED_EXTRAS:
        return "skip", None, "published non-dialogue file"
    if len(parts) == 2 and parts[0] in SPLITS and DIALOGUE_FILE.fullmatch(parts[1]):
        return "read", parts[0], None
    if len(parts) == 2 and parts[0] in SPLITS and parts[1].endswith(".json"):
        return "unexpected", None, f"not named dialogues_NNN.json (three digits), so it is not read as {parts[0]} data"
    if len(parts) > 1 and parts[0] not in SPLITS:
        return "unexpected", None, f"{parts[0]}/ is not a split folder of the published layout ({', '.join(SPLITS)})"
    return "unexpected", None, "not part of the published MultiWOZ 2.2 layout"


def _walk_error(exc: OSError) -> None:
    raise RawDataError(f"{exc.filename}: cannot list folder: {exc.strerror or exc}") from exc


def survey(folder: str | Path, unexpected_files: str = "fail") -> Survey:
    """Give every file under `folder` a verdict; raise on unexpected files unless told to skip them."""
    if unexpected_files not in UNEXPECTED_POLICIES:
        raise ValueError(f"unexpected_files must be one of {UNEXPECTED_POLICIES}, not {unexpected_files!r}")
    root = Path(folder)
    result, hints = Survey(), {}
    for dirpath, dirnames, filenames in os.walk(root, onerror=_walk_error):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            kind, split, note = _verdict(rel)
            if kind == "read":
                result.read.append((path, rel, split))
            elif kind == "skip":
                result.skipped.append((rel, note))
            else:
                result.unexpected.append(rel)
                hints[rel] = note
    if result.unexpected and unexpected_files == "fail":
        first = result.unexpected[0]
        others = result.unexpected[1:]
        more = f" (and {len(others)} more: {others[:3]})" if others else ""
        raise RawDataError(
            f"{shown_path(folder, first)}: {hints[first]}{more}; rename or remove it, or set the multiwoz "
            "resource's unexpected_files='skip' to list such files as skipped"
        )
    result.skipped += [(rel, f"unexpected file skipped: {hints[rel]}") for rel in result.unexpected]
    result.read.sort(key=lambda r: (SPLITS.index(r[2]), r[1]))
    return result


def with_skipped(table: pa.Table, skipped: list[tuple[str, str]]) -> pa.Table:
    meta = dict(table.schema.metadata or {})
    meta[META_SKIPPED_FILES] = json.dumps([{"file": rel, "reason": why} for rel, why in skipped]).encode()
    return table.replace_schema_metadata(meta)


def skipped_files(table: pa.Table) -> list[dict]:
    """Files of the folder that were not read, with the reason (reported as asset metadata)."""
    return json.loads((table.schema.metadata or {}).get(META_SKIPPED_FILES, b"[]"))
