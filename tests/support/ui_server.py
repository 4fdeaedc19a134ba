"""`make ui`'s server (python -m llama_sft_dagster.cli.ui, which starts `dagster dev`) for the browser and CLI
tests: a free port, its GraphQL API, and the server as a context manager that waits for the code location."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from llama_sft_dagster.cli.deploy import free_port
from support.paths import REPO

LOCATION = "llama_sft_dagster"  # workspace.yaml's name: `make ui` and `make demo` share it
LOCATIONS_QUERY = (
    "{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError { __typename } } } } }"
)


def graphql(base: str, query: str) -> dict:
    request = urllib.request.Request(
        f"{base}/graphql", data=json.dumps({"query": query}).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.loads(response.read())
    assert not body.get("errors"), body["errors"]
    return body["data"]


def wait_for_server(base: str, proc: subprocess.Popen, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"dagster dev exited with {proc.returncode}"
        try:
            entries = graphql(base, LOCATIONS_QUERY)["workspaceOrError"]["locationEntries"]
            if {(e["name"], e["locationOrLoadError"]["__typename"]) for e in entries if e["locationOrLoadError"]} == {
                (LOCATION, "RepositoryLocation")
            }:
                return
        except OSError:
            pass
        time.sleep(1)
    raise TimeoutError(f"{base} did not serve the code location within {timeout_s} s")


def ignore_sigint() -> None:
    """What a background job of a non-interactive shell starts with (`make ui &` in a script)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def ui_server(state: Path, sigint_ignored: bool = False):
    """`make ui` on `state`; yields (base URL, process). Stopped by SIGTERM to its PID (dagster dev stops its
    own children) unless a test stopped it already."""
    port = free_port()
    env = {**os.environ, "SFT_STATE_DIR": str(state), "DAGSTER_HOME": str(state / "dagster_home")}
    log = open(state / f"dagster_dev_{port}.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_sft_dagster.cli.ui", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=ignore_sigint if sigint_ignored else None,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_server(base, proc)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
