"""A build that a whole pytest session shares once, also across pytest-xdist workers (`make test` runs two):
the first worker to ask builds it under a file lock in the folder all workers of the session share, the others
wait for the lock and read what it recorded."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable
from pathlib import Path


def session_root(tmp_path_factory) -> Path:
    """The session's own temporary folder: the basetemp, or under xdist the parent of every worker's
    (`<basetemp>/popen-gw0`, `popen-gw1`, ...)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def build_once(tmp_path_factory, name: str, build: Callable[[Path], dict]) -> tuple[Path, dict]:
    """(folder, record) of `build(folder)`, run once per session; the record (JSON-able) is kept beside it."""
    root = session_root(tmp_path_factory)
    folder, record = root / name, root / f"{name}.json"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes; a worker that died lets go too
        if not record.exists():
            record.write_text(json.dumps(build(folder)))
    return folder, json.loads(record.read_text())
