"""A local stand-in for the Hugging Face hub's HTTP API on 127.0.0.1: it answers each request with the next
scripted response and records what it was asked (path and Authorization header). The real client
(`huggingface_hub.HfApi(endpoint=server.url)`, or HF_ENDPOINT in a subprocess) talks to it over HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SHA = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Reply:
    status: int
    error_code: str | None = None  # the hub's X-Error-Code header (GatedRepo, RepoNotFound...)
    body: dict = field(default_factory=dict)


def repo_info(repo_id: str, gated: str | bool = False) -> Reply:
    """A 200 answer to /api/models/<id> or /api/datasets/<id>: the fields the project reads."""
    return Reply(200, body={"id": repo_id, "sha": SHA, "gated": gated, "private": False, "siblings": []})


@dataclass
class FakeHub:
    url: str
    script: list[Reply]
    asked: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Authorization header)

    @property
    def tokens(self) -> list[str | None]:
        return [auth for _, auth in self.asked]


@contextmanager
def fake_hub(script: list[Reply], default: Reply | None = None) -> Iterator[FakeHub]:
    """Serve `script` in order, then `default` (a 500 unless given) to every further request."""
    hub = FakeHub("", list(script))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            hub.asked.append((self.path, self.headers.get("Authorization")))
            reply = hub.script.pop(0) if hub.script else (default or Reply(500))
            body = json.dumps(reply.body or {"error": f"status {reply.status}"}).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if reply.error_code:
                self.send_header("X-Error-Code", reply.error_code)
            self.end_headers()
            self.wfile.write(body)

        do_HEAD = do_GET  # noqa: N815

        def log_message(self, *args):  # keep the test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
