"""Load MultiWOZ 2.2 dialogues into one raw table with one row per turn.

Accepted inputs:
- the published folder `data/MultiWOZ_2.2/` with `train/`, `dev/`, `test/` holding
  `dialogues_NNN.json` (each a JSON list of dialogues); every other file under the folder is skipped
  with a reason or fails the run (see `multiwoz_files`);
- a single JSON file holding a list of dialogues (e.g. the DialogStudio examples), recorded with
  the split given (default "train").
The table is a faithful copy: unknown speakers, empty or huge utterances and control characters
are kept; `core.pairs.extract_pairs` decides what to do with them and counts every turn.

`MultiwozReader` (end of the module) is the source's settings with `load()`, `version()` and `load_held_out()`;
its row in assets/source_table.py makes it the `multiwoz` resource.

    python -c "from llama_sft_dagster.core.sources.multiwoz import load_multiwoz_folder as f; print(f('MultiWOZ_2.2'))"
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Literal

import pyarrow as pa
from pydantic import BaseModel, Field, field_validator

from llama_sft_dagster.config.profiles import profiled, shared_data, state_dir
from llama_sft_dagster.core.data.pairs import PairExtractor, role_mapper, turn_pairs
from llama_sft_dagster.core.data.schema import TURN_SCHEMA
from llama_sft_dagster.core.sources.download import download
from llama_sft_dagster.core.sources.errors import RawDataError, decode_text, parse_json
from llama_sft_dagster.core.sources.multiwoz_files import shown_path, survey, with_skipped
from llama_sft_dagster.core.sources.versions import NO_SOURCE, fixed_version, local_version

SPLITS = ("train", "dev", "test")
# Pinned snapshot of budzianowski/multiwoz (the 2.2 data last changed in 44f0f84, 2021-04-12).
MULTIWOZ_ARCHIVE_URL = "https://github.com/budzianowski/multiwoz/archive/fe0c8e65cfcd8462bd33c86e35f21addc84ca82b.zip"
MULTIWOZ_22_DIR = "data/MultiWOZ_2.2"


# Speaker label -> role, matched whatever its case: the published files write USER/SYSTEM, other copies
# user/system, and the Hugging Face `multiwoz22` dataset stores 0 (USER) and 1 (SYSTEM). Any other label
# is an `unknown_speaker` drop in raw_pairs (counted, with samples in its rejects file).
SPEAKER_ROLES = {"user": "user", "system": "assistant", "0": "user", "1": "assistant"}


def _rows_of(columns: dict, where: str) -> list:
    """A column-wise record (`{field: [values...]}`, how `datasets` stores a list of structs) as row dicts."""
    lengths = {k: len(v) for k, v in columns.items() if isinstance(v, list)}
    if len(lengths) != len(columns) or len(set(lengths.values())) > 1:
        raise RawDataError(f"{where}: column-wise 'turns' must map each field to a list of one length, found {lengths}")
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


def _user_intent(frames: object) -> tuple[str | None, str | None]:
    if isinstance(frames, dict):  # column-wise frames (Hugging Face copy): {"service": [...], "state": [...]}
        frames = [dict(zip(frames, values)) for values in zip(*(v for v in frames.values() if isinstance(v, list)))]
    if not isinstance(frames, list):
        return None, None
    for frame in frames:
        state = frame.get("state") if isinstance(frame, dict) else None
        intent = state.get("active_intent") if isinstance(state, dict) else None
        if isinstance(intent, str) and intent and intent != "NONE":
            service = frame.get("service")
            return intent, service if isinstance(service, str) else None
    return None, None


def _read_dialogues(path: Path, shown: str) -> list:
    """`shown`: the file as the user configured it (folder + relative name), for messages."""
    text = decode_text(path.read_bytes(), shown)
    if not text.strip():
        raise RawDataError(f"{shown}: empty file")
    return parse_json(text, shown, list, "top level must be a list of dialogues")


def _append_dialogues(
    rows: dict[str, list],
    dialogues: list,
    rel: str,
    split: str,
    seen: dict[str, tuple[str, int]],
    shown: str | None = None,
) -> None:
    """Append one file's turns; `rel` goes into the table, `shown` (default `rel`) into messages."""
    shown = shown or rel
    for d_idx, dialogue in enumerate(dialogues):
        where = f"{shown}: dialogue {d_idx}"
        if not isinstance(dialogue, dict):
            raise RawDataError(f"{where}: must be an object, found {type(dialogue).__name__}")
        dialogue_id = dialogue.get("dialogue_id")
        if not isinstance(dialogue_id, str) or not dialogue_id:
            raise RawDataError(f"{where}: missing field 'dialogue_id'")
        where = f"{shown}: dialogue {d_idx} ({dialogue_id})"
        if dialogue_id in seen:
            first_file, first_idx = seen[dialogue_id]
            places = (
                f"dialogues {first_idx} and {d_idx} of {shown}"
                if first_file == shown
                else f"dialogue {first_idx} of {first_file} and dialogue {d_idx} of {shown}"
            )
            raise RawDataError(f"duplicate dialogue_id {dialogue_id!r}: {places}")
        seen[dialogue_id] = (shown, d_idx)
        turns = dialogue.get("turns")
        if isinstance(turns, dict):  # the Hugging Face datasets copy: turns stored column-wise
            turns = _rows_of(turns, where)
        if not isinstance(turns, list):
            raise RawDataError(f"{where}: missing field 'turns' (a list of turns, or column-wise lists)")
        services = dialogue.get("services") or []
        services_text = ",".join(str(s) for s in services) if isinstance(services, list) else str(services)
        for t_idx, turn in enumerate(turns):
            if not isinstance(turn, dict):
                raise RawDataError(f"{where}, turn {t_idx}: must be an object, found {type(turn).__name__}")
            for field, types in (("speaker", (str, int)), ("utterance", (str,))):
                value = turn.get(field)
                if not isinstance(value, types) or isinstance(value, bool):
                    problem = "missing field" if value is None else "non-text field"
                    raise RawDataError(f"{where}, turn {t_idx}: {problem} {field!r}")
            speaker = str(turn["speaker"])  # as written; 0/1 of the Hugging Face copy as "0"/"1"
            is_user = SPEAKER_ROLES.get(speaker.casefold()) == "user"
            intent, domain = _user_intent(turn.get("frames")) if is_user else (None, None)
            turn_id = turn.get("turn_id")
            rows["dialogue_id"].append(dialogue_id)
            rows["split"].append(split)
            rows["source_file"].append(rel)
            rows["services"].append(services_text)
            rows["turn_index"].append(t_idx)
            rows["turn_id"].append(None if turn_id is None else str(turn_id))
            rows["speaker"].append(speaker)
            rows["utterance"].append(turn["utterance"])
            rows["active_intent"].append(intent)
            rows["domain"].append(domain)


