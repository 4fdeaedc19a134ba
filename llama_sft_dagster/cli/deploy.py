"""`make deploy-local` / `make deploy-stop`: the team deployment on 127.0.0.1, each server a real process.

- PostgreSQL (Debian's packages; `initdb` into `<state>/deploy/postgres`, started and stopped here with
  `pg_ctl`), with two databases: `dagster` (run, event-log and schedule storage) and `mlflow`;
- the code location as a gRPC server (`dagster api grpc -m llama_sft_dagster.definitions`), which
  `<state>/deploy/workspace.yaml` points at;
- `dagster-webserver` and `dagster-daemon` on that workspace, with a Postgres instance
  (`<state>/deploy/dagster_home/dagster.yaml`: QueuedRunCoordinator, the `gpu` pool limit, run monitoring);
- `mlflow server` with the Postgres backend store and a local artifact root (`<state>/deploy/mlartifacts`);
  runs of the code location get MLFLOW_TRACKING_URI=http://127.0.0.1:<port>.

Ports: DEPLOY_{PG,GRPC,UI,MLFLOW}_PORT, or a free port each (written to `<state>/deploy/deployment.json`,
which `stop` and the tests read). `python -m llama_sft_dagster.cli.deploy start|stop|status`.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from llama_sft_dagster.config.profiles import state_dir

HOST = "127.0.0.1"
DB_USER = "sft"
SERVICES = ("grpc", "webserver", "daemon", "mlflow")  # started in this order, after Postgres
PORT_ENV = {"pg": "DEPLOY_PG_PORT", "grpc": "DEPLOY_GRPC_PORT", "ui": "DEPLOY_UI_PORT", "mlflow": "DEPLOY_MLFLOW_PORT"}


class DeployError(RuntimeError):
    pass


@dataclass
class Deployment:
    root: Path
    ports: dict[str, int]
    pids: dict[str, int] = field(default_factory=dict)
    started_s: float | None = None
    module: str = "llama_sft_dagster.definitions"  # the code location the gRPC server serves
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def pg_url(self) -> str:
        # the driver named: SQLAlchemy 2.1's default for postgresql:// is psycopg 3, dagster-postgres brings psycopg2
        return f"postgresql+psycopg2://{DB_USER}@{HOST}:{self.ports['pg']}"

    @property
    def ui_url(self) -> str:
        return f"http://{HOST}:{self.ports['ui']}"

    @property
    def mlflow_url(self) -> str:
        return f"http://{HOST}:{self.ports['mlflow']}"

    def env(self) -> dict[str, str]:
        """The environment of every Dagster process of the deployment (and of the runs they launch)."""
        return {
            **os.environ,
            "DAGSTER_HOME": str(self.home),
            "SFT_STATE_DIR": str(self.root.parent),
            "MLFLOW_TRACKING_URI": self.mlflow_url,
            # the daemon's call that starts a run waits for the code server to spawn it; Dagster's 60 s was
            # exceeded on a loaded 2-core machine, which fails the run while dequeuing it
            "DAGSTER_GRPC_TIMEOUT_SECONDS": os.environ.get("DAGSTER_GRPC_TIMEOUT_SECONDS", "300"),
            **self.extra_env,
        }

    def save(self) -> None:
        data = {**asdict(self), "root": str(self.root)}
        (self.root / "deployment.json").write_text(json.dumps(data, indent=1))

    @classmethod
    def load(cls, root: Path) -> Deployment | None:
        path = root / "deployment.json"
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return cls(**{**data, "root": Path(data["root"])})


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def pg_bin(name: str) -> str:
    """A PostgreSQL server binary: Debian keeps them in /usr/lib/postgresql/<major>/bin, off the PATH."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name)]
    if not found[-1]:
        raise DeployError(f"{name} not found: install Debian's PostgreSQL (apt-get install postgresql)")
    return found[-1]


