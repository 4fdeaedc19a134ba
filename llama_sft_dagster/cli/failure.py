"""The one-line cause of a failed run, for the last line a command prints.

    failure_cause(instance, run_id) -> "train_adapter: ValueError: max_steps=0: use a positive number..."

It takes the first failed step's error (the root cause, not the "dependency failed" of the steps after
it) or else the run failure's message, and keeps the last line of the innermost exception message.
"""
from __future__ import annotations

import dagster as dg


def _innermost(error) -> object:
    while error is not None and getattr(error, "cause", None) is not None:
        error = error.cause
    return error


def _short(error) -> str:
    if error is None:
        return ""
    message = (getattr(error, "message", "") or "").strip()
    lines = [line for line in message.splitlines() if line.strip()]
    return lines[-1].strip() if lines else getattr(error, "cls_name", "") or "error"


def failure_cause(instance: dg.DagsterInstance, run_id: str) -> str:
    records = instance.get_records_for_run(run_id, of_type={dg.DagsterEventType.STEP_FAILURE,
                                                             dg.DagsterEventType.RUN_FAILURE}).records
    for record in records:
        event = record.event_log_entry.dagster_event
        if event.event_type == dg.DagsterEventType.STEP_FAILURE:
            error = _innermost(event.event_specific_data.error)
            return f"{event.step_key}: {_short(error)}"
    for record in records:
        event = record.event_log_entry.dagster_event
        error = getattr(event.event_specific_data, "error", None)
        return _short(_innermost(error)) or event.message or "the run failed"
    run = instance.get_run_by_id(run_id)
    return f"run {run_id} ended {run.status.value if run else 'unknown'} without a recorded failure"
