"""MLflow tracking for training runs, with a fallback that never stops training.

Default store: an embedded SQLite database `<SFT_STATE_DIR>/mlflow.db` (made absolute at run time; MLflow 3
no longer takes a plain folder as a store unless told to), artifacts beside it in `mlartifacts/`.
Browse it with `mlflow ui --backend-store-uri sqlite:///$PWD/.sft_state/mlflow.db`.

Wiring in the training code (the order matters):

    with tracking.start_run("train_adapter", params=cfg.model_dump(), dagster_run_id=context.run.run_id,
                            train_data_version=version) as run:      # run is None if MLflow is unreachable
        args = SFTConfig(..., report_to=tracking.report_to())         # ["tensorboard", "mlflow"] or ["tensorboard"]
        trainer = SFTTrainer(..., args=args, callbacks=[monitor])
        trainer.train()

Why the run must be active before `trainer.train()`: transformers' `MLflowCallback.setup` (5.24,
integrations/integration_utils.py) runs at `on_train_begin`; it calls `mlflow.start_run` itself only when
`mlflow.active_run() is None`, or `MLFLOW_NESTED_RUN` / `MLFLOW_RUN_ID` is set, and only a run it started
is ended by it (`_auto_end_run`). With our run active and those variables unset, it logs the
TrainingArguments, model config and every Trainer log (`loss`, `grad_norm`, `eval_loss`...) into our run
and leaves ending it to us. Its params go in unprefixed (`learning_rate`), so ours are logged under
`config.` to avoid "changing param values is not allowed" clashes.

`start_run` ends the run FINISHED on success, FAILED on an exception and KILLED on an interrupt (Dagster
termination raises a BaseException). A SIGKILL runs no `finally` and leaves its run RUNNING, so every run
is tagged `sft.host`/`sft.pid` and the next `start_run` of the same name marks KILLED the RUNNING runs of
this host whose process has exited (runs of other hosts, or of a live pid, are left alone).

If the store cannot be reached it logs one warning and yields None: `report_to()` then drops "mlflow" (else
transformers' callback would start its own run and retry), and TrainingMonitor, seeing no active run, writes
TensorBoard only. The reachability probe runs with `MLFLOW_HTTP_REQUEST_MAX_RETRIES=0` and
`MLFLOW_HTTP_REQUEST_TIMEOUT=probe_timeout_s` (MLflow's defaults, 7 retries with backoff and 120 s, would stall
a run for minutes).

`train_adapter` uses `training_run` instead: its metrics are logged by rank 0, a process of their own, through a
spool that survives a server outage (core/tracking/spool.py), and when the block ends the run is settled: what
the server lacks is sent (`status` "replayed"), or the whole run goes to `local_uri` with a warning ("local").
Every MLflow call made here runs with those two settings.

Params never include secrets: a flattened key containing a secret-like word (token, secret, password,
api_key...) or a value that looks like a credential (`hf_...`) is left out; the left-out key NAMES are
recorded in the run tag `sft.redacted_params`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from llama_sft_dagster.config.profiles import state_dir
from llama_sft_dagster.core.tracking import spool
from llama_sft_dagster.core.tracking.params import PARAMS_PER_BATCH, safe_params
from llama_sft_dagster.core.tracking.spool import TrainingRun, no_retries
from llama_sft_dagster.housekeeping.processes import process_gone

log = logging.getLogger(__name__)

# MLflow 3.17's UI picks an experiment's view from the URL's `workflowType`, else from the browser's last
# choice (localStorage), else "genai" (an empty Traces page) -- the experiment tag below is not read while its
# workflow switcher is on. Every link the project prints names the machine-learning view (the runs table).
ML_VIEW = "workflowType=machine_learning"
# The MLflow 3 UI opens an experiment in the view its kind names; without the tag it guesses "GenAI" (traces)
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"  # "Model training"


def default_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI when set (make deploy-local sets the MLflow server's http://...), else the local store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{state_dir() / 'mlflow.db'}"


def _close_orphans(client, experiment_id: str, run_name: str) -> None:
    """Mark KILLED the RUNNING `run_name` runs started on this host by a process that no longer exists."""
    query = (
        f"attributes.status = 'RUNNING' and attributes.run_name = '{run_name}' "
        f"and tags.`sft.host` = '{socket.gethostname()}'"
    )
    for orphan in client.search_runs([experiment_id], query):
        if process_gone(orphan.data.tags.get("sft.pid", "")):
            client.set_terminated(orphan.info.run_id, "KILLED")
            log.info(
                "MLflow run %s was left RUNNING by process %s, which has exited: marked KILLED",
                orphan.info.run_id,
                orphan.data.tags["sft.pid"],
            )


class MlflowTracking(dg.ConfigurableResource):
    """An MLflow tracking store for training runs; falls back to no tracking if it cannot be reached."""

    tracking_uri: str = Field(
        default_factory=default_tracking_uri,
        description="MLflow tracking URI: sqlite:///<path> (relative paths resolve against the working "
        "directory at run time) or http(s)://host:port of an MLflow server.",
    )
    experiment_name: str = Field(default="llama-sft", description="MLflow experiment the runs go to.")
    ui_url: str = Field(
        default="http://127.0.0.1:5000",
        description="Where the MLflow UI serves this store (`make mlflow`): metadata links runs and models there.",
    )
    probe_timeout_s: int = Field(
        default=5, description="Seconds to wait for the tracking store before training goes on without it."
    )
    local_uri: str = Field(
        default_factory=lambda: f"sqlite:///{state_dir() / 'mlflow.db'}",
        description="Where a training run goes when `tracking_uri` cannot take it at the end of training "
        "(the store `make mlflow` serves).",
    )

    def resolved_uri(self) -> str:
        """The tracking URI with a relative SQLite path made absolute (and its folder created)."""
        prefix = "sqlite:///"
        if not self.tracking_uri.startswith(prefix):
            return self.tracking_uri
        db = Path(self.tracking_uri[len(prefix) :]).expanduser().resolve()
        db.parent.mkdir(parents=True, exist_ok=True)
        return f"{prefix}{db}"

    def _artifact_location(self, uri: str) -> str | None:
        # next to the SQLite file; without this MLflow writes ./mlruns in the working directory
        if uri.startswith("sqlite:///"):
            return (Path(uri[len("sqlite:///") :]).parent / "mlartifacts").as_uri()
        return None

    def _start(self, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]):
        """Start the run (the active run of this process) with its params; raises what MLflow raises."""
        import mlflow
        from mlflow.tracking import MlflowClient

        uri = self.resolved_uri()
        with no_retries(self.probe_timeout_s):
            client = MlflowClient(tracking_uri=uri)
            experiment = client.get_experiment_by_name(self.experiment_name)
            experiment_id = (
                experiment.experiment_id
                if experiment is not None
                else client.create_experiment(self.experiment_name, artifact_location=self._artifact_location(uri))
            )
            if (experiment.tags if experiment is not None else {}).get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
                client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
            _close_orphans(client, experiment_id, run_name)
            mlflow.set_tracking_uri(uri)
            run = mlflow.start_run(
                experiment_id=experiment_id,
                run_name=run_name,
                tags={**tags, "sft.host": socket.gethostname(), "sft.pid": str(os.getpid())},
            )
            try:
                kept, redacted = safe_params(params)
                items = sorted(kept.items())
                for i in range(0, len(items), PARAMS_PER_BATCH):
                    mlflow.log_params(dict(items[i : i + PARAMS_PER_BATCH]))
                if redacted:
                    mlflow.set_tag("sft.redacted_params", ",".join(redacted))
            except Exception:
                self._end("FAILED")
                raise
        return run

    def _open(self, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str], then: str = "TensorBoard only"):
        """Start the run and log params; one warning and None if the store is unreachable or refuses."""
        uri, started = self.tracking_uri, time.monotonic()
        try:
            uri = self.resolved_uri()
            return self._start(run_name, params, tags)
        except Exception as exc:
            log.warning(
                "MLflow run could not start at %s (gave up after %.1fs; %s: %s); training goes on with %s",
                uri,
                time.monotonic() - started,
                type(exc).__name__,
                exc,
                then,
            )
            return None

    def _end(self, status: str) -> None:
        import mlflow

        try:
            with no_retries(self.probe_timeout_s):
                mlflow.flush_async_logging()  # transformers' MLflowCallback logs asynchronously
                mlflow.end_run(status=status)  # pops the active run first, so a failure leaves none active
        except Exception as exc:
            log.warning("MLflow could not end the run as %s: %s", status, exc)

    @contextlib.contextmanager
    def start_run(
        self,
        run_name: str,
        *,
        params: Mapping[str, Any] | None = None,
        dagster_run_id: str | None = None,
        train_data_version: str | None = None,
        tags: Mapping[str, str] | None = None,
    ):
        """Active MLflow run for the `with` body (or None when tracking is unavailable); see module docstring."""
        all_tags = {**(tags or {})}
        if dagster_run_id:
            all_tags["dagster.run_id"] = dagster_run_id
        if train_data_version:
            all_tags["data.train_version"] = train_data_version
        run = self._open(run_name, params or {}, all_tags)
        if run is None:
            yield None
            return
        try:
            yield run
        except Exception:
            self._end("FAILED")
            raise
        except BaseException:
            self._end("KILLED")
            raise
        self._end("FINISHED")

    @contextlib.contextmanager
    def training_run(
        self,
        run_name: str,
        spool_path: Path,
        *,
        params: Mapping[str, Any] | None = None,
        dagster_run_id: str | None = None,
        train_data_version: str | None = None,
        tags: Mapping[str, str] | None = None,
    ):
        """A TrainingRun whose metrics go through a spool (core/tracking/spool.py): rank 0 logs with
        MetricSpool(spool_path, resolved_uri(), run_id); when the block ends, what the server did not take is sent
        (`replayed`), or the whole run goes to `local_uri` with a warning (`local`). Never raises for MLflow."""
        all_tags = {**(tags or {})}
        if dagster_run_id:
            all_tags["dagster.run_id"] = dagster_run_id
        if train_data_version:
            all_tags["data.train_version"] = train_data_version
        kept = f"its metrics kept in {spool_path}, to be sent when the run ends"
        run = self._open(run_name, params or {}, all_tags, then=kept)
        tr = TrainingRun(run.info.run_id if run else "", Path(spool_path), run.info.experiment_id if run else "")
        settle = lambda status: self._settle(tr, run_name, params or {}, all_tags, status)  # noqa: E731
        try:
            yield tr
        except Exception:
            settle("FAILED")
            raise
        except BaseException:
            settle("KILLED")
            raise
        settle("FINISHED")

    def _settle(self, tr: TrainingRun, run_name: str, params, tags, status: str) -> None:
        from mlflow.tracking import MlflowClient

        tr.buffered = spool.counts(tr.spool).buffered
        try:
            if not tr.run_id:  # the server was down when training started: it may answer now
                run = self._start(run_name, params, tags)
                tr.run_id, tr.experiment_id = run.info.run_id, run.info.experiment_id
            with no_retries(self.probe_timeout_s):
                client = MlflowClient(tracking_uri=self.resolved_uri())
                spool.replay(tr.spool, client, tr.run_id)
                for path, folder in tr.artifacts:
                    client.log_artifact(tr.run_id, str(path), folder)
            self._end(status)
            tr.status = "replayed" if tr.buffered else "live"
            if tr.buffered:
                log.info(
                    "MLflow: %d metric value(s) buffered during an outage were sent to %s",
                    tr.buffered,
                    self.tracking_uri,
                )
            return
        except Exception as exc:
            self._end(status)  # no run stays active in this process
            reason = f"{type(exc).__name__}: {str(exc)[:200]}"
        local = MlflowTracking(
            tracking_uri=self.local_uri, experiment_name=self.experiment_name, probe_timeout_s=self.probe_timeout_s
        )
        try:
            if local.resolved_uri() == self.resolved_uri():
                raise RuntimeError("the local store is the one that failed")
            server = {"sft.unreachable_server": self.tracking_uri, "sft.server_run_id": tr.run_id}
            run = local._start(run_name, params, {**tags, **server})
            client = MlflowClient(tracking_uri=local.resolved_uri())
            values = spool.replay(tr.spool, client, run.info.run_id, all_batches=True)
            for path, folder in tr.artifacts:
                client.log_artifact(run.info.run_id, str(path), folder)
            local._end(status)
        except Exception as exc:
            tr.status = "spool"
            log.warning(
                "MLflow: neither %s (%s) nor the local store %s (%s: %s) took the run; its metrics are in %s and in "
                "the TensorBoard files",
                self.tracking_uri,
                reason,
                self.local_uri,
                type(exc).__name__,
                exc,
                tr.spool,
            )
            return
        tr.status, tr.local_run_id, tr.local_store = "local", run.info.run_id, local.resolved_uri()
        log.warning(
            "MLflow server %s could not take the run at the end of training (%s): its %d metric values (%d never "
            "reached the server) are in the local store %s, run %s (browse: mlflow ui --backend-store-uri %s)",
            self.tracking_uri,
            reason,
            values,
            tr.buffered,
            tr.local_store,
            tr.local_run_id,
            tr.local_store,
        )

    @staticmethod
    def log_artifacts(paths, artifact_path: str) -> list[str]:
        """Log files into the active run under `artifact_path`; returns what was logged (a failure warns)."""
        import mlflow

        if mlflow.active_run() is None:
            return []
        logged = []
        for path in paths:
            try:
                mlflow.log_artifact(str(path), artifact_path=artifact_path)
                logged.append(f"{artifact_path}/{Path(path).name}")
            except Exception as exc:
                log.warning("MLflow could not store artifact %s: %s", path, exc)
        return logged

    def experiment_url(self, experiment_id: str) -> str:
        """The experiment's runs table in the MLflow UI (`make mlflow` serves `ui_url`)."""
        return f"{self.ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs?{ML_VIEW}"

    def run_url(self, run_id: str, experiment_id: str) -> str:
        """Where the run opens in the MLflow UI."""
        return f"{self.ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?{ML_VIEW}"

    def report_to(self) -> list[str]:
        """`report_to` for TrainingArguments: "mlflow" only while a run is active (call inside start_run)."""
        import sys

        mlflow = sys.modules.get("mlflow")
        if mlflow is None or mlflow.active_run() is None:
            return ["tensorboard"]
        for var in ("MLFLOW_NESTED_RUN", "MLFLOW_RUN_ID"):
            if os.environ.get(var):
                log.warning("%s is set: transformers' MLflowCallback will start and end a run of its own", var)
        return ["tensorboard", "mlflow"]
