"""A MultiWOZ archive download cut off mid-file (connection dropped, or the process SIGKILLed) leaves nothing that
a later run takes for a complete download: the later run downloads again and reads every dialogue.
A local HTTP server stands in for GitHub (no network here)."""

import http.client
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile

import pytest

from llama_sft_dagster.core.sources.errors import RawDataError
from llama_sft_dagster.core.sources.multiwoz import download_multiwoz_archive, load_multiwoz_folder
from support.paths import REPO

DIALOGUES = 40


def _archive_bytes(tmp_path) -> bytes:
    turns = [{"speaker": s, "utterance": os.urandom(1500).hex()} for s in ("USER", "SYSTEM")]
    dialogues = [{"dialogue_id": f"D{i}.json", "turns": turns} for i in range(DIALOGUES)]  # ~240 KB, incompressible
    path = tmp_path / "repo.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("multiwoz-abc/data/MultiWOZ_2.2/train/dialogues_001.json", json.dumps(dialogues))
    return path.read_bytes()


@pytest.fixture
def server(tmp_path):
    """/full serves the archive; /cut sends half and closes; /nolength half without Content-Length;
    /stall sends half and then waits (until the test ends)."""
    body, release = _archive_bytes(tmp_path), threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            if self.path != "/nolength":
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body if self.path == "/full" else body[: len(body) // 2])
            self.wfile.flush()
            if self.path == "/stall":
                release.wait(60)
            self.close_connection = True

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", len(body)
    release.set()
    httpd.shutdown()


def _complete_download_works(url, dest):
    folder = download_multiwoz_archive(f"{url}/full", dest)
    assert load_multiwoz_folder(folder).num_rows == 2 * DIALOGUES


@pytest.mark.parametrize("path", ["/cut", "/nolength"])
def test_dropped_connection_leaves_nothing(server, tmp_path, path):
    url, _ = server
    dest = tmp_path / "dl"
    with pytest.raises((http.client.HTTPException, zipfile.BadZipFile, OSError, RawDataError)):
        download_multiwoz_archive(f"{url}{path}", dest, retries=0)  # retries: tests/unit/test_download.py
    assert not (dest / "MultiWOZ_2.2").exists()
    # only a `.part` file may stay: the next download of the same URL resumes it (core/sources/download.py)
    assert [p for p in dest.rglob("*") if p.is_file() and not p.name.endswith(".part")] == []
    _complete_download_works(url, dest)


def test_sigkill_mid_file_is_not_taken_for_a_complete_download(server, tmp_path):
    url, size = server
    dest = tmp_path / "dl"
    code = (
        "import sys; from llama_sft_dagster.core.sources.multiwoz import download_multiwoz_archive as d; "
        "d(sys.argv[1], sys.argv[2])"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, f"{url}/stall", str(dest)], cwd=REPO)
    deadline = time.monotonic() + 60
    while not any(p.stat().st_size > 0 for p in dest.rglob("*") if p.is_file()):  # bytes are arriving
        assert proc.poll() is None and time.monotonic() < deadline, "the download did not start"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    partial = [p for p in dest.rglob("*") if p.is_file()]
    assert partial and all(p.stat().st_size < size for p in partial)  # half a file is on disk ...
    assert not (dest / "MultiWOZ_2.2").exists()  # ... but not where a complete download goes
    _complete_download_works(url, dest)
