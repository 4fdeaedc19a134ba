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

Params never include secrets: a flattened key containing a secret-like word (token, secret, password,
api_key...) or a value that looks like a credential (`hf_...`) is left out; the left-out key NAMES are
recorded in the run tag `sft.redacted_params`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from llama_sft_dagster.config.profiles import state_dir
from llama_sft_dagster.housekeeping.processes import process_gone

log = logging.getLogger(__name__)

# key words that mark a credential; matched against the words of the whole flattened key
_SECRET_KEY = re.compile(
    r"(^|[^a-z])(token|secret|password|passwd|credentials?|auth|api_?key|access_?key|private_?key|secret_?key)"
    r"($|[^a-z])",
    re.IGNORECASE,
)
# value prefixes of common credentials: Hugging Face, OpenAI-style, GitHub, AWS access key ids
_SECRET_VALUE = re.compile(r"^(hf_|sk-|ghp_|gho_|github_pat_|AKIA)")
MAX_PARAM_CHARS = 6000  # mlflow.utils.validation.MAX_PARAM_VAL_LENGTH in MLflow 3.17
PARAMS_PER_BATCH = 100  # mlflow.utils.validation.MAX_PARAMS_TAGS_PER_BATCH
_CUT = "...[truncated]"
# MLflow 3.17's UI picks an experiment's view from the URL's `workflowType`, else from the browser's last
# choice (localStorage), else "genai" (an empty Traces page) -- the experiment tag below is not read while its
# workflow switcher is on. Every link the project prints names the machine-learning view (the runs table).
ML_VIEW = "workflowType=machine_learning"
# The MLflow 3 UI opens an experiment in the view its kind names; without the tag it guesses "GenAI" (traces)
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"  # "Model training"


def default_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI when set (make deploy-local sets the MLflow server's http://...), else the local store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{state_dir() / 'mlflow.db'}"


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr": 1}} -> {"train.lr": 1}; lists are indexed ("targets.0")."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, name))
        elif isinstance(value, (list, tuple)) and value and any(isinstance(v, Mapping) for v in value):
            flat.update(flatten_params({str(i): v for i, v in enumerate(value)}, name))
        else:
            flat[name] = value
    return flat


def looks_secret(key: str, value: Any) -> bool:
    """True for a key naming a credential or a value shaped like one. Errs on the side of leaving out."""
    return bool(_SECRET_KEY.search(key)) or (isinstance(value, str) and bool(_SECRET_VALUE.match(value.strip())))


def safe_params(params: Mapping[str, Any], prefix: str = "config") -> tuple[dict[str, str], list[str]]:
    """Flattened, stringified params without secret-looking entries; returns (params, left-out key names)."""
    kept, redacted = {}, []
    for key, value in flatten_params(params, prefix).items():
        if looks_secret(key, value):
            redacted.append(key)
            continue
        text = str(value)
        kept[key] = text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - len(_CUT)] + _CUT
    return kept, redacted


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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

    def _open(self, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]):
        """Start the run and log params; one warning and None if the store is unreachable or refuses."""
        import mlflow
        from mlflow.tracking import MlflowClient

        uri, started = self.tracking_uri, time.monotonic()
        try:
            uri = self.resolved_uri()
            with _env(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT=str(self.probe_timeout_s)):
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
        except Exception as exc:
            log.warning(
                "MLflow run could not start at %s (gave up after %.1fs; %s: %s); training goes on "
                "with TensorBoard only",
                uri,
                time.monotonic() - started,
                type(exc).__name__,
                exc,
            )
            return None
        try:
            kept, redacted = safe_params(params)
            items = sorted(kept.items())
            for i in range(0, len(items), PARAMS_PER_BATCH):
                mlflow.log_params(dict(items[i : i + PARAMS_PER_BATCH]))
            if redacted:
                mlflow.set_tag("sft.redacted_params", ",".join(redacted))
        except Exception as exc:
            log.warning(
                "MLflow refused the run's params (%s: %s); training goes on with TensorBoard only",
                type(exc).__name__,
                exc,
            )
            self._end("FAILED")
            return None
        return run

    @staticmethod
    def _end(status: str) -> None:
        import mlflow

        try:
            mlflow.flush_async_logging()  # transformers' MLflowCallback logs asynchronously
            mlflow.end_run(status=status)
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

    def run_url(self, run) -> str | None:
        """Where the run opens in the MLflow UI."""
        if run is None:
            return None
        return f"{self.ui_url.rstrip('/')}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}?{ML_VIEW}"

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
