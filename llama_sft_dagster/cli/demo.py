"""Run the whole pipeline through the UI's code location, quietly: one line per stage, progress, a summary.

    python -m llama_sft_dagster.cli.demo [--job sft_pipeline] [-c recipes/small_rank.yaml]     (`make demo`)

What it does, and why:
- records the raw sources' versions first (the observations the `raw_data_sensor` would record), so the
  run's materializations carry them and the UI opens with nothing "Unsynced";
- creates the run from the code location of workspace.yaml, the one `make ui` serves, so the run shows on
  the job page and the timeline and re-executes from the UI without a "different code location" warning,
  then executes it in this process (in-process executor: no per-step subprocess start on a small machine);
- sends Dagster's own output (every event at DEBUG, library warnings) to `<state>/logs/<run id>.log`; the
  events also stay in the instance, so the UI shows them all;
- prints one line per stage as it finishes (rows in -> out, top drop reasons, seconds), the training
  progress lines train_adapter logs, and a closing summary (funnel, losses, where to look);
- on failure prints the one-line cause last and exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time
from pathlib import Path

from llama_sft_dagster.cli.home import ensure_dagster_home

REPO = Path(__file__).resolve().parents[2]
WORKSPACE = REPO / "workspace.yaml"
LOCATION = "llama_sft_dagster"
UI_URL = os.environ.get("SFT_UI_URL", "http://127.0.0.1:3000")
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}


@contextlib.contextmanager
def quiet_output(log_path: Path):
    """fds 1 and 2 go to `log_path` (Dagster's console logger, warnings, child processes); yields a
    writer on the original stdout for the lines meant for the person at the terminal."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    with open(log_path, "a", buffering=1) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        terminal = os.fdopen(os.dup(saved_out), "w", buffering=1)
        try:
            yield terminal
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)
            os.close(saved_out)
            os.close(saved_err)
            terminal.close()


def record_source_versions(instance, defs, run_config: dict | None = None) -> list[str]:
    """Report the sources' current versions as observations (what raw_data_sensor records on a tick), each
    source's resource configured as the run will configure it (a recipe's `resources:` section)."""
    from llama_sft_dagster.assets.source_table import SOURCE_NAMES
    from llama_sft_dagster.automation import source_observations

    configured = (run_config or {}).get("resources", {})
    resources = {k: defs.resources[k].model_copy(update=configured.get(k, {}).get("config", {})) for k in SOURCE_NAMES}
    events = source_observations(instance, defs.resolve_asset_graph(), resources)
    for event in events:
        instance.report_runless_asset_event(event)
    return [f"{e.asset_key.to_user_string()}={e.tags.get('dagster/data_version')}" for e in events]


def create_run(instance, workspace, job_name: str, run_config: dict, tags: dict):
    """A run of `job_name` created from the workspace's code location, exactly as the UI's launchpad does."""
    # No public API creates a run from a workspace's code location (what makes the run re-executable from the
    # UI) without a running webserver (DagsterGraphQLClient); these are what `dagster job launch` calls.
    from dagster._cli.job import _create_run  # the run creation `dagster job launch` uses
    from dagster._cli.workspace.cli_target import (  # the code location, repository and job of that workspace
        get_code_location_from_workspace,
        get_remote_job_from_remote_repo,
        get_remote_repository_from_code_location,
    )

    location = get_code_location_from_workspace(workspace, LOCATION)
    repo = get_remote_repository_from_code_location(location, None)
    job = get_remote_job_from_remote_repo(repo, job_name)
    return _create_run(
        instance=instance,
        code_location=location,
        remote_repo=repo,
        remote_job=job,
        run_config=run_config,
        tags=tags,
        op_selection=None,
        run_id=None,
    )


def execute(instance, run) -> None:
    # executes that run in this process (dg.execute_job would create another run, without the workspace origin)
    from dagster._core.execution.api import execute_run  # `dagster api execute_run` in process
    from dagster._utils.hosted_user_process import recon_job_from_origin  # the run's own job, from its origin

    execute_run(recon_job_from_origin(run.job_code_origin), run, instance)


