"""The web UI in a real browser: `python -m llama_sft_dagster.cli.ui` (what `make ui` runs) starts
`dagster dev` on 127.0.0.1; headless Debian chromium (driven by Playwright) lists the project's assets,
materializes the raw group through the UI's "Materialize all" button, and the run succeeds.
Screenshot: test-artifacts/ui_asset_graph.png. Needs /usr/bin/chromium (`make browser`).
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from support.paths import REPO

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"]
ARTIFACTS = REPO / "test-artifacts"
LOCATION = "llama_sft_dagster.definitions"
LOCATIONS_QUERY = "{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError { __typename } } } } }"
RAW_GROUP = ["bitext_source", "multiwoz_source", "bitext_raw", "multiwoz_raw", "raw_pairs"]

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(base: str, query: str) -> dict:
    request = urllib.request.Request(f"{base}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.loads(response.read())
    assert not body.get("errors"), body["errors"]
    return body["data"]


def wait_for_server(base: str, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"dagster dev exited with {proc.returncode}"
        try:
            entries = graphql(base, LOCATIONS_QUERY)["workspaceOrError"]["locationEntries"]
            if {(e["name"], e["locationOrLoadError"]["__typename"]) for e in entries if e["locationOrLoadError"]} == {
                    (LOCATION, "RepositoryLocation")}:
                return
        except OSError:
            pass
        time.sleep(1)
    raise TimeoutError(f"{base} did not serve the code location within {timeout_s} s")


def wait_for_runs(base: str, timeout_s: float = 180) -> list[dict]:
    query = "{ runsOrError { ... on Runs { results { runId status assetSelection { path } } } } }"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = graphql(base, query)["runsOrError"]["results"]
        if runs and all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs):
            return runs
        time.sleep(1)
    raise TimeoutError(f"runs not finished within {timeout_s} s: {runs}")


@pytest.fixture
def dagster_ui(isolated_state):
    port = free_port()
    env = {**os.environ, "SFT_STATE_DIR": str(isolated_state), "DAGSTER_HOME": str(isolated_state / "dagster_home")}
    log = open(isolated_state / "dagster_dev.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "llama_sft_dagster.cli.ui", "--port", str(port)],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_server(base, proc)
        yield base, proc
    finally:
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)  # by its PID only; dagster dev stops its own children
        try:
            proc.wait(timeout=30)
        finally:
            log.close()
        print(f"dagster dev stopped {time.monotonic() - started:.1f} s after SIGTERM")


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed: run `make browser`")
def test_asset_graph_lists_assets_and_materializes_raw_group(dagster_ui, isolated_state):
    from playwright.sync_api import sync_playwright

    base, proc = dagster_ui
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        # the newsletter dialog a fresh profile gets, whenever it pops up
        page.add_locator_handler(page.get_by_role("button", name="Skip"), lambda skip: skip.click())
        page.goto(f"{base}/assets", wait_until="networkidle")
        for name in ["bitext_raw", "raw_pairs", "word_count_filtered", "english_filtered", "train_pairs", "validation_pairs"]:
            page.get_by_text(name, exact=True).first.wait_for(timeout=30_000)

        page.goto(f"{base}/locations/{LOCATION}/asset-groups/raw", wait_until="networkidle")
        for name in RAW_GROUP:
            page.get_by_text(name, exact=True).first.wait_for(timeout=30_000)
        page.get_by_role("button", name="Materialize all (3)").click()
        runs = wait_for_runs(base)
        assert [r["status"] for r in runs] == ["SUCCESS"], runs
        assert sorted(p["path"][0] for p in runs[0]["assetSelection"]) == ["bitext_raw", "multiwoz_raw", "raw_pairs"]

        page.reload(wait_until="networkidle")
        page.get_by_text("Materialized").first.wait_for(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "ui_asset_graph.png"))
        browser.close()
    assert (isolated_state / "artifacts" / "raw_pairs" / "data.parquet").exists()
    assert proc.poll() is None
