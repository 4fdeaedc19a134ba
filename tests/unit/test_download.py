"""Downloads against a real HTTP server on 127.0.0.1: resume after a dropped connection, timeouts and
retries, atomic writes, permanent errors; the MultiWOZ archive through the same path."""

import http.server
import io
import json
import threading
import zipfile

import pytest

from llama_sft_dagster.core.sources import download as dl
from llama_sft_dagster.core.sources.multiwoz import download_multiwoz_archive, load_multiwoz_folder

PAYLOAD = bytes(range(256)) * 4000  # 1 MB


class Server:
    """Serves `files` with Range support; `plan` is a list of per-request behaviours, then 'ok'."""

    def __init__(self, files: dict[str, bytes], plan: list[str]):
        self.files, self.plan, self.requests = files, list(plan), []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                mode = server.plan.pop(0) if server.plan else "ok"
                server.requests.append({"path": self.path, "range": self.headers.get("Range"), "mode": mode})
                if mode == "sleep":
                    threading.Event().wait(1.5)
                    return
                if mode in ("404", "503"):
                    self.send_error(int(mode))
                    return
                body = server.files[self.path]
                start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
                if mode == "ignore_range":
                    start = 0
                if start:
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                part = body[start:]
                self.wfile.write(part[: len(part) // 3] if mode == "drop" else part)  # "drop": cut the connection

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers = []

    def start(files, plan=()):
        servers.append(Server(files, plan))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def no_sleep(_):
    pass


def test_dropped_connection_resumes_with_a_range_request(serve, tmp_path):
    server = serve({"/f": PAYLOAD}, ["drop", "drop"])
    out = dl.download(server.url + "/f", tmp_path / "f.bin", retries=3, sleep=no_sleep)
    assert out.read_bytes() == PAYLOAD
    assert [r["range"] for r in server.requests][0] is None
    assert all(r["range"] and r["range"] != "bytes=0-" for r in server.requests[1:])  # resumed, not restarted
    assert len(server.requests) == 3 and not (tmp_path / "f.bin.part").exists()


def test_partial_file_of_an_interrupted_run_is_resumed(serve, tmp_path):
    server = serve({"/f": PAYLOAD})
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD[:1000])
    dl.download(server.url + "/f", tmp_path / "f.bin", sleep=no_sleep)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD
    assert server.requests[0]["range"] == "bytes=1000-"


def test_server_that_ignores_range_gets_the_whole_file_again(serve, tmp_path):
    server = serve({"/f": PAYLOAD}, ["drop", "ignore_range"])
    dl.download(server.url + "/f", tmp_path / "f.bin", retries=2, sleep=no_sleep)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD  # not the prefix twice


def test_timeout_and_5xx_are_retried_with_backoff(serve, tmp_path):
    server = serve({"/f": PAYLOAD}, ["sleep", "503"])
    waits = []
    dl.download(server.url + "/f", tmp_path / "f.bin", timeout=0.5, retries=2, backoff_s=1.0, sleep=waits.append)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD and waits == [1.0, 2.0]


def test_giving_up_leaves_no_file_in_place(serve, tmp_path):
    server = serve({"/f": PAYLOAD}, ["drop"] * 3)
    with pytest.raises(dl.DownloadError, match="failed after 3 attempts"):
        dl.download(server.url + "/f", tmp_path / "f.bin", retries=2, sleep=no_sleep)
    assert not (tmp_path / "f.bin").exists() and (tmp_path / "f.bin.part").stat().st_size > 0


def test_404_fails_at_once_naming_the_url(serve, tmp_path):
    server = serve({"/f": PAYLOAD}, ["404"])
    with pytest.raises(dl.DownloadError, match=r"/missing: HTTP 404"):
        dl.download(server.url + "/missing", tmp_path / "f.bin", retries=3, sleep=no_sleep)
    assert len(server.requests) == 1


def _archive(dialogues_by_split: dict[str, list]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for split, dialogues in dialogues_by_split.items():
            zf.writestr(f"multiwoz-abc/data/MultiWOZ_2.2/{split}/dialogues_001.json", json.dumps(dialogues))
    return buf.getvalue()


def _dialogue(did):
    return {"dialogue_id": did, "services": [], "turns": [{"turn_id": "0", "speaker": "USER", "utterance": "hi"}]}


def test_multiwoz_archive_downloads_resumably_and_reads_only_the_chosen_splits(serve, tmp_path):
    body = _archive({"train": [_dialogue("T1")], "dev": [_dialogue("D1")], "test": [_dialogue("X1")]})
    server = serve({"/a.zip": body}, ["drop"])
    folder = download_multiwoz_archive(server.url + "/a.zip", tmp_path / "dl", timeout=5, retries=2)
    assert [r["range"] is not None for r in server.requests] == [False, True]
    assert not list((tmp_path / "dl").glob("*.zip*"))  # archive removed after extraction
    assert set(load_multiwoz_folder(folder, splits=["train"]).column("dialogue_id").to_pylist()) == {"T1"}
    assert set(load_multiwoz_folder(folder).column("split").to_pylist()) == {"train", "dev", "test"}
