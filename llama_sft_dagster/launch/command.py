"""The `accelerate launch` arguments of a training job, multi-node settings from the environment, and
the failure report of a rank that died. Pure functions of their inputs (tested in tests/unit/test_launch.py).

Single machine: `accelerate launch --config_file ddp.yaml --num_processes N --tee 3 --log_dir DIR -m
llama_sft_dagster.launch.train JOB.json`; accelerate hands it to torchrun's elastic agent even for N=1,
so one path covers 1..N processes (on CPU the ranks use gloo, on CUDA nccl).

Several machines: run the same launcher on each node with these variables set (first one found wins):

    nodes           SFT_NNODES,     PET_NNODES (Kubeflow PyTorchJob), SLURM_NNODES
    this node       SFT_NODE_RANK,  PET_NODE_RANK, NODE_RANK, SLURM_NODEID
    rendezvous host SFT_MASTER_ADDR, PET_MASTER_ADDR, MASTER_ADDR
    rendezvous port SFT_MASTER_PORT, PET_MASTER_PORT, MASTER_PORT (default 29500)
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path

from llama_sft_dagster.launch.train import main as rank_main

CONFIG_DIR = Path(__file__).parent / "accelerate"
DEFAULT_PORT = 29500  # torchrun's default master port

_ENV = {
    "nnodes": ("SFT_NNODES", "PET_NNODES", "SLURM_NNODES"),
    "node_rank": ("SFT_NODE_RANK", "PET_NODE_RANK", "NODE_RANK", "SLURM_NODEID"),
    "master_addr": ("SFT_MASTER_ADDR", "PET_MASTER_ADDR", "MASTER_ADDR"),
    "master_port": ("SFT_MASTER_PORT", "PET_MASTER_PORT", "MASTER_PORT"),
}


def shipped_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def config_file(name_or_path: str) -> Path:
    """A shipped config by name ("ddp", "fsdp2", "deepspeed_zero3") or the path of the user's own."""
    shipped = CONFIG_DIR / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    path = Path(name_or_path).expanduser()
    if path.suffix in (".yaml", ".yml", ".json") and path.is_file():
        return path.resolve()
    raise ValueError(
        f"launch_config={name_or_path!r}: not one of the shipped accelerate configs {shipped_configs()} "
        f"(in {CONFIG_DIR.name}/ of the launch package) and not an existing .yaml/.json file"
    )


@dataclasses.dataclass(frozen=True)
class Cluster:
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = ""
    master_port: int = DEFAULT_PORT


def _first(env: Mapping[str, str], names: tuple[str, ...]) -> tuple[str, str] | None:
    for name in names:
        if env.get(name, "").strip():
            return name, env[name].strip()
    return None


def cluster_from_env(env: Mapping[str, str]) -> Cluster:
    """The multi-node settings in `env` (see the module docstring); one machine when none are set."""
    found = {key: _first(env, names) for key, names in _ENV.items()}
    values = {}
    for key in ("nnodes", "node_rank", "master_port"):
        if found[key]:
            name, text = found[key]
            if not text.isdigit():
                raise ValueError(f"{name}={text!r} must be a non-negative integer")
            values[key] = int(text)
    cluster = Cluster(**values, master_addr=found["master_addr"][1] if found["master_addr"] else "")
    if cluster.nnodes < 1:
        raise ValueError(f"{found['nnodes'][0]}=0: a job runs on at least one node")
    if cluster.node_rank >= cluster.nnodes:
        raise ValueError(
            f"node rank {cluster.node_rank} ({found['node_rank'][0]}) must be below the node count {cluster.nnodes}"
        )
    if cluster.nnodes > 1 and not cluster.master_addr:
        raise ValueError(f"{cluster.nnodes} nodes need a rendezvous host: set one of {', '.join(_ENV['master_addr'])}")
    return cluster


