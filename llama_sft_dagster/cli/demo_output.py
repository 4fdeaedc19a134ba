"""What `make demo` prints: a line per finished stage from the run's events, then a closing summary.

`StagePrinter.handle(entry)` takes the run's event log entries in order (cli/demo.py follows the
instance's event log) and writes one line per materialized asset, the training progress lines that
train_adapter logs ("train step ..."), and failed checks or steps. `closing_summary` gives the funnel,
the losses and where to look.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from llama_sft_dagster.assets.data_chain import FIRST_INPUT, STAGE_NAMES
from llama_sft_dagster.assets.source_table import SOURCES
from llama_sft_dagster.core.report.funnel import StageRows, one_line

PROGRESS_PREFIX = "train step "
FUNNEL_ORDER = [FIRST_INPUT, *STAGE_NAMES, "sft_dataset"]  # the data chain as declared (assets/data_chain.py)
MLFLOW_CMD = "make mlflow"
RAW_UNITS = {s.raw_asset: s.pairs.unit for s in SOURCES}


def _dropped(md: dict, prefix: str = "dropped_") -> Counter:
    return Counter(
        {
            k[len(prefix) :]: v
            for k, v in md.items()
            if k.startswith(prefix) and not k.endswith("dropped_total") and isinstance(v, int) and v
        }
    )


def stage_of(asset: str, md: dict) -> StageRows | None:
    """The stage's row accounting from its materialization metadata, when it has one."""
    if asset == "raw_pairs" and "rows_and_turns_in" in md:
        return StageRows(asset, md["rows_and_turns_in"], md["pairs_out"], _dropped(md), "pairs", "rows+turns")
    if asset == "sft_dataset" and "train_rows_in" in md:
        dropped = _dropped(md, "train_dropped_") + _dropped(md, "validation_dropped_")
        return StageRows(
            asset,
            md["train_rows_in"] + md["validation_rows_in"],
            md["train_rows_out"] + md["validation_rows_out"],
            dropped,
            "samples",
        )
    if "rows_in" in md and "rows_out" in md:
        return StageRows(asset, md["rows_in"], md["rows_out"], _dropped(md))
    return None


def _rounded(value, digits: int = 4):
    return round(value, digits) if isinstance(value, float) else value


def describe(asset: str, md: dict) -> str:
    """A short phrase for an asset without row accounting."""
    if asset == "train_adapter":
        return (
            f"train_loss {md.get('first_train_loss')} -> {md.get('final_train_loss')}, best_eval_loss "
            f"{md.get('best_eval_loss')} at step {md.get('best_eval_step')}"
        )
    if asset == "adapter_evaluation":
        return (
            f"evaluation_loss base {_rounded(md.get('evaluation_loss_base'))} -> tuned "
            f"{_rounded(md.get('evaluation_loss_tuned'))}; "
            f"{md.get('groups_tuned_worse', 0)} group(s) where tuned is worse"
        )
    if asset == "champion_model":
        return f"{'promoted' if md.get('promoted') else 'not promoted'}: {md.get('reason')}"
    if asset in RAW_UNITS:  # a source's raw asset counts in its unit (rows, turns), then its dialogues
        counted = [f"{md[k]:,} {k}" for k in ("dialogues",) if k in md]
        return ", ".join([f"{md.get('dagster/row_count', 0):,} {RAW_UNITS[asset]}", *counted])
    if "dagster/row_count" in md:
        return f"{md['dagster/row_count']:,} pairs"
    return "done"


