"""Errors raised when raw input files cannot be read faithfully, and the one way raw text is decoded.

A `RawDataError` always names the file and, where it applies, the row, record, dialogue, turn or column,
so a user can open the file and find the problem.

Text is decoded by its byte-order mark (UTF-8, UTF-16 LE/BE, UTF-32 LE/BE), otherwise as strict UTF-8:
guessing a legacy code page would silently change what the text says. A file that is not valid UTF-8
fails with the likely encoding and the command that converts it.
"""

from __future__ import annotations

import codecs
import json

# longest marks first: UTF-32 LE's mark starts with UTF-16 LE's
BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le", "UTF-32 LE"),
    (codecs.BOM_UTF32_BE, "utf-32-be", "UTF-32 BE"),
    (codecs.BOM_UTF8, "utf-8", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16 LE"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16 BE"),
)


class RawDataError(ValueError):
    """A raw data file is missing, malformed, or lacks a required field."""


def parse_json(text: str, where: str, expected: type, what: str, at_line: bool = True) -> object:
    """`text` as JSON of type `expected`; else a RawDataError at `where` naming the position (line and column,
    or the column only for one line of JSONL: `at_line=False`) or `what` was expected and what was found."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        position = f"line {exc.lineno} column {exc.colno}" if at_line else f"column {exc.colno}"
        raise RawDataError(f"{where}: invalid JSON at {position}: {exc.msg}") from exc
    if not isinstance(value, expected):
        raise RawDataError(f"{where}: {what}, found {type(value).__name__}")
    return value


def detect_bom(data: bytes) -> tuple[str, str, int] | None:
    """(codec, display name, mark length) of the byte-order mark `data` starts with, or None."""
    for mark, codec, label in BOMS:
        if data.startswith(mark):
            return codec, label, len(mark)
    return None


def likely_encoding(data: bytes) -> str:
    """A guess for the message only (never used to decode): UTF-16/32 without a mark leave NUL bytes."""
    head = data[:4096]
    if head and head.count(b"\x00") > len(head) // 4:
        even, odd = head[0::2].count(0), head[1::2].count(0)
        if head.count(b"\x00") > len(head) // 2:
            return "UTF-32 without a byte-order mark"
        return f"UTF-16 {'LE' if odd > even else 'BE'} without a byte-order mark"
    return "a legacy 8-bit code page such as Windows-1252 or Latin-1"


def decode_text(data: bytes, source: str) -> str:
    """`data` decoded by its byte-order mark, otherwise as strict UTF-8 (the mark is removed)."""
    bom = detect_bom(data)
    codec, label, skip = bom if bom else ("utf-8", "UTF-8", 0)
    try:
        return data[skip:].decode(codec)
    except UnicodeDecodeError as exc:
        start = exc.start + skip
        line = data[:start].count(b"\n") + 1 if not bom or codec == "utf-8" else None
        where = f"byte offset {start}" + (f" (line {line})" if line else "")
        guess = "" if bom else f"; the file looks like {likely_encoding(data)}"
        raise RawDataError(
            f"{source}: invalid {label} at {where}: {data[start : exc.end + skip]!r} ({exc.reason}){guess}. "
            f"Save it as UTF-8 (e.g. `iconv -f <encoding> -t UTF-8 in > out`, or 'CSV UTF-8' in a spreadsheet)"
        ) from exc