def accelerate_args(config: Path, processes: int, job_path: Path, log_dir: Path, cluster: Cluster) -> list[str]:
    """Arguments of `accelerate launch` (without the program name) for this node of the job."""
    if processes < 1:
        raise ValueError(f"processes={processes}: at least one process per node")
    args = [
        "--config_file",
        str(config),
        "--num_processes",
        str(processes * cluster.nnodes),
        "--num_machines",
        str(cluster.nnodes),
        "--machine_rank",
        str(cluster.node_rank),
        # every rank's stdout and stderr go to the console and to log_dir/<run>/attempt_0/<local rank>/
        "--tee",
        "3",
        "--log_dir",
        str(log_dir),
        # a failed rank fails the job at once (the Dagster step retries, not torchrun)
        "--max_restarts",
        "0",
    ]
    if cluster.nnodes > 1:
        args += ["--main_process_ip", cluster.master_addr, "--main_process_port", str(cluster.master_port)]
    # named through the function, so the asset's derived code version covers the code every rank runs
    return [*args, "--module", rank_main.__module__, str(job_path)]


def failure_record(rank: int, failure) -> dict:
    """What the launcher keeps of torch's ProcessFailure (torch.distributed.elastic.multiprocessing.errors)."""
    signal = failure.signal_name() if failure.exitcode < 0 else ""
    message = failure.message if isinstance(failure.message, str) else json.dumps(failure.message)
    return {
        "rank": int(rank),
        "local_rank": int(failure.local_rank),
        "exitcode": int(failure.exitcode),
        "signal": signal,
        "pid": int(failure.pid),
        "message": message[-2000:],
    }


def root_failure(failures: Mapping[int, object]) -> tuple[int, object]:
    """The (global rank, ProcessFailure) that failed on its own, from a ChildFailedError's `failures`.

    torch's own pick (`get_first_failure`, the earliest timestamp) is a race here: once a rank dies torchrun
    SIGTERMs the others, the timestamps are whole seconds, and a stopped rank's comes from the error file it
    writes, so the stopped rank 0 can tie with or precede the SIGKILLed rank 1. A rank ended by SIGTERM is
    the cause only when every rank was (e.g. the whole job was stopped from outside)."""
    import signal

    own = {r: f for r, f in failures.items() if getattr(f, "exitcode", 0) != -signal.SIGTERM}
    return min((own or failures).items(), key=lambda item: (item[1].timestamp, item[0]))


def rank_log_tail(log_dir: Path, local_rank: int, lines: int = 20) -> str:
    """The last lines of a rank's stderr and stdout in torchrun's log folder (newest attempt)."""
    tails = []
    for stream in ("stderr", "stdout"):
        files = sorted(Path(log_dir).glob(f"*/attempt_*/{local_rank}/{stream}.log"), key=lambda p: p.stat().st_mtime)
        if files:
            text = files[-1].read_text(errors="replace").rstrip().splitlines()[-lines:]
            if text:
                tails.append(f"--- rank {local_rank} {stream} (last {len(text)} lines) ---\n" + "\n".join(text))
    return "\n".join(tails)


def describe_failure(failure_file: Path, log_dir: Path, launcher_error: str) -> tuple[str, str]:
    """(one-line message naming the failed rank, that rank's last log lines) for the launcher's exit."""
    if not Path(failure_file).is_file():
        tail = "\n".join(t for t in (rank_log_tail(log_dir, r) for r in range(64)) if t)
        return (
            f"the training launcher failed before any rank reported a failure ({launcher_error}); "
            "see the step's stdout/stderr",
            tail,
        )
    f = json.loads(Path(failure_file).read_text())
    how = f"was killed by {f['signal']}" if f["signal"] else f"exited with code {f['exitcode']}"
    message = (
        f"training failed: rank {f['rank']} (local rank {f['local_rank']}, pid {f['pid']}) {how}; "
        "any other ranks were stopped"
    )
    return message, rank_log_tail(log_dir, f["local_rank"]) or f.get("message", "")
