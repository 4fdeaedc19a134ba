"""The one line a failed run ends with: which step or check failed, the user-facing cause, where to look.

A failed Dagster run prints two stack traces and its cause tens of lines above the end. The project's
commands (`sft-materialize-stale`, `make stale`, `make demo`) print `failure_cause(...)` last instead:

    FAILED bitext_raw: RawDataError: data/b.csv: column 'instruction' has type double, not text ...
    (run 1a2b3c4d; full log and stack trace: `make ui`, then Runs -> 1a2b3c4d-...)

    python -c "import dagster as dg; from llama_sft_dagster.logs.failure import failure_cause as f; \
print(f(dg.DagsterInstance.get(), 'RUN_ID'))"
"""

from __future__ import annotations

import re
from typing import Any

import dagster as dg

# the error of a failure event (dagster._utils.error.SerializableErrorInfo, not exported): read by duck typing,
# cls_name / message / cause
SerializableErrorInfo = Any

MAX_CHARS = 400  # one terminal line or two; the full text is in the run's log


def _user_error(error: SerializableErrorInfo) -> SerializableErrorInfo:
    """The first error in the cause chain that is not Dagster's wrapper (the one the asset raised)."""
    current: SerializableErrorInfo | None = error
    while current is not None:
        if not (current.cls_name or "").startswith("Dagster"):
            return current
        current = current.cause
    return error


def _one_line(error: SerializableErrorInfo) -> str:
    cls = error.cls_name or "Error"
    text = re.sub(rf"^[\w.]*{re.escape(cls)}:\s*", "", error.message.strip())
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    line = f"{cls}: {first}" if first else cls
    return line if len(line) <= MAX_CHARS else line[: MAX_CHARS - 1] + "…"


def step_cause(event) -> str | None:
    """'<step>: <Error>: <first line>' of a STEP_FAILURE event; None for other events."""
    if event is None or event.event_type != dg.DagsterEventType.STEP_FAILURE or event.step_failure_data is None:
        return None
    return f"{event.step_key}: {_one_line(_user_error(event.step_failure_data.error))}"


def check_cause(event) -> str | None:
    """'check <asset>:<name> failed: <why>' of an ASSET_CHECK_EVALUATION that failed with severity ERROR."""
    if event is None or event.event_type != dg.DagsterEventType.ASSET_CHECK_EVALUATION:
        return None
    evaluation = event.event_specific_data
    if evaluation.passed or evaluation.severity != dg.AssetCheckSeverity.ERROR:
        return None
    why = evaluation.description or ", ".join(f"{k}={v.value}" for k, v in list(evaluation.metadata.items())[:6])
    return f"check {evaluation.asset_key.to_user_string()}:{evaluation.check_name} failed: {why}"


def cause_line(causes: list[str], run_id: str) -> str:
    """The one line: the first cause, how many more, the run and where its full log is."""
    # a blocking check's own step failure repeats the check; the check line says why
    kept = [c for c in causes if "DagsterAssetCheckFailedError" not in c and "Blocking check" not in c] or causes
    more = f" (+{len(kept) - 1} more)" if len(kept) > 1 else ""
    return f"FAILED {kept[0]}{more} (run {run_id[:8]}; full log and stack trace: `make ui`, then Runs -> {run_id})"


def _step_failures(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    events = [e.dagster_event for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)]
    return [c for c in map(step_cause, events) if c]


def _failed_checks(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    events = [e.dagster_event for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)]
    return [c for c in map(check_cause, events) if c]


def _run_failure(instance: dg.DagsterInstance, run_id: str) -> str | None:
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE):
        data = entry.dagster_event.event_specific_data if entry.dagster_event else None
        error = getattr(data, "error", None)
        return _one_line(_user_error(error)) if error is not None else entry.dagster_event.message
    return None


def failure_cause(instance: dg.DagsterInstance, run_id: str) -> str:
    """One line naming the failed step(s) or check(s) with the cause and where to look; "" if none failed.

    Checks count when they failed with severity ERROR (a blocking one also stops its downstream steps).
    """
    causes = _failed_checks(instance, run_id) + _step_failures(instance, run_id)
    if not causes:
        run = instance.get_run_by_id(run_id)
        if run is None or run.status != dg.DagsterRunStatus.FAILURE:
            return ""
        causes = [_run_failure(instance, run_id) or f"run ended with status {run.status.value}"]
    return cause_line(causes, run_id)
