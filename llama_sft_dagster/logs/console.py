"""The project's console logger: Dagster's colored console log, but a failed step is one line, not a stack trace,
and a failed run ends with the one-line cause (`failure.cause_line`).

Dagster's default console logger prints each error with its whole stack trace (once per process), so a failed
`dagster asset materialize` ends 35 lines below its cause. The stack traces are still in the run's event log (the
web UI) and shown here with `stack_traces: true`:

    dagster asset materialize --select bitext_raw \
        --config-json '{"loggers": {"console": {"config": {"stack_traces": true}}}}'
"""

from __future__ import annotations

import logging

import dagster as dg
from dagster._core.log_manager import LOG_RECORD_METADATA_ATTR  # the event a record carries: no public accessor
from dagster._utils.log import create_console_logger  # Dagster's console format; @logger offers no public one

from llama_sft_dagster.logs.failure import cause_line, check_cause, failure_cause, step_cause


class OneLineFailures(logging.Filter):
    """Rewrites the records of failed steps and runs; collects causes per run for the run's last line."""

    def __init__(self, stack_traces: bool = False):
        super().__init__()
        self.stack_traces = stack_traces
        self.causes: dict[str, list[str]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        meta = getattr(record, LOG_RECORD_METADATA_ATTR, None) or {}
        event, run_id = meta.get("dagster_event"), meta.get("run_id") or ""
        if event is None:
            return True
        cause = step_cause(event) or check_cause(event)
        if cause is not None:
            self.causes.setdefault(run_id, []).append(cause)
            if event.event_type == dg.DagsterEventType.STEP_FAILURE and not self.stack_traces:
                record.msg, record.args = f"{str(record.msg).split(chr(10))[0]}\n{cause}", ()
        elif event.event_type == dg.DagsterEventType.RUN_FAILURE:
            head = str(record.msg) if self.stack_traces else str(record.msg).split("\n")[0]
            line = cause_line(self.causes[run_id], run_id) if self.causes.get(run_id) else _stored_cause(run_id)
            record.msg, record.args = f"{head}\n{line}" if line else head, ()
        return True


def _stored_cause(run_id: str) -> str:
    """From the instance: steps of the multiprocess executor log their failures in their own processes."""
    try:
        with dg.DagsterInstance.get() as instance:
            return failure_cause(instance, run_id)
    except Exception:  # no DAGSTER_HOME (an ephemeral run): the step lines above still name the cause
        return ""


@dg.logger(
    {
        "log_level": dg.Field(str, is_required=False, default_value="INFO", description="The logger's threshold."),
        "name": dg.Field(str, is_required=False, default_value="dagster", description="The name of your logger."),
        "stack_traces": dg.Field(
            bool,
            is_required=False,
            default_value=False,
            description="Print failed steps' stack traces here too (they are in the web UI).",
        ),
    },
    description="Dagster's colored console logger; failures as one line, a failed run ending with its cause.",
)
def console(init_context: dg.InitLoggerContext) -> logging.Logger:
    config = init_context.logger_config
    logger = create_console_logger(name=config["name"], level=config["log_level"].upper())
    for handler in logger.handlers:
        handler.addFilter(OneLineFailures(config["stack_traces"]))
    return logger
