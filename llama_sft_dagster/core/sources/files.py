"""Reading the files teams export: JSONL, JSON, CSV and Parquet, optionally gzip- or zstd-compressed,
one file, a folder or a glob (Dagster-free).

Compression is named by the last suffix (`.gz`, `.zst`/`.zstd`) and undone by pyarrow's streams (its
zstd codec: Python 3.11 has none in the standard library). Text is decoded by its byte-order mark,
otherwise as strict UTF-8 (`errors.decode_text`). Every record keeps where it came from: a JSONL line
number, a JSON list index, a CSV line, a Parquet row, so messages and provenance can name it.

    python -c "from llama_sft_dagster.core.sources.files import read_records as r; print(r('chats.jsonl.gz')[:2])"
"""

from __future__ import annotations

import csv
import glob
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from llama_sft_dagster.core.sources.errors import RawDataError, decode_text, parse_json

COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}
FORMATS = (".jsonl", ".json", ".csv", ".parquet")


@dataclass(frozen=True)
class Record:
    where: str  # "line 12", "record 3", "row 7": for messages and for the raw table's turn_id
    data: dict


def file_kind(path: str | Path) -> tuple[str | None, str | None]:
    """(format suffix, compression) from the name, e.g. ('.csv', 'gzip') for `x.csv.gz`; format None if unknown."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    compression = COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    if compression:
        suffixes = suffixes[:-1]
    fmt = suffixes[-1] if suffixes and suffixes[-1] in FORMATS else None
    return fmt, compression


def read_bytes(path: Path, shown: str) -> bytes:
    """The file's bytes, decompressed when its name says so; a clear error for a corrupt stream."""
    _, compression = file_kind(path)
    if compression is None:
        return path.read_bytes()
    try:
        with pa.input_stream(str(path), compression=compression) as stream:
            return stream.read()
    except (OSError, pa.ArrowInvalid) as exc:
        raise RawDataError(f"{shown}: not a readable {compression} file: {exc}") from exc


def expand(location: str, shown_root: str | None = None) -> list[tuple[Path, str]]:
    """(path, name recorded in the data) of every supported file at `location`: a file, a folder (read
    recursively, hidden files skipped) or a glob pattern; sorted, so the order is stable."""
    path = Path(location)
    if path.is_file():
        return [(path, path.name)]
    if path.is_dir():
        found = [p for p in sorted(path.rglob("*")) if p.is_file() and not _hidden(p.relative_to(path))]
        files = [(p, p.relative_to(path).as_posix()) for p in found if file_kind(p)[0]]
        ignored = [p.relative_to(path).as_posix() for p in found if not file_kind(p)[0]]
        if ignored:
            raise RawDataError(
                f"{location}: {ignored[:3]} {'is' if len(ignored) == 1 else 'are'} not a supported file "
                f"({', '.join(FORMATS)}, optionally .gz/.zst); move them out of the folder"
            )
        if not files:
            raise RawDataError(f"{location}: folder holds no {', '.join(FORMATS)} files")
        return files
    if glob.has_magic(location):
        matches = sorted(Path(p) for p in glob.glob(location, recursive=True) if Path(p).is_file())
        if not matches:
            raise RawDataError(f"{location}: the pattern matches no file")
        unsupported = [str(p) for p in matches if not file_kind(p)[0]]
        if unsupported:
            raise RawDataError(f"{location}: matches unsupported file(s) {unsupported[:3]}; expected {FORMATS}")
        return [(p, p.name) for p in matches]
    raise RawDataError(f"{location}: file, folder or glob pattern not found")


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def _jsonl(text: str, shown: str) -> Iterator[Record]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        value = parse_json(line, f"{shown}: line {number}", dict, "must be a JSON object", at_line=False)
        yield Record(f"line {number}", value)


def _json(text: str, shown: str) -> Iterator[Record]:
    value = parse_json(text, shown, (list, dict), "top level must be a list of records")
    if isinstance(value, dict) and isinstance(value.get("data"), list):
        value = value["data"]  # {"data": [...]}, as the `datasets` JSON loader accepts
    if not isinstance(value, list):
        raise RawDataError(f"{shown}: top level must be a list of records, found {type(value).__name__}")
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise RawDataError(f"{shown}: record {index}: must be a JSON object, found {type(item).__name__}")
        yield Record(f"record {index}", item)


def _csv(text: str, shown: str) -> Iterator[Record]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header:
        raise RawDataError(f"{shown}: no header row")
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise RawDataError(f"{shown}: duplicate column(s) {dupes}")
    start = reader.line_num + 1
    for row in reader:
        if row:
            if len(row) != len(header):
                raise RawDataError(
                    f"{shown}: line {start}: expected {len(header)} columns as in the header, found {len(row)}"
                )
            yield Record(f"line {start}", dict(zip(header, row)))
        start = reader.line_num + 1


def read_records(path: Path, shown: str) -> list[Record]:
    """Every record of one file, with where it is; structural problems raise RawDataError naming the place."""
    fmt, compression = file_kind(path)
    if fmt is None:
        raise RawDataError(f"{shown}: unsupported file type; expected one of {FORMATS}, optionally .gz or .zst")
    data = read_bytes(path, shown)
    if not data.strip():
        raise RawDataError(f"{shown}: empty file")
    if fmt == ".parquet":
        try:
            table = pq.read_table(pa.BufferReader(data))
        except (pa.ArrowInvalid, OSError) as exc:
            raise RawDataError(f"{shown}: not a readable Parquet file: {exc}") from exc
        return [Record(f"row {i}", row) for i, row in enumerate(table.to_pylist())]
    text = decode_text(data, shown)
    reader = {".jsonl": _jsonl, ".json": _json, ".csv": _csv}[fmt]
    return list(reader(text, shown))
