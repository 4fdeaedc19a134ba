"""OS file locks that say who holds them: one writer per asset, one `sft-materialize-stale` per instance.

Why file locks and not only Dagster pools: on the SQLite instance storage a pool slot can be granted
twice to steps asking at the same instant (see resources/gpu.py), and a killed run keeps its slot until
housekeeping frees it. A `flock` cannot be granted twice and the kernel drops it when the holder dies.

    python -c "from llama_sft_dagster.core.data.locks import FileLock; l = FileLock('/tmp/x.lock'); l.acquire('me')"
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO


class FileLock:
    """An exclusive `flock` on `path`; the holder's description is written into the file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._handle: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._handle is not None

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "another process"
        except OSError:
            return "another process"

    def try_acquire(self, holder: str) -> bool:
        return self._acquire(holder, blocking=False)

    def acquire(self, holder: str, on_wait: Callable[[str], None] | None = None) -> None:
        """Take the lock, waiting if needed; `on_wait(current holder)` is called once before waiting."""
        if self._acquire(holder, blocking=False):
            return
        if on_wait is not None:
            on_wait(self.holder())
        self._acquire(holder, blocking=True)

    def _acquire(self, holder: str, blocking: bool) -> bool:
        if self._handle is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.close()
            return False
        except BaseException:
            handle.close()
            raise
        handle.seek(0)
        handle.truncate()
        handle.write(f"{holder} (pid {os.getpid()})\n")
        handle.flush()
        self._handle = handle
        return True

    def release(self) -> None:
        if self._handle is None:
            return
        try:
            self._handle.truncate(0)
            fcntl.flock(self._handle, fcntl.LOCK_UN)
        finally:
            self._handle.close()
            self._handle = None
