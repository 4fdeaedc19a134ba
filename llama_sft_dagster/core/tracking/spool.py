"""MLflow metrics that survive a tracking-server outage: a local spool, sent live, the rest sent later.

    spool = MetricSpool(path, tracking_uri, run_id)   # rank 0; run_id "" when the server was down at the start
    spool.log({"train_loss": 1.2}, step=10)           # appended to the file first, then sent if the server answers
    spool.close()                                     # one last try for what is pending
    counts = replay(path, client, run_id)             # the step process, afterwards: every batch not yet sent

Every batch is appended to the spool file (JSON lines) before it is sent, so a server that refuses, times out or
is stopped loses nothing: the batch stays pending and is sent with the next batch once `retry_every_s` have
passed. One attempt is at most `timeout_s`, with no retries (MLflow's defaults, 7 retries with backoff and a 120 s
timeout, would stall training for minutes at each logging step). A batch the server took is acknowledged in the
file (`{"sent": [seq, ...], "how": "live"}`; "resent" after an outage, "replay" by `replay`), so whoever
reads the spool later (`replay`, `counts`) knows what the server has. Replay keeps each value's step and
timestamp: MLflow's SQL store keys a metric's history by (key, timestamp, step, value), so a batch that reached
the server although its call failed is not doubled.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

SPOOL_FILE = "mlflow_spool.jsonl"
MAX_METRICS_PER_BATCH = 1000  # mlflow.utils.validation.MAX_METRICS_PER_BATCH (MLflow 3.x)


@contextlib.contextmanager
def no_retries(timeout_s: float) -> Iterator[None]:
    """MLflow HTTP calls inside the block make one attempt of at most `timeout_s` (read per request)."""
    values = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, int(timeout_s)))}
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


@dataclass(frozen=True)
class SpoolCounts:
    """What a spool holds: metric values in all, those the server took as they were logged, those sent later
    (after an outage, by the spool itself or by `replay`)."""

    values: int
    live: int
    later: int

    @property
    def buffered(self) -> int:
        """Values the server did not take when they were logged."""
        return self.values - self.live

    @property
    def unsent(self) -> int:
        return self.values - self.live - self.later


def read_spool(path: Path) -> tuple[list[dict], dict[int, str]]:
    """(the batches, {seq: "live"|"resent"|"replay"} for those the server took). A torn last line (the writer was killed
    mid-write) is skipped with a warning; a torn line elsewhere is an error naming the file and line."""
    batches, sent = [], {}
    if not Path(path).exists():
        return batches, sent
    lines = Path(path).read_text().splitlines()
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):
                log.warning("%s: last line %d is incomplete (writer killed mid-write?); skipped", path, number)
                break
            raise ValueError(f"{path}: line {number} is not JSON: {exc}") from exc
        if "sent" in record:
            sent.update(dict.fromkeys(record["sent"], record["how"]))
        else:
            batches.append(record)
    return batches, sent


def counts(path: Path) -> SpoolCounts:
    batches, sent = read_spool(path)
    size = {b["seq"]: len(b["metrics"]) for b in batches}
    return SpoolCounts(
        values=sum(size.values()),
        live=sum(n for seq, n in size.items() if sent.get(seq) == "live"),
        later=sum(n for seq, n in size.items() if sent.get(seq, "live") != "live"),
    )


def send(client, run_id: str, batches: list[dict]) -> None:
    """Log the batches into the run with their steps and timestamps, in MLflow's largest batch size."""
    from mlflow.entities import Metric

    metrics = [
        Metric(key, float(value), b["timestamp"], b["step"]) for b in batches for key, value in b["metrics"].items()
    ]
    for i in range(0, len(metrics), MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=metrics[i : i + MAX_METRICS_PER_BATCH], synchronous=True)


def _acknowledge(path: Path, seqs: list[int], how: str) -> None:
    with open(path, "a") as f:
        f.write(json.dumps({"sent": seqs, "how": how}) + "\n")


