"""`GpuPoolGuard`: before a run's steps claim `gpu` pool slots, fail the runs whose process was killed
and free their slots (housekeeping/dead_runs.py says why Dagster's own run monitoring cannot).

A resource because resources are set up when a run starts, before any of its steps claims a slot (the
in-process executor): the only moment at which a slot still held by a killed run can be given back
without a daemon, as in `dagster asset materialize --select train_adapter`. Every asset in the `gpu`
pool takes it as a parameter; it does nothing else.
"""

import logging

import dagster as dg

log = logging.getLogger(__name__)


class GpuPoolGuard(dg.ConfigurableResource):
    """Frees the `gpu` pool slots of killed runs when a run that needs the pool starts."""

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if context.instance is None:
            return
        from llama_sft_dagster.housekeeping.dead_runs import fail_dead_runs

        try:
            fail_dead_runs(context.instance, context.log)
        except Exception as exc:  # housekeeping must not fail the run; the dead_run_sensor retries
            (context.log or log).warning(f"could not check for dead runs holding the GPU: {exc!r}")