def load_run_config(paths: list[str]) -> dict:
    import yaml

    config: dict = {}
    for path in paths:
        config = deep_merge_dicts(config, yaml.safe_load(Path(path).read_text()) or {})
    return deep_merge_dicts(IN_PROCESS, config)


def deep_merge_dicts(base: dict, extra: dict) -> dict:
    """`extra` over `base`, nested mappings merged key by key (a later recipe overrides an earlier one)."""
    merged = dict(base)
    for key, value in extra.items():
        both = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = deep_merge_dicts(merged[key], value) if both else value
    return merged


def follow(instance, run_id: str, printer, stop: threading.Event, interval_s: float = 0.5) -> None:
    """Feed the run's events to `printer` as they are stored, until `stop` is set and none are left."""
    cursor = None
    while True:
        stopping = stop.is_set()
        connection = instance.get_records_for_run(run_id, cursor=cursor)
        for record in connection.records:
            printer.handle(record.event_log_entry)
        cursor = connection.cursor
        if stopping and not connection.has_more:
            return
        if not connection.has_more:
            stop.wait(interval_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llama_sft_dagster.cli.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--job", default="sft_pipeline", help="job to run (default sft_pipeline)")
    parser.add_argument("-c", "--config", action="append", default=[], help="run-config YAML (recipes/), repeatable")
    args = parser.parse_args(argv)
    ensure_dagster_home()

    import dagster as dg

    from llama_sft_dagster.config.profiles import state_dir
    from llama_sft_dagster.logs.failure import failure_cause

    started = time.monotonic()
    log_path = state_dir().resolve() / "logs" / f"demo-{time.strftime('%Y%m%d-%H%M%S')}.log"
    with quiet_output(log_path) as terminal, dg.DagsterInstance.get() as instance:
        terminal.write(f"Dagster event log: {log_path}\n")
        try:
            run_id, ok = run_job(instance, args.job, load_run_config(args.config), terminal.write, log_path)
        except Exception as exc:  # before or around the run (config, code location): the cause, last
            import traceback

            traceback.print_exc()  # into the log file
            terminal.write(f"FAILED: {type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[-1]}\n")
            return 1
        if not ok:
            terminal.write(f"\nrun failed after {time.monotonic() - started:.0f} s; full log: {log_path}\n")
            terminal.write(f"{failure_cause(instance, run_id)}\n")
            return 1
    return 0


def run_job(instance, job_name: str, run_config: dict, say, log_path: Path) -> tuple[str, bool]:
    """Record source versions, create the run from the workspace, execute it while printing its stages."""
    import dagster as dg
    from dagster import __version__
    from dagster._cli.workspace.cli_target import get_workspace_from_cli_opts  # workspace.yaml, as `dagster dev`
    from dagster_shared.cli import WorkspaceOpts

    from llama_sft_dagster.cli.demo_output import StagePrinter, closing_summary
    from llama_sft_dagster.definitions import build_defs

    started = time.monotonic()
    try:
        versions = record_source_versions(instance, build_defs(), run_config)
        say(f"source versions recorded: {', '.join(versions)}\n" if versions else "source versions: unchanged\n")
    except Exception as exc:  # e.g. a missing file: the raw asset that reads it fails with the full story
        say(f"source versions not recorded ({type(exc).__name__}: {exc})\n")
    with get_workspace_from_cli_opts(instance, __version__, WorkspaceOpts(workspace=[str(WORKSPACE)])) as ws:
        run = create_run(instance, ws, job_name, run_config, {"sft/trigger": "make demo"})
    say(f"run {run.run_id} ({job_name}): {UI_URL}/runs/{run.run_id}\n")
    printer, stop = StagePrinter(say), threading.Event()
    watcher = threading.Thread(target=follow, args=(instance, run.run_id, printer, stop), daemon=True)
    watcher.start()
    try:
        execute(instance, run)
    finally:
        stop.set()
        watcher.join(timeout=30)
    if instance.get_run_by_id(run.run_id).status != dg.DagsterRunStatus.SUCCESS:
        return run.run_id, False
    say(closing_summary(run.run_id, printer, time.monotonic() - started, log_path, UI_URL))
    return run.run_id, True


if __name__ == "__main__":
    sys.exit(main())