def _dialogue_files(folder: Path, splits: Sequence[str] = SPLITS) -> list[tuple[Path, str, str]]:
    found = []
    for split in splits:
        for path in sorted((folder / split).glob("dialogues_*.json")):
            found.append((path, f"{split}/{path.name}", split))
    return found


def load_multiwoz_folder(
    folder: str | Path, split: str = "train", unexpected_files: str = "fail", splits: Sequence[str] = SPLITS
) -> pa.Table:
    """Read the `splits` of the published layout (or one JSON file of dialogues, recorded under `split`).

    Every file under a folder is read or skipped with a reason (`multiwoz_files.survey`); files outside
    the published layout fail the run unless `unexpected_files="skip"`; dialogue files of splits not in
    `splits` are skipped with that reason. Messages name files as `<folder as given>/<relative name>`;
    the table records only the relative name.
    """
    path = Path(folder)
    skipped: list[tuple[str, str]] = []
    if path.is_file():
        files = [(path, path.name, split)]
        shown = {path.name: str(folder)}
    elif path.is_dir():
        found = survey(folder, unexpected_files)
        files = [f for f in found.read if f[2] in splits]
        skipped = found.skipped + [
            (rel, f"split {s!r} not selected (splits: {list(splits)})") for _, rel, s in found.read if s not in splits
        ]
        if not files:
            raise RawDataError(
                f"{folder}: no dialogue files; expected {', '.join(s + '/' for s in splits)} "
                f"holding dialogues_NNN.json (found: {[rel for rel, _ in skipped][:5]})"
            )
        shown = {rel: shown_path(folder, rel) for _, rel, _ in files}
    else:
        raise RawDataError(f"{folder}: MultiWOZ folder or file not found")
    rows: dict[str, list] = {name: [] for name in TURN_SCHEMA.names}
    seen: dict[str, tuple[str, int]] = {}
    for file_path, rel, file_split in files:
        _append_dialogues(rows, _read_dialogues(file_path, shown[rel]), rel, file_split, seen, shown[rel])
    return with_skipped(pa.table(rows, schema=TURN_SCHEMA), skipped)