def replay(path: Path, client, run_id: str, *, all_batches: bool = False) -> int:
    """Send the batches the server has not acknowledged (every batch with `all_batches`, e.g. into a fresh local
    run); returns how many metric values were sent. Raises what MLflow raises when the store cannot take them."""
    batches, sent = read_spool(path)
    todo = batches if all_batches else [b for b in batches if b["seq"] not in sent]
    if todo:
        send(client, run_id, todo)
        if not all_batches:
            _acknowledge(path, [b["seq"] for b in todo], "replay")
    return sum(len(b["metrics"]) for b in todo)


@dataclass
class TrainingRun:
    """A training run's MLflow record, filled in by MlflowTracking.training_run: `run_id` is the tracking server's
    run ('' while it could not be started); after the `with` block, `status` says where the metrics are:
    "live" (the server took every value as it was logged), "replayed" (it was down a while: `buffered` values were
    sent later), "local" (it could not take them at the end: the whole run is in `local_store`, run
    `local_run_id`), or "spool" (no store took them: the spool file and the TensorBoard files have them)."""

    run_id: str
    spool: Path
    experiment_id: str = ""
    artifacts: list[tuple[Path, str]] = field(default_factory=list)
    status: str = ""
    buffered: int = 0
    local_run_id: str = ""
    local_store: str = ""

    def add_artifacts(self, paths, artifact_path: str) -> None:
        """Files logged into whichever run ends up holding the metrics, when the run is settled."""
        self.artifacts.extend((Path(p), artifact_path) for p in paths)


class MetricSpool:
    """Rank 0's metric sink: spool file first, then the MLflow run when there is one and its server answers."""

    def __init__(
        self,
        path: Path,
        tracking_uri: str = "",
        run_id: str = "",
        *,
        retry_every_s: float = 30.0,
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.path, self.tracking_uri, self.run_id = Path(path), tracking_uri, run_id
        self.retry_every_s, self.timeout_s, self.clock = retry_every_s, timeout_s, clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("")  # one spool per training process: its run, its batches
        self.pending: list[dict] = []
        self.down_since: float | None = None  # monotonic time of the failed attempt; None while the server answers
        self.outages = 0
        self._seq = 0
        self._client = None

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        if not metrics:
            return
        self._seq += 1
        batch = {
            "seq": self._seq,
            "step": int(step),
            "timestamp": int(time.time() * 1000),
            "metrics": {k: float(v) for k, v in metrics.items()},
        }
        with open(self.path, "a") as f:
            f.write(json.dumps(batch) + "\n")
        self.pending.append(batch)
        self.flush()

    def flush(self, force: bool = False) -> bool:
        """Send what is pending unless the server failed less than `retry_every_s` ago; True when nothing is left."""
        if not self.pending or not self.run_id:
            return not self.pending
        if not force and self.down_since is not None and self.clock() - self.down_since < self.retry_every_s:
            return False
        try:
            with no_retries(self.timeout_s):
                send(self._mlflow(), self.run_id, self.pending)
        except Exception as exc:  # an outage must not stop training: the spool keeps the batches
            if self.down_since is None:
                self.outages += 1
                log.warning(
                    "MLflow server %s did not take the metrics of step %d (%s: %s); training goes on, the metrics "
                    "are kept in %s and sent when it answers again",
                    self.tracking_uri,
                    self.pending[0]["step"],
                    type(exc).__name__,
                    str(exc)[:200],
                    self.path,
                )
            self.down_since = self.clock()
            return False
        if self.down_since is not None:
            log.info("MLflow server %s answers again: sent %d buffered batch(es)", self.tracking_uri, len(self.pending))
        _acknowledge(self.path, [b["seq"] for b in self.pending], "live" if self.down_since is None else "resent")
        self.pending, self.down_since = [], None
        return True

    def close(self) -> None:
        """One last try (whatever `retry_every_s` says); what is still pending stays in the file for `replay`."""
        self.flush(force=True)

    def _mlflow(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client
