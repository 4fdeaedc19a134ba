"""A real MLflow tracking server (MLflow's own Flask app and REST handlers on a SQLite store) served from a thread
of the test process on a 127.0.0.1 port, so a test can stop it and start it again on the same port in well under a
second. `mlflow server` as a process took 38-76 s to answer /health on this machine (tests/e2e/test_deployment.py
runs that one)."""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from pathlib import Path


def _free_port_below_ephemeral() -> int:
    """A free port below the kernel's ephemeral range, so no outgoing connection's source port takes it while the
    server is stopped (a port from bind(0) was taken that way here between a stop and a start)."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in random.sample(range(max(1024, low - 12000), low), 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


class MlflowServer:
    def __init__(self, root: Path):
        root.mkdir(parents=True, exist_ok=True)
        # what `mlflow server` hands its app: read by mlflow.server.handlers when a store is first used
        settings = {
            "_MLFLOW_SERVER_FILE_STORE": f"sqlite:///{root / 'server.db'}",
            "_MLFLOW_SERVER_ARTIFACT_ROOT": "mlflow-artifacts:/",
            "_MLFLOW_SERVER_ARTIFACT_DESTINATION": str(root / "artifacts"),
            "_MLFLOW_SERVER_SERVE_ARTIFACTS": "true",
        }
        self._saved = {k: os.environ.get(k) for k in settings}
        os.environ.update(settings)
        self.port = _free_port_below_ephemeral()
        self.uri = f"http://127.0.0.1:{self.port}"
        self._server = None

    def start(self) -> MlflowServer:
        from mlflow.server import app, handlers
        from werkzeug.serving import WSGIRequestHandler, make_server

        class Quiet(WSGIRequestHandler):
            def log_request(self, *args) -> None:  # one line per request would drown the test's output
                pass

        handlers._tracking_store = handlers._model_registry_store = handlers._artifact_repo = None  # this root's
        deadline = time.monotonic() + 30
        while True:  # a connection of the last life in TIME_WAIT, or a client's source port, may hold it a moment
            try:
                self._server = make_server("127.0.0.1", self.port, app, threaded=True, request_handler=Quiet)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def close(self) -> None:
        """Stop it and give the process back its environment (later tests' subprocesses must not inherit it)."""
        self.stop()
        for k, v in self._saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    def listening(self) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0