def turns_from_dialogues(dialogues: list, source_file: str, split: str = "train") -> pa.Table:
    """The same table built from an in-memory list of dialogues (used by the demo corpus)."""
    rows: dict[str, list] = {name: [] for name in TURN_SCHEMA.names}
    _append_dialogues(rows, dialogues, source_file, split, {})
    return pa.table(rows, schema=TURN_SCHEMA)


def download_multiwoz_archive(url: str, dest: str | Path, timeout: float = 60.0, retries: int = 4) -> Path:
    """Download the repository archive and extract `data/MultiWOZ_2.2/` to `dest/MultiWOZ_2.2`.

    Returns the extracted folder (skips the download when it already holds dialogue files). The
    download resumes a partial archive left by an interrupted run (core/sources/download.py).
    """
    target = Path(dest) / "MultiWOZ_2.2"
    if target.is_dir() and _dialogue_files(target):
        return target
    Path(dest).mkdir(parents=True, exist_ok=True)
    # outside the temporary folder, so a partial download survives an interrupted run and is resumed
    # named by the URL: a partial file of another URL is never resumed into this one
    name = f"multiwoz-{hashlib.sha256(url.encode()).hexdigest()[:12]}.zip"
    archive = download(url, Path(dest) / name, timeout=timeout, retries=retries)
    try:
        return _extract(archive, url, target)
    except (zipfile.BadZipFile, RawDataError) as exc:
        # a server that sent no length can end early unnoticed: never keep a bad archive as if complete
        archive.unlink(missing_ok=True)
        if isinstance(exc, RawDataError):
            raise
        raise RawDataError(f"{url}: not a readable zip archive ({exc}); the download was removed, run again") from exc


def _extract(archive: Path, url: str, target: Path) -> Path:
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        staged = Path(tmp) / "MultiWOZ_2.2"
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                parts = PurePosixPath(info.filename).parts
                # GitHub archives nest everything under "<repo>-<ref>/".
                inner = PurePosixPath(*parts[1:]) if len(parts) > 1 else PurePosixPath()
                if info.is_dir() or not str(inner).startswith(MULTIWOZ_22_DIR + "/"):
                    continue
                rel = inner.relative_to(MULTIWOZ_22_DIR)
                if ".." in rel.parts:
                    raise RawDataError(f"{url}: archive member {info.filename!r} escapes the folder")
                out_path = staged / rel
                out_path.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(out_path, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        if not staged.is_dir() or not _dialogue_files(staged):
            raise RawDataError(f"{url}: archive holds no {MULTIWOZ_22_DIR}/<split>/dialogues_NNN.json")
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)
    archive.unlink()  # extracted: the archive is only needed again for a new URL
    return target


def multiwoz_pairs(name: str, turns: pa.Table, max_chars: int) -> tuple[pa.Table, pa.Table, dict[str, int]]:
    """Each USER turn followed directly by a SYSTEM turn is a pair (the seed's rule; core/data/pairs.py)."""
    return turn_pairs(name, turns, role_mapper(SPEAKER_ROLES), max_chars)


PAIRS = PairExtractor(unit="turns", units_per_pair=2, extract=multiwoz_pairs)


