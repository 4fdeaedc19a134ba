"""The web UI in a real browser, on one `dagster dev` for the whole module: `python -m
llama_sft_dagster.cli.ui` (what `make ui` runs) on a copy of the session's `make demo` state, started as a
background job of a script starts (SIGINT ignored). Headless Debian chromium (driven by Playwright) checks what a
newcomer sees after `make demo` (no Unsynced asset, the lineage's names, the run report's tables and links,
MLflow's runs table), then materializes the raw stage through the UI's "Materialize all" button, and the last
test stops the server with SIGTERM. Screenshots under test-artifacts/. Needs /usr/bin/chromium (`make browser`).
"""

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from llama_sft_dagster.assets.source_table import SOURCES
from support.paths import REPO
from support.ui_server import LOCATION, free_port, graphql, ui_server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS = REPO / "test-artifacts"
RAW_ASSETS = [s.raw_asset for s in SOURCES]  # every source of the table (a team's conversations: off, 0 rows)
RAW_STAGE = [*RAW_ASSETS, "raw_pairs"]  # tag stage=raw (every asset shares one group)

pytestmark = [pytest.mark.slow, pytest.mark.browser]


RUNS_QUERY = "{ runsOrError { ... on Runs { results { runId status assetSelection { path } } } } }"


def run_ids(base: str) -> set[str]:
    return {r["runId"] for r in graphql(base, RUNS_QUERY)["runsOrError"]["results"]}


def wait_for_new_runs(base: str, before: set[str], timeout_s: float = 180) -> list[dict]:
    """The runs not in `before`, once there is one and every one of them has finished."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = [r for r in graphql(base, RUNS_QUERY)["runsOrError"]["results"] if r["runId"] not in before]
        if runs and all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs):
            return runs
        time.sleep(1)
    raise TimeoutError(f"runs not finished within {timeout_s} s: {runs}")


@pytest.fixture(scope="module")
def ui_state(demo_cli_run, tmp_path_factory) -> Path:
    """A copy of the session's demo state for this module's server: the raw stage's materialization below writes
    to it while other tests (other xdist workers) read the original."""
    assert demo_cli_run.returncode == 0, demo_cli_run.stdout[-2000:]
    state = tmp_path_factory.mktemp("ui") / "state"
    shutil.copytree(demo_cli_run.state, state, symlinks=True)
    return state


@pytest.fixture(scope="module")
def demo_ui(ui_state):
    """The module's one `make ui` server, on its copy of the demo state; (base URL, process)."""
    with ui_server(ui_state, sigint_ignored=True) as served:
        yield served


def wait_for_graph_nodes(page, url: str, names: list[str], shot: Path, tries: int = 2) -> None:
    """Open `url` and wait until each of `names` is drawn as a node of the graph, without a click ("Expand all
    groups" is not needed). A page that is still loading after 90 s (seen once with both test workers busy) is
    screenshotted and loaded again, up to `tries` loads (30 s each after the first: by then the app is cached);
    collapsed groups fail every try.

    The job page needs more tries than the lineage page: Dagster's UI sometimes fits that graph to the narrow pane
    beside the job's Info panel, at a zoom that draws edges but no node (a race in the UI, not in this project:
    2 of 6 loads of one page by one browser on an idle machine, test-artifacts/*_timeout.png). A reload draws it
    at the readable zoom."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(1, tries + 1):
        page.goto(url, wait_until="networkidle")
        timeout = 90_000 if attempt == 1 else 30_000
        try:
            for name in names:
                page.locator("svg").get_by_text(name, exact=True).first.wait_for(state="visible", timeout=timeout)
            break
        except PlaywrightTimeout:
            page.screenshot(path=str(shot.with_name(f"{shot.stem}_try{attempt}_timeout.png")))
            if attempt == tries:
                raise
    page.screenshot(path=str(shot))


def open_browser(pw):
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
    # tall enough for the whole asset catalog: its list renders only the rows in view
    page = browser.new_page(viewport={"width": 1600, "height": 2400})
    # page loads wait for network idle: Playwright's 30 s default ran out on the catalog (/assets) while the other
    # worker restarted the deployment's servers (the 27cf8e2 run); the waits that follow are 30-90 s
    page.set_default_navigation_timeout(90_000)
    # the newsletter dialog a fresh profile gets, whenever it pops up
    page.add_locator_handler(page.get_by_role("button", name="Skip"), lambda skip: skip.click())
    return browser, page


STALE_QUERY = "{ assetNodes { assetKey { path } isObservable staleStatus staleCauses { reason } } }"


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed: run `make browser`")
def test_ui_after_make_demo_is_clean_and_shows_the_run_report(demo_cli_run, demo_ui):
    """After `make demo`: nothing Unsynced, the run on the sft_pipeline job page, the run report with the
    funnel and an inline plot visible without a click. Screenshots: test-artifacts/ui_run_report.png."""
    from playwright.sync_api import sync_playwright

    assert demo_cli_run.returncode == 0, demo_cli_run.stdout[-2000:]
    run_id = next(line.split()[1] for line in demo_cli_run.lines if line.startswith("run "))
    ARTIFACTS.mkdir(exist_ok=True)
    base, proc = demo_ui
    with sync_playwright() as pw:
        nodes = graphql(base, STALE_QUERY)["assetNodes"]
        stale = [(n["assetKey"]["path"], n["staleCauses"]) for n in nodes if n["staleStatus"] == "STALE"]
        assert not stale, f"Unsynced after make demo: {stale}"
        # every asset of the pipeline was materialized; only the rank sweep (its own job) is left for the user
        missing = sorted(n["assetKey"]["path"][-1] for n in nodes if n["staleStatus"] == "MISSING")
        assert missing == ["rank_sweep_report"], missing
        browser, page = open_browser(pw)
        page.goto(f"{base}/asset-groups~tag:stage=raw", wait_until="networkidle")
        page.get_by_text("raw_pairs", exact=True).first.wait_for(timeout=60_000)
        page.get_by_text("Materialized").first.wait_for(timeout=60_000)
        assert page.get_by_text("Unsynced").count() == 0

        page.goto(f"{base}/locations/{LOCATION}/jobs/sft_pipeline/runs", wait_until="networkidle")
        page.get_by_text(run_id[:8]).first.wait_for(timeout=60_000)

        page.goto(f"{base}/assets/run_report", wait_until="networkidle")
        page.get_by_text("word_count_filtered").first.wait_for(timeout=60_000)  # a row of the funnel table
        plot = page.locator('img[src^="data:image/png"]').first
        plot.wait_for(state="visible", timeout=30_000)
        box = plot.bounding_box()
        assert box and box["width"] > 100 and box["height"] > 30
        page.screenshot(path=str(ARTIFACTS / "ui_run_report.png"), full_page=True)
        browser.close()
        assert proc.poll() is None


def summary_url(demo_run, label: str) -> str:
    """The URL `make demo`'s closing summary prints after `label` (e.g. "MLflow runs")."""
    return next(line.split()[-1] for line in demo_run.lines if line.strip().startswith(label))


