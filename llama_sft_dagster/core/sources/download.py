"""Network calls that survive a flaky connection: a resumable HTTP download and a retry helper.

`download` writes to `<dest>.part`, asks for the missing bytes with an HTTP Range request after a
failure (or after an interrupted run), checks the length the server announced, and renames the
finished file into place, so `dest` is either absent or complete. Each request has a socket timeout;
transient failures (timeouts, resets, 5xx, 408, 429) are retried with exponential backoff, other
HTTP errors (404, 403...) fail at once with the URL and the status.

    python -c "from llama_sft_dagster.core.sources.download import download; download('http://...', 'x.zip')"
"""

from __future__ import annotations

import http.client
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
CHUNK = 1 << 20
TRANSIENT_HTTP = {408, 425, 429, 500, 502, 503, 504}


class DownloadError(OSError):
    """A download failed for good (after its retries, or with a permanent HTTP error)."""


class _Incomplete(OSError):
    """The connection ended before the announced length: resume."""


def retrying(
    call: Callable[[], T],
    *,
    retries: int,
    backoff_s: float,
    transient: Callable[[BaseException], bool],
    what: str,
    sleep: Callable[[float], None] | None = None,
) -> T:
    """`call()`, retried up to `retries` times on errors `transient` accepts (backoff_s, 2x, 4x ...)."""
    sleep = sleep or time.sleep  # looked up per call, so tests can patch time.sleep
    for attempt in range(retries + 1):
        try:
            return call()
        except Exception as exc:
            if not transient(exc):
                raise
            if attempt == retries:
                raise DownloadError(f"{what}: failed after {retries + 1} attempts: {exc!r}") from exc
            sleep(backoff_s * 2**attempt)
    raise AssertionError("unreachable")


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code in TRANSIENT_HTTP
    return isinstance(
        exc, (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException, _Incomplete)
    )


def _fetch(url: str, part: Path, timeout: float) -> None:
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # our partial file is not a prefix the server knows: start over
            part.unlink()
            raise _Incomplete(f"range {have}- not satisfiable; restarting") from exc
        raise
    with response:
        resumed = have and response.status == 206
        match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range") or "")
        if resumed and (not match or int(match.group(1)) != have):
            raise DownloadError(f"{url}: server resumed at {response.headers.get('Content-Range')!r}, not byte {have}")
        length = response.headers.get("Content-Length")
        expected = (have if resumed else 0) + int(length) if length is not None else None
        with open(part, "ab" if resumed else "wb") as out:  # a 200 to a Range request is the whole file again
            # read1: what has arrived, so a stalled or killed download keeps every byte it received
            while chunk := response.read1(CHUNK):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    size = part.stat().st_size
    if expected is not None and size < expected:
        raise _Incomplete(f"got {size} of {expected} bytes")


def download(
    url: str,
    dest: str | Path,
    *,
    timeout: float = 60.0,
    retries: int = 4,
    backoff_s: float = 2.0,
    sleep: Callable[[float], None] | None = None,
) -> Path:
    """Download `url` to `dest` atomically, resuming a partial `<dest>.part`; returns `dest`."""
    dest = Path(dest)
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        retrying(
            lambda: _fetch(url, part, timeout),
            retries=retries,
            backoff_s=backoff_s,
            transient=_transient,
            what=url,
            sleep=sleep,
        )
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    os.replace(part, dest)
    return dest