# ---- the source's settings (the `multiwoz` resource's fields) ---------------------------------------------------
# the rehearsal's real samples (../shared/data/README.md): MultiWOZ 2.2 excerpts in the published layout
REHEARSAL_MULTIWOZ = "multiwoz_2.2/hf_dummy_fixtures"


class MultiwozReader(BaseModel):
    """MultiWOZ 2.2 dialogues (USER/SYSTEM turns)."""

    location: str = profiled(
        demo="demo",
        full="archive",
        rehearsal=shared_data(REHEARSAL_MULTIWOZ),
        description="'demo', 'archive' (download the published archive), a local folder/JSON file, or 'none'; "
        "rehearsal: the real excerpts in ../shared/data, published layout.",
    )
    splits: list[str] = Field(
        default_factory=lambda: ["train"],
        description="Splits of the published layout to read (seed: train only, 8,437 dialogues); dev and test "
        "stay unseen for evaluation. A single JSON file is read as 'train'.",
    )
    archive_url: str = Field(MULTIWOZ_ARCHIVE_URL, description="Published archive, used when location='archive'.")
    download_timeout_s: float = Field(60.0, gt=0, description="Socket timeout of each archive request.")
    download_retries: int = Field(4, ge=0, description="Retries of a failed archive download (resumed, with backoff).")
    demo_seed: int = Field(13, description="Seed of the generated demo dialogues.")
    unexpected_files: Literal["fail", "skip"] = Field(
        "fail",
        description="A file under a local folder outside the published layout (e.g. validation/, "
        "train/extra.json): 'fail' the run naming it, or 'skip' it and list it in multiwoz_raw's metadata.",
    )

    @field_validator("splits")
    @classmethod
    def _known_splits(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(SPLITS))
        if unknown or not value:
            raise ValueError(f"splits {value}: choose one or more of {list(SPLITS)}")
        return list(dict.fromkeys(value))

    def load(self) -> pa.Table:
        from llama_sft_dagster.core.demo import corpus as demo_corpus

        if self.location == "demo":
            return demo_corpus.generate_multiwoz_turns(seed=self.demo_seed)
        if self.location == NO_SOURCE:
            return TURN_SCHEMA.empty_table()
        if self.location == "archive":
            return load_multiwoz_folder(self._archive_folder(), splits=self.splits)
        return load_multiwoz_folder(self.location, unexpected_files=self.unexpected_files, splits=self.splits)

    def version(self) -> str:
        if fixed := fixed_version(self.location, self.demo_seed):
            return fixed
        # the splits read are part of the version: reading dev too is new raw data
        splits = ",".join(self.splits)
        if self.location == "archive":
            return f"archive:{self.archive_url}:{splits}"  # the URL pins a commit: a new commit is a new URL
        return f"file:{local_version(self.location)}:{splits}"

    def _archive_folder(self) -> Path:
        """The published archive, downloaded (resumably) into the state folder once."""
        return download_multiwoz_archive(
            self.archive_url,
            state_dir() / "downloads" / "multiwoz",
            timeout=self.download_timeout_s,
            retries=self.download_retries,
        )

    def load_held_out(self) -> pa.Table:
        """Turns of the dev and test dialogues not among `splits` (never trained on), for adapter_evaluation;
        the demo generates its own (core/demo/held_out.py). Empty when none is left out of training, or the
        location holds no dev/test split (a single JSON file is read as train)."""
        from llama_sft_dagster.core.demo.held_out import held_out_turns

        held_out = [s for s in ("dev", "test") if s not in self.splits]
        if self.location == "demo":
            return held_out_turns(seed=self.demo_seed)
        folder = self._archive_folder() if self.location == "archive" else self.location
        if (
            self.location == NO_SOURCE
            or not held_out
            or not Path(folder).is_dir()
            or not any((Path(folder) / s).is_dir() for s in held_out)
        ):
            return TURN_SCHEMA.empty_table()
        return load_multiwoz_folder(folder, unexpected_files=self.unexpected_files, splits=held_out)
