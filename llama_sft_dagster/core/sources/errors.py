"""Errors raised when raw input files cannot be read faithfully.

A `RawDataError` always names the file and, where it applies, the row, dialogue, turn or column,
so a user can open the file and find the problem.
"""

from __future__ import annotations


class RawDataError(ValueError):
    """A raw data file is missing, malformed, or lacks a required field."""


def decode_utf8(data: bytes, source: str) -> str:
    """Decode `data` strictly; invalid bytes are an error, since replacing them would corrupt text."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise RawDataError(
            f"{source}: invalid UTF-8 at byte offset {exc.start} (line {line}): "
            f"{data[exc.start : exc.end]!r} ({exc.reason})"
        ) from exc