def as_db_owner(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, its commands run as the `postgres` user Debian creates."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def instance_yaml(d: Deployment, max_concurrent_runs: int = 4) -> str:
    return f"""# written by llama_sft_dagster/cli/deploy.py: the deployment's instance (Postgres, queued runs)
telemetry:
  enabled: false
storage:
  postgres:
    postgres_url: "{d.pg_url}/dagster"
# no run_coordinator key: Dagster 1.13's default is the QueuedRunCoordinator, which the daemon dequeues
concurrency:
  runs:
    max_concurrent_runs: {max_concurrent_runs}
  pools:
    default_limit: 1  # `gpu` is the only pool: one training step at a time, across all runs
    granularity: op
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  cancel_timeout_seconds: 180
  max_resume_run_attempts: 0
  poll_interval_seconds: 15
  free_slots_after_run_end_seconds: 15
"""


def workspace_yaml(d: Deployment) -> str:
    return f"""# written by llama_sft_dagster/cli/deploy.py: the code location's gRPC server
load_from:
  - grpc_server:
      host: {HOST}
      port: {d.ports["grpc"]}
      location_name: llama_sft_dagster
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/status").exists() or "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()


def wait_for(what: str, ready, timeout_s: float, log: Path | None = None, pid: int | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and (pid is None or alive(pid)):
        try:
            if ready():
                return
        except DeployError:
            raise
        except Exception:  # not up yet: connection refused, 502, a half-started server
            pass
        time.sleep(0.25)
    tail = log.read_text()[-2000:] if log and log.exists() else ""
    why = "exited" if pid is not None and not alive(pid) else f"not ready after {timeout_s:.0f} s"
    raise DeployError(f"{what} {why}" + (f"; end of {log}:\n{tail}" if tail else ""))


def http_ok(url: str, data: bytes | None = None) -> bytes:
    headers = {"Content-Type": "application/json"} if data else {}
    with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=5) as r:
        return r.read()


CODE_SERVER_STARTING = "DagsterUserCodeUnreachableError"  # the webserver's load error while the server starts


def location_loaded(d: Deployment) -> bool:
    """The webserver serves the code location from the gRPC server (a load error is raised, not waited on)."""
    query = (
        b'{"query": "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus '
        b'locationOrLoadError { __typename ... on PythonError { message } } } } } }"}'
    )
    entries = json.loads(http_ok(f"{d.ui_url}/graphql", query))["data"]["workspaceOrError"]["locationEntries"]
    for entry in entries:
        error = entry["locationOrLoadError"]
        if error and error["__typename"] == "PythonError":
            if CODE_SERVER_STARTING in error["message"]:
                # the webserver asked while the gRPC server was still importing the code: ask it to load again
                name = json.dumps(entry["name"])
                mutation = f"mutation {{ reloadRepositoryLocation(repositoryLocationName: {name}) {{ __typename }} }}"
                http_ok(f"{d.ui_url}/graphql", json.dumps({"query": mutation}).encode())
                return False
            raise DeployError(f"code location {entry['name']} failed to load: {error}")
    return bool(entries) and all(e["loadStatus"] == "LOADED" for e in entries)


def daemon_healthy(d: Deployment) -> bool:
    query = b'{"query": "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } } }"}'
    statuses = json.loads(http_ok(f"{d.ui_url}/graphql", query))["data"]["instance"]["daemonHealth"]
    return all(s["healthy"] for s in statuses["allDaemonStatuses"] if s["required"])


def start_postgres(d: Deployment) -> None:
    data = d.root / "postgres"
    if os.geteuid() == 0:  # the postgres user must reach its data folder: search (not read) rights on the way
        for folder in [*reversed(d.root.parents), d.root]:
            if folder.stat().st_mode & 0o001 == 0:
                folder.chmod(folder.stat().st_mode | 0o001)
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(data, "postgres", "postgres")
        initdb = [pg_bin("initdb"), "-D", str(data), "-U", DB_USER, "-A", "trust", "-E", "UTF8", "--no-locale"]
        subprocess.run(as_db_owner(initdb), check=True, capture_output=True, text=True)
    options = f"-h {HOST} -p {d.ports['pg']} -k {data}"  # its socket in the data folder, not /var/run
    start = [pg_bin("pg_ctl"), "-D", str(data), "-l", str(data / "server.log"), "-o", options, "-w", "start"]
    result = subprocess.run(as_db_owner(start), capture_output=True, text=True)
    if result.returncode != 0:
        raise DeployError(f"PostgreSQL did not start: {result.stdout}{result.stderr}")
    for db in ("dagster", "mlflow"):
        create = [pg_bin("createdb"), "-h", HOST, "-p", str(d.ports["pg"]), "-U", DB_USER, db]
        done = subprocess.run(create, capture_output=True, text=True)
        if done.returncode != 0 and "already exists" not in done.stderr:
            raise DeployError(f"createdb {db}: {done.stderr}")


def stop_postgres(d: Deployment) -> None:
    data = d.root / "postgres"
    if (data / "postmaster.pid").exists():
        subprocess.run(as_db_owner([pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]), check=False)


def service_command(d: Deployment, name: str) -> list[str]:
    bin_dir = Path(sys.executable).parent
    workspace = str(d.root / "workspace.yaml")
    return {
        "grpc": [str(bin_dir / "dagster"), "api", "grpc", "-m", d.module, "-h", HOST,
                 "-p", str(d.ports["grpc"]), "--location-name", "llama_sft_dagster"],
        "webserver": [str(bin_dir / "dagster-webserver"), "-h", HOST, "-p", str(d.ports["ui"]), "-w", workspace],
        "daemon": [str(bin_dir / "dagster-daemon"), "run", "-w", workspace],
        "mlflow": [str(bin_dir / "mlflow"), "server", "--backend-store-uri", f"{d.pg_url}/mlflow",
                   "--artifacts-destination", str(d.root / "mlartifacts"), "--host", HOST,
                   "--port", str(d.ports["mlflow"]), "--workers", "1"],
    }[name]  # fmt: skip


# MLflow 3's job runner (Huey consumers for GenAI scorers and trace jobs) is not used by a training project. Off,
# `mlflow server` ran 2 processes instead of 10 here, using 24 CPU s instead of 53 by 10 s after /health and
# 0.5 GB instead of 1.8 GB, and was ready as fast (2026-12-05). Set the variable to true to keep the runner.
MLFLOW_SERVICE_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def start_service(d: Deployment, name: str) -> int:
    log = open(d.root / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
    env = d.env()
    if name == "mlflow":
        env = {**MLFLOW_SERVICE_ENV, **env}  # what the caller's environment sets wins
    proc = subprocess.Popen(
        service_command(d, name), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    d.pids[name] = proc.pid
    d.save()
    return proc.pid


def wait_ready(d: Deployment, name: str, timeout_s: float = 180) -> None:
    log = d.root / "logs" / f"{name}.log"
    checks = {
        "grpc": lambda: socket.create_connection((HOST, d.ports["grpc"]), timeout=2).close() is None,
        "webserver": lambda: location_loaded(d),
        "daemon": lambda: daemon_healthy(d),
        "mlflow": lambda: http_ok(f"{d.mlflow_url}/health"),
    }
    wait_for(name, checks[name], timeout_s, log, d.pids.get(name))


def stop_service(d: Deployment, name: str, sig: int = signal.SIGTERM, timeout_s: float = 30) -> None:
    pid = d.pids.pop(name, None)
    if pid is None:
        return
    try:
        os.killpg(pid, sig)  # its session: the webserver's and daemon's child processes too
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):  # our child (started by this process): reap it, or the
            os.waitpid(pid, os.WNOHANG)  # zombie keeps its group alive for killpg(pid, 0) until the timeout
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.killpg(pid, signal.SIGKILL)
    d.save()


def start(
    root: Path | None = None,
    ports: dict[str, int] | None = None,
    out=print,
    module: str = "llama_sft_dagster.definitions",
    extra_env: dict[str, str] | None = None,
    services: tuple[str, ...] = SERVICES,
) -> Deployment:
    root = (root or state_dir() / "deploy").resolve()
    existing = Deployment.load(root)
    if existing and existing.pids:
        raise DeployError(f"a deployment is already running here ({root}): make deploy-stop first")
    (root / "logs").mkdir(parents=True, exist_ok=True)
    chosen = {k: int(os.environ.get(env) or 0) for k, env in PORT_ENV.items()} | (ports or {})
    d = Deployment(root, {k: v or free_port() for k, v in chosen.items()}, module=module, extra_env=extra_env or {})
    t0 = time.monotonic()
    d.home.mkdir(exist_ok=True)
    (d.home / "dagster.yaml").write_text(instance_yaml(d))
    (root / "workspace.yaml").write_text(workspace_yaml(d))
    d.save()
    try:
        # the code server reads no database: its import (tens of seconds) overlaps initdb and Postgres's start
        early = [name for name in services if name == "grpc"]
        for name in early:
            start_service(d, name)
        start_postgres(d)
        out(f"postgres   {d.pg_url}  ({time.monotonic() - t0:.1f} s)")
        for name in services:
            if name not in early:
                start_service(d, name)
        for name in services:  # they start in parallel; wait for each in turn
            wait_ready(d, name)
            out(f"{name:<10} ready ({time.monotonic() - t0:.1f} s)")
    except BaseException:
        stop(root, out=lambda *_: None)
        raise
    d.started_s = round(time.monotonic() - t0, 1)
    d.save()
    out(f"deployment up in {d.started_s} s: Dagster UI {d.ui_url}, MLflow {d.mlflow_url}")
    out(f"  DAGSTER_HOME={d.home} (Postgres instance); stop with `make deploy-stop`")
    return d


def stop(root: Path | None = None, out=print) -> None:
    root = (root or state_dir() / "deploy").resolve()
    d = Deployment.load(root)
    if d is None:
        out(f"no deployment in {root}")
        return
    for name in reversed(SERVICES):
        stop_service(d, name)
    stop_postgres(d)
    d.pids = {}
    d.save()
    out(f"deployment stopped ({root})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llama_sft_dagster.cli.deploy", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["start", "stop"])
    args = parser.parse_args(argv)
    try:
        start() if args.action == "start" else stop()
    except DeployError as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