@contextlib.contextmanager
def served(cmd: list[str], url: str, log_path: Path, env: dict | None = None, timeout_s: float = 180):
    """A UI server (MLflow, TensorBoard) as the Makefile starts it, until `url` answers; stopped by its PID."""
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            assert proc.poll() is None, f"{cmd[0]} exited: {log_path.read_text()[-2000:]}"
            try:
                urllib.request.urlopen(url, timeout=5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        finally:
            log.close()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed: run `make browser`")
def test_lineage_names_every_asset_and_the_report_covers_the_run(demo_cli_run, demo_ui):
    """After `make demo`: the lineage (global graph and job page) opens with the asset names readable, not
    as collapsed group boxes; run_report shows its tables in place (funnel, losses with their definitions,
    evaluation, champion decision, every check of the graph with the count), none clipped at 1600 px, and its
    links in place.
    Screenshots: test-artifacts/ui_lineage.png, ui_job_graph.png, ui_run_report_tables.png."""
    from playwright.sync_api import sync_playwright

    from llama_sft_dagster.definitions import build_defs

    assert demo_cli_run.returncode == 0, demo_cli_run.stdout[-2000:]
    checks = sorted(k.name for k in build_defs("demo").resolve_asset_graph().asset_check_keys)
    ARTIFACTS.mkdir(exist_ok=True)
    # asset nodes in the graph itself (the lineage page's side list names every asset anyway); the graph renders
    # the nodes in view, long names shortened at the fit-to-screen zoom: these are at its left end, in full
    # (base_model is no longer among them: it follows base_tokenizer, which follows raw_pairs in the demo profile)
    names = ["bitext_raw", "multiwoz_raw", "raw_pairs"]
    base, proc = demo_ui
    with sync_playwright() as pw:
        browser, page = open_browser(pw)
        for url, shot, tries in [
            (f"{base}/asset-groups", "ui_lineage.png", 2),
            (f"{base}/locations/{LOCATION}/jobs/sft_pipeline", "ui_job_graph.png", 5),
        ]:
            wait_for_graph_nodes(page, url, names, ARTIFACTS / shot, tries)

        page.goto(f"{base}/assets/run_report", wait_until="networkidle")
        page.get_by_text("top drop reasons", exact=True).first.wait_for(state="visible", timeout=60_000)
        for text in ["definition", "evaluation_loss", "held_out_loss", "registered version", "promoted"]:
            assert page.get_by_text(text, exact=True).first.is_visible(), text  # table cells, in place
        for check in checks:  # every check of the graph is a row of the checks table
            assert page.get_by_text(check, exact=False).count() > 0, check
        # nothing clipped at 1600 px: the metadata's Key/Timestamp/Value table fits its column without scrolling
        wide, room = page.locator("div[class*=AssetEventMetadataEntriesTable]").first.evaluate(
            "c => [c.scrollWidth, c.clientWidth]"
        )
        assert wide <= room, f"run_report's metadata is {wide} px wide in a {room} px column: clipped at 1600 px"
        count = page.get_by_text(re.compile(rf"^\d+ of {len(checks)}$")).first
        assert count.is_visible(), f"checks_passed should read 'N of {len(checks)}'"
        hrefs = page.locator("a[href^='http://127.0.0.1']").evaluate_all("els => els.map(e => e.href)")
        assert any("/#/experiments/" in h and "/runs?workflowType=machine_learning" in h for h in hrefs), hrefs
        assert any("/#/experiments/" in h and "/runs/" in h and "workflowType=machine_learning" in h for h in hrefs)
        assert any("/#/models/" in h and "/versions/" in h for h in hrefs), hrefs
        assert any(h.startswith("http://127.0.0.1:6006/?runFilter=") for h in hrefs), hrefs
        page.screenshot(path=str(ARTIFACTS / "ui_run_report_tables.png"), full_page=True)
        browser.close()
        assert proc.poll() is None


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed: run `make browser`")
def test_mlflow_link_opens_the_runs_table_in_a_fresh_browser(demo_cli_run):
    """The experiment URL `make demo` prints lands a fresh browser profile on MLflow's runs table (not on its
    GenAI overview), and the training run's page lists its registered model version.
    Screenshots: test-artifacts/mlflow_runs.png, mlflow_run.png."""
    from playwright.sync_api import sync_playwright

    assert demo_cli_run.returncode == 0, demo_cli_run.stdout[-2000:]
    state, port = demo_cli_run.state, free_port()
    runs_url = summary_url(demo_cli_run, "MLflow runs").replace(":5000", f":{port}")
    run_url = summary_url(demo_cli_run, "MLflow run (").replace(":5000", f":{port}")
    # what `make mlflow` runs, on the demo's store and a free port
    cmd = [str(Path(sys.executable).parent / "mlflow"), "ui", "--backend-store-uri", f"sqlite:///{state}/mlflow.db"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    ARTIFACTS.mkdir(exist_ok=True)
    with served(cmd, f"http://127.0.0.1:{port}/health", state / "mlflow_ui.log"), sync_playwright() as pw:
        browser, page = open_browser(pw)  # a new profile: no view remembered in localStorage
        page.goto(runs_url, wait_until="domcontentloaded")  # MLflow pages poll: never network-idle
        page.get_by_text("train_adapter").first.wait_for(state="visible", timeout=60_000)  # a row of the table
        assert "/runs" in page.url and "genai" not in page.url and "overview" not in page.url, page.url
        assert page.get_by_text("adapter_evaluation").first.is_visible()
        page.screenshot(path=str(ARTIFACTS / "mlflow_runs.png"))
        page.goto(run_url, wait_until="domcontentloaded")
        page.get_by_text("llama-sft-merged").first.wait_for(state="visible", timeout=60_000)  # registered model
        assert "genai" not in page.url, page.url
        page.screenshot(path=str(ARTIFACTS / "mlflow_run.png"))
        browser.close()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed: run `make browser`")
def test_asset_graph_lists_assets_and_materializes_raw_group(demo_ui, ui_state):
    """The catalog lists the pipeline's assets; the lineage filtered to the raw stage materializes it with the
    UI's "Materialize all" button, in one run of exactly the raw stage's assets, which succeeds. (After the
    other tests of the module: it adds a run to the module's copy of the demo instance, with the same data versions.)"""
    from playwright.sync_api import sync_playwright

    base, proc = demo_ui
    before = run_ids(base)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser, page = open_browser(pw)
        page.goto(f"{base}/assets", wait_until="networkidle")
        for name in [
            "bitext_raw",
            "raw_pairs",
            "word_count_filtered",
            "english_filtered",
            "train_pairs",
            "validation_pairs",
        ]:
            page.get_by_text(name, exact=True).first.wait_for(timeout=30_000)

        # the lineage filtered to the raw stage (the selection after "~", as the UI's filter box writes it)
        page.goto(f"{base}/asset-groups~tag:stage=raw", wait_until="networkidle")
        for name in RAW_STAGE:
            page.get_by_text(name, exact=True).first.wait_for(timeout=30_000)
        # the button's accessible name starts with its icon's name: match the words, and check the run's selection
        page.get_by_role("button", name="Materialize all").first.click()
        runs = wait_for_new_runs(base, before)
        assert [r["status"] for r in runs] == ["SUCCESS"], runs
        assert sorted(p["path"][0] for p in runs[0]["assetSelection"]) == sorted([*RAW_ASSETS, "raw_pairs"])

        page.reload(wait_until="networkidle")
        page.get_by_text("Materialized").first.wait_for(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "ui_asset_graph.png"))
        browser.close()
    assert (ui_state / "artifacts" / "raw_pairs" / "data.parquet").exists()
    assert proc.poll() is None


def test_ui_started_with_sigint_ignored_still_stops_on_sigterm(demo_ui):
    """The module's server was started as a background job of a non-interactive shell starts, SIGINT ignored;
    the launcher undoes that, so SIGTERM to its PID stops it and its children (last test: it stops the server)."""
    _, proc = demo_ui
    assert proc.poll() is None
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) is not None
    print(f"dagster dev stopped {time.monotonic() - started:.1f} s after SIGTERM")