class StagePrinter:
    def __init__(self, write: Callable[[str], object]):
        self.write = write
        self.starts: dict[str, float] = {}
        self.stages: dict[str, StageRows] = {}
        self.metadata: dict[str, dict] = {}
        self.checks = Counter()
        self.failed_steps: list[str] = []

    def handle(self, entry) -> None:
        event = entry.dagster_event
        if event is None:
            if entry.user_message.startswith(PROGRESS_PREFIX):
                self.write(f"    {entry.user_message}\n")
            return
        kind = event.event_type_value
        if kind == "STEP_START":
            self.starts[event.step_key] = entry.timestamp
        elif kind == "ASSET_MATERIALIZATION":
            self._materialized(event, entry.timestamp)
        elif kind == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data
            # a WARN check that does not pass is a warning (e.g. an intent where tuned is worse), not a failure
            warn = evaluation.severity == dg.AssetCheckSeverity.WARN
            outcome = "passed" if evaluation.passed else ("warning" if warn else "failed")
            self.checks[outcome] += 1
            if not evaluation.passed:
                self.write(
                    f"  check {evaluation.asset_key.to_user_string()}:{evaluation.check_name} "
                    f"{'WARNING' if warn else 'FAILED'}\n"
                )
        elif kind == "STEP_FAILURE":
            self.failed_steps.append(event.step_key)
            self.write(f"  {event.step_key} FAILED\n")

    def _materialized(self, event, timestamp: float) -> None:
        materialization = event.event_specific_data.materialization
        asset = materialization.asset_key.to_user_string()
        md = {k: v.value for k, v in materialization.metadata.items()}
        self.metadata[asset] = md
        seconds = timestamp - self.starts.get(event.step_key, timestamp)
        stage = stage_of(asset, md)
        if stage is not None:
            self.stages[asset] = stage
            self.write(f"  {one_line(stage, seconds)}\n")
        else:
            self.write(f"  {asset:<22} {describe(asset, md)}  [{seconds:.1f} s]\n")


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {int(seconds % 60)} s"


def closing_summary(run_id: str, printer: StagePrinter, seconds: float, log_path: Path, ui_url: str) -> str:
    adapter, merged = printer.metadata.get("train_adapter", {}), printer.metadata.get("merged_model", {})
    report = printer.metadata.get("run_report", {})
    lines = [
        "",
        f"=== finished in {_minutes(seconds)} (run {run_id[:8]}) ===",
        "Row funnel (in -> out, top drop reasons):",
    ]
    lines += [f"  {one_line(printer.stages[s])}" for s in FUNNEL_ORDER if s in printer.stages]
    if adapter:
        lines += [
            "Training:",
            f"  train_loss {adapter.get('first_train_loss')} -> {adapter.get('final_train_loss')}"
            f" over {adapter.get('global_steps')} steps; eval_loss best {adapter.get('best_eval_loss')}"
            f" (step {adapter.get('best_eval_step')}), final {adapter.get('final_eval_loss')}",
            f"  token efficiency {adapter.get('token_efficiency')} (supervised / all positions, every batch)",
        ]
    evaluation, champion = printer.metadata.get("adapter_evaluation", {}), printer.metadata.get("champion_model", {})
    if evaluation:
        lines += [
            "Evaluation (base -> tuned; every loss is defined in the run report's glossary):",
            f"  {describe('adapter_evaluation', evaluation)}",
        ]
    if champion:
        lines.append(f"  champion: {describe('champion_model', champion)}")
    warnings = f", {printer.checks['warning']} warning(s)" if printer.checks["warning"] else ""
    lines.append(f"Checks: {printer.checks['passed']} passed, {printer.checks['failed']} failed{warnings}")
    lines += [
        "Where to look:",
        f"  run in the UI (make ui):        {ui_url}/runs/{run_id}",
        f"  run report (make ui):           {ui_url}/assets/run_report",
        f"  evaluation (make ui):           {ui_url}/assets/adapter_evaluation",
    ]
    if adapter.get("mlflow_experiment"):
        lines.append(f"  MLflow runs ({MLFLOW_CMD}):      {adapter['mlflow_experiment']}")
    if adapter.get("mlflow_run"):
        lines.append(f"  MLflow run ({MLFLOW_CMD}):       {adapter['mlflow_run']}")
    if champion.get("registry"):
        lines.append(f"  registered model ({MLFLOW_CMD}): {champion['registry']}")
    if adapter.get("tensorboard"):
        lines.append(f"  TensorBoard (make tensorboard): {adapter['tensorboard']}")
    lines += [
        f"  adapter:                        {adapter.get('path', '-')}",
        f"  merged model:                   {merged.get('path', '-')}"
        + ("  (model card: README.md in it)" if champion.get("model_card") else ""),
        f"  report file:                    {report.get('path', '-')}",
        f"  Dagster event log:              {log_path}",
        "",
    ]
    return "\n".join(lines)
