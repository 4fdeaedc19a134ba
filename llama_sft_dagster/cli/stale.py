"""Materialize only what is missing or stale, print which assets and why (Dagster's stale causes).

    sft-materialize-stale                       # whole graph, in the persistent instance
    sft-materialize-stale --select '*word_count_filtered' --dry-run
    sft-materialize-stale --one-run             # missing/stale + all downstream, one run

`dagster asset materialize` has no stale-only flag in 1.13 (`status:stale` in a selection raises
NotImplementedError) and Dagster's staleness looks one level up only. This command therefore:
1. records a new version of each raw source whose content/revision changed (as the sensor does);
2. runs, in "waves", the assets that are missing or stale (with their stale causes printed), then
   asks Dagster again, until nothing is stale: a child reruns only if its parent's content changed.
   `--one-run` instead runs missing/stale assets and everything downstream of them in one run.
Runs go to the persistent instance in DAGSTER_HOME (default .sft_state/dagster_home), so the web UI
shows them and staleness survives between commands.
"""

import argparse
import contextlib
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from llama_sft_dagster.core.data.locks import FileLock
from llama_sft_dagster.housekeeping.stale_plan import PlannedAsset, format_dry_plan, format_plan, plan
from llama_sft_dagster.logs.failure import failure_cause

QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass
class StaleRunSummary:
    waves: list[list[PlannedAsset]] = field(default_factory=list)
    observed_sources: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0
    ok: bool = True
    cause: str = ""  # failure_cause() of the failed run: the command's last line
    not_built: list[str] = field(default_factory=list)  # planned in the failed run but not materialized

    @property
    def materialized(self) -> list[str]:
        return [p.name for wave in self.waves for p in wave if p.name not in self.not_built]


def observe_sources(defs: dg.Definitions, instance: dg.DagsterInstance) -> list[str]:
    """Record new versions of changed raw sources, like `raw_data_sensor`; returns their names."""
    from llama_sft_dagster.assets.source_table import SOURCE_NAMES
    from llama_sft_dagster.automation import source_observations

    resources = {k: defs.resources[k].process_config_and_initialize() for k in SOURCE_NAMES}
    events = source_observations(instance, defs.resolve_asset_graph(), resources)
    for event in events:
        instance.report_runless_asset_event(event)
    return [e.asset_key.to_user_string() for e in events]


def materialize_stale(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    select: str | None = None,
    *,
    one_run: bool = False,
    dry_run: bool = False,
    observe: bool = True,
    verbose: bool = False,
    out=print,
) -> StaleRunSummary:
    start = time.perf_counter()
    summary = StaleRunSummary()
    graph = defs.resolve_asset_graph()
    from llama_sft_dagster.automation import PIPELINE

    # default: sft_pipeline's assets (the partitioned rank sweep runs by partition, in its own job)
    keys = dg.AssetSelection.from_string(select).resolve(graph) if select else PIPELINE.resolve(graph)
    if observe and not dry_run:
        summary.observed_sources = observe_sources(defs, instance)
        for name in summary.observed_sources:
            out(f"{name}: new upstream data version recorded")
    job = defs.resolve_implicit_global_asset_job_def()
    done: set[dg.AssetKey] = set()
    for wave in range(1, len(graph.toposorted_asset_keys_by_level) + 2):
        planned = plan(instance, graph, keys, whole_chain=one_run or dry_run)
        if not planned:
            break
        again = [p for p in planned if p.key in done]
        if again:
            out("still stale after being rebuilt in this command (stopping):\n" + format_plan(again))
            summary.ok = False
            break
        if dry_run:
            out(format_dry_plan(planned))
        else:
            out(f"wave {wave}: materializing {len(planned)} asset(s):")
            out(format_plan(planned))
        if dry_run:
            summary.waves.append(planned)
            break
        result = job.execute_in_process(
            instance=instance,
            asset_selection=[p.key for p in planned],
            run_config={} if verbose else QUIET_LOGS,
            raise_on_error=False,
            tags={"sft/trigger": "sft-materialize-stale"},
        )
        summary.waves.append(planned)
        summary.run_ids.append(result.run_id)
        done |= {p.key for p in planned}
        # a failed step, or a check failed with severity ERROR (a non-blocking one leaves the run a success)
        summary.cause = failure_cause(instance, result.run_id)
        if not result.success or summary.cause:
            summary.cause = summary.cause or f"FAILED run {result.run_id} (full log: `make ui`, then Runs)"
            summary.ok = False
            built = {e.asset_key for e in result.get_asset_materialization_events()}
            summary.not_built = [p.name for p in planned if p.key not in built]
            break
        if one_run:
            break
    if not summary.waves:
        out(format_plan([]))
    summary.seconds = time.perf_counter() - start
    if dry_run:
        certain = sum(p.certain for wave in summary.waves for p in wave)
        out(
            f"dry run, nothing materialized ({summary.seconds:.1f} s): {certain} asset(s) would run for certain, "
            f"{len(summary.materialized) - certain} more only if an upstream's data changes"
        )
        return summary
    out(
        f"materialized {len(summary.materialized)} asset(s) in {len(summary.run_ids)} run(s), {summary.seconds:.1f} s"
        + (f"; not built: {', '.join(summary.not_built)}" if summary.not_built else "")
    )
    if summary.cause:
        out(summary.cause)
    return summary


@contextlib.contextmanager
def one_command_per_instance(dagster_home: str | Path, out=print):
    """A second `sft-materialize-stale` on the same instance waits, then plans again: what the first
    one built is then up to date, so no step runs twice on the same inputs. Taken before the instance
    is opened: two processes creating a fresh instance's SQLite schema at once corrupt its migrations."""
    lock = FileLock(Path(dagster_home) / ".locks" / "sft-materialize-stale.lock")
    lock.acquire(
        "sft-materialize-stale",
        on_wait=lambda owner: out(f"waiting for another sft-materialize-stale on this instance ({owner})"),
    )
    try:
        yield
    finally:
        lock.release()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sft-materialize-stale", description=__doc__.split("\n")[0])
    parser.add_argument("--select", help="Dagster asset selection, e.g. '*train_adapter' (default: every asset)")
    parser.add_argument("--dry-run", action="store_true", help="print what would run and why; run nothing")
    parser.add_argument(
        "--one-run", action="store_true", help="one run: missing/stale assets and everything downstream"
    )
    parser.add_argument("--no-observe", action="store_true", help="do not check the raw sources for new data first")
    parser.add_argument("--verbose", action="store_true", help="show Dagster's debug log of each run")
    args = parser.parse_args(argv)

    from llama_sft_dagster.cli.home import ensure_dagster_home

    home = ensure_dagster_home()
    with one_command_per_instance(home), dg.DagsterInstance.get() as instance:
        try:
            # imported here: a bad SFT_PROFILE fails while the code location is built, and is one line too
            from llama_sft_dagster.definitions import build_defs

            summary = materialize_stale(
                build_defs(),
                instance,
                args.select,
                one_run=args.one_run,
                dry_run=args.dry_run,
                observe=not args.no_observe,
                verbose=args.verbose,
            )
        except Exception as exc:  # before any run (a source that cannot be read, a bad selection): one line
            if args.verbose:
                traceback.print_exc()
            first = (str(exc).strip().splitlines() or [""])[0]
            print(f"FAILED before any run: {type(exc).__name__}: {first} (--verbose shows the stack trace)")
            return 1
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
