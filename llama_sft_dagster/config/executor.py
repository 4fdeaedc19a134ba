"""The code location's executor on one machine: Dagster's default (`multiprocess`, or `in_process` when the run
config asks), whose step processes start from a fork server that imported the code location once
(`start_method: forkserver`) instead of each starting a fresh interpreter (`spawn`, Dagster's default).

Every step of a run, asset checks included, is a process of its own. Under `spawn` each one imports Dagster and
this package again before it does anything (benchmarks/step_start.py; its figures are in README "Performance").
The server imports this package's definitions module
only, which imports neither torch nor CUDA (the stages import them inside their bodies), so a forked step starts
with no CUDA context and no threads, as a spawned one would.

A run config that names a start method keeps it: `execution: {config: {multiprocess: {start_method: {spawn: {}}}}}`.
`SFT_EXECUTOR=k8s` replaces this executor altogether (config/k8s.py).
"""

from __future__ import annotations

import dagster as dg

FORKSERVER = {"forkserver": {}}  # Dagster preloads the module the job was loaded from (this code location)


def with_forkserver(config: dict) -> dict:
    """The executor config with `start_method: forkserver` where a multiprocess config names none."""
    multiprocess = config.get("multiprocess")
    if multiprocess is None or multiprocess.get("start_method"):
        return config
    return {**config, "multiprocess": {**multiprocess, "start_method": FORKSERVER}}


def local_executor() -> dg.ExecutorDefinition:
    """multi_or_in_process_executor with its own config schema (so run configs written for it stay valid),
    defaulting to the fork server."""
    default = dg.multi_or_in_process_executor
    return default.configured(with_forkserver, config_schema=default.config_schema.as_field())
