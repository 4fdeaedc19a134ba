"""The launch of a training job: accelerate arguments (checked by accelerate's own parser and
validation), multi-node settings from the environment, the shipped configs, failure reports, and the
devices a multi-process step locks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llama_sft_dagster.core.training.device import MachineFacts, plan_device
from llama_sft_dagster.launch.command import (
    Cluster,
    accelerate_args,
    cluster_from_env,
    config_file,
    describe_failure,
    shipped_configs,
)
from llama_sft_dagster.resources.gpu import GpuResource


def _validated(args: list[str]):
    """accelerate's parse + validation of `accelerate launch ARGS` (what launch_command runs first)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    parsed, defaults, _ = _validate_launch_command(launch_command_parser().parse_args(args))
    return parsed, defaults


def test_shipped_configs_say_when_to_use_them():
    assert shipped_configs() == ["ddp", "deepspeed_zero3", "fsdp2"]
    for name in shipped_configs():
        first = config_file(name).read_text().splitlines()[0]
        assert first.startswith("# ") and "Use" in config_file(name).read_text().split("compute_environment")[0]


@pytest.mark.parametrize("name,kind", [("ddp", "MULTI_GPU"), ("fsdp2", "FSDP"), ("deepspeed_zero3", "DEEPSPEED")])
def test_shipped_configs_load_with_accelerates_schema(name, kind, tmp_path):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(config_file(name)))  # rejects unknown keys
    assert config.distributed_type.value == kind and config.mixed_precision == "no"
    args = accelerate_args(config_file(name), 2, tmp_path / "job.json", tmp_path / "logs", Cluster())
    parsed, _ = _validated(args)
    assert parsed.num_processes == 2 and parsed.module and parsed.training_script == "llama_sft_dagster.launch.train"
    assert parsed.training_script_args == [str(tmp_path / "job.json")] and parsed.tee == "3"


def test_fsdp2_config_reaches_the_trainer_as_fsdp_version_2(tmp_path):
    from accelerate.utils.launch import prepare_multi_gpu_env

    parsed, _ = _validated(accelerate_args(config_file("fsdp2"), 2, tmp_path / "j.json", tmp_path, Cluster()))
    env = prepare_multi_gpu_env(parsed)
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
    assert env["FSDP_TRANSFORMER_CLS_TO_WRAP"] == "LlamaDecoderLayer"
    assert env["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT"


def test_one_process_still_goes_through_torchrun(tmp_path):
    """num_processes=1 with the ddp config: accelerate takes the multi-GPU (torchrun) launcher, so one
    process is launched, logged and reported exactly like N."""
    parsed, _ = _validated(accelerate_args(config_file("ddp"), 1, tmp_path / "j.json", tmp_path, Cluster()))
    assert parsed.multi_gpu and parsed.num_processes == 1


def test_multi_node_settings_come_from_the_environment(tmp_path):
    env = {"PET_NNODES": "2", "PET_NODE_RANK": "1", "MASTER_ADDR": "train-0.train", "MASTER_PORT": "29400"}
    cluster = cluster_from_env(env)
    assert cluster == Cluster(nnodes=2, node_rank=1, master_addr="train-0.train", master_port=29400)
    parsed, _ = _validated(accelerate_args(config_file("ddp"), 4, tmp_path / "j.json", tmp_path, cluster))
    assert (parsed.num_processes, parsed.num_machines, parsed.machine_rank) == (8, 2, 1)
    assert (parsed.main_process_ip, parsed.main_process_port) == ("train-0.train", 29400)
    # the project's own names win over the scheduler's; Slurm's are read too
    assert cluster_from_env({**env, "SFT_NODE_RANK": "0"}).node_rank == 0
    assert cluster_from_env({"SLURM_NNODES": "3", "SLURM_NODEID": "2", "MASTER_ADDR": "n0"}).nnodes == 3
    assert cluster_from_env({}) == Cluster()


@pytest.mark.parametrize(
    "env,message",
    [
        ({"SFT_NNODES": "2"}, "rendezvous host"),
        ({"SFT_NNODES": "2", "SFT_NODE_RANK": "2", "MASTER_ADDR": "h"}, "must be below the node count"),
        ({"SFT_NNODES": "two"}, "SFT_NNODES='two' must be a non-negative integer"),
    ],
)
def test_bad_multi_node_settings_name_the_variable(env, message):
    with pytest.raises(ValueError, match=message):
        cluster_from_env(env)


def test_unknown_launch_config_lists_the_shipped_ones(tmp_path):
    with pytest.raises(ValueError, match=r"launch_config='zero9'.*\['ddp', 'deepspeed_zero3', 'fsdp2'\]"):
        config_file("zero9")
    own = tmp_path / "mine.yaml"
    own.write_text("distributed_type: MULTI_GPU\n")
    assert config_file(str(own)) == own.resolve()


def test_failure_report_names_the_rank_and_shows_its_last_lines(tmp_path):
    logs = tmp_path / "logs" / "none_abc" / "attempt_0" / "1"
    logs.mkdir(parents=True)
    (logs / "stdout.log").write_text("".join(f"step {i}\n" for i in range(40)))
    (logs / "stderr.log").write_text("")
    failure = tmp_path / "failure.json"
    failure.write_text(
        json.dumps(
            {
                "rank": 1,
                "local_rank": 1,
                "exitcode": -9,
                "signal": "SIGKILL",
                "pid": 42,
                "message": "Signal 9 (SIGKILL) received by PID 42",
            }
        )
    )
    message, tail = describe_failure(failure, tmp_path / "logs", "code 1")
    assert message.startswith("training failed: rank 1 (local rank 1, pid 42) was killed by SIGKILL")
    assert tail.splitlines()[0] == "--- rank 1 stdout (last 20 lines) ---" and tail.splitlines()[-1] == "step 39"
    failure.unlink()
    message, _ = describe_failure(failure, tmp_path / "logs", "External execution process failed with code 2")
    assert "before any rank reported a failure (External execution process failed with code 2)" in message


def test_failure_record_from_torch_process_failure(tmp_path):
    from torch.distributed.elastic.multiprocessing.errors import ProcessFailure

    from llama_sft_dagster.launch.command import failure_record

    record = failure_record(3, ProcessFailure(local_rank=1, pid=7, exitcode=-9, error_file=str(tmp_path / "none")))
    assert (record["rank"], record["local_rank"], record["signal"], record["exitcode"]) == (3, 1, "SIGKILL", -9)


def test_root_failure_is_the_rank_that_died_not_the_one_torchrun_stopped(tmp_path):
    from torch.distributed.elastic.multiprocessing.errors import ProcessFailure

    from llama_sft_dagster.launch.command import root_failure

    def failure(local_rank: int, exitcode: int, timestamp: int) -> ProcessFailure:
        f = ProcessFailure(
            local_rank=local_rank, pid=100 + local_rank, exitcode=exitcode, error_file=str(tmp_path / "none")
        )
        f.timestamp = timestamp
        return f

    # seen in a run: rank 1 SIGKILLed, rank 0 then SIGTERMed by torchrun with an earlier whole-second timestamp
    stopped, killed = failure(0, -15, 1000), failure(1, -9, 1001)
    assert root_failure({0: stopped, 1: killed}) == (1, killed)
    assert root_failure({0: stopped, 1: failure(1, -15, 1001)})[0] == 0  # all stopped: the earliest
    crashed = failure(1, 1, 1000)
    assert root_failure({0: failure(0, 1, 1000), 1: crashed})[0] == 0  # a tie: the lower rank


# --- the devices a multi-process step holds ------------------------------------------------------------


def _cuda():
    return plan_device("auto", MachineFacts(True, True, False, "H100", 80.0))


def test_multi_process_step_locks_every_gpu_it_uses(tmp_path, monkeypatch):
    gpu = GpuResource(lock_dir=str(tmp_path))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,2,7")
    assert gpu.device_ids(_cuda(), 2) == ["4", "2"]
    assert [p.name for p in gpu.lock_paths(_cuda(), 2)] == ["cuda-2.lock", "cuda-4.lock"]  # sorted: no deadlock
    with pytest.raises(ValueError, match="4 processes need 4 GPUs"):
        gpu.device_ids(_cuda(), 4)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert [p.name for p in gpu.lock_paths(_cuda(), 3)] == ["cuda-0.lock", "cuda-1.lock", "cuda-2.lock"]
    # CPU ranks share the one CPU lock
    assert [p.name for p in gpu.lock_paths(plan_device("cpu", MachineFacts(False)), 2)] == ["cpu.lock"]


def test_exclusive_holds_all_locks_and_releases_them(tmp_path, monkeypatch):
    import fcntl

    gpu = GpuResource(lock_dir=str(tmp_path))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with gpu.exclusive(_cuda(), "run-A", processes=2):
        for name in ("cuda-0.lock", "cuda-1.lock"):
            assert (tmp_path / name).read_text().startswith("run-A (pid")
            with open(tmp_path / name) as other, pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    for name in ("cuda-0.lock", "cuda-1.lock"):
        assert (tmp_path / name).read_text() == ""
        with open(tmp_path / name) as other:
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_process_count(monkeypatch):
    import torch

    cpu = plan_device("cpu", MachineFacts(False))
    assert GpuResource().process_count(cpu) == 1 and GpuResource(processes=2).process_count(cpu) == 2
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    assert GpuResource().process_count(_cuda()) == 8 and GpuResource(processes=4).process_count(_cuda()) == 4
    with pytest.raises(ValueError, match="processes=9, but only 8 CUDA device"):
        GpuResource(processes=9).process_count(_cuda())


def test_job_spec_round_trips(tmp_path):
    from llama_sft_dagster.launch.job import TrainJob

    job = TrainJob(
        base_dir="b",
        train_path="t",
        validation_path="v",
        fmt={"max_length": 8},
        config={"seed": 1, "lora_r": 2},
        batch={"micro_batch": 4},
        plan={"device": "cpu"},
        out_dir=str(tmp_path),
        run_fingerprint="fp",
        processes=2,
        accelerate_config="ddp",
    )
    assert TrainJob.read(job.write(tmp_path / "job.json")) == job
    assert job.failure_file == Path(tmp_path) / "launch" / "failure.json"


def test_rank_and_launcher_modules_import_no_dagster():
    """The entry points a cluster scheduler runs import dagster_pipes, never dagster."""
    import subprocess
    import sys

    code = (
        "import sys, llama_sft_dagster.launch.launcher, llama_sft_dagster.launch.train; "
        "print(sorted(m for m in sys.modules if m == 'dagster' or m.startswith('dagster.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_train_adapter_code_version_covers_the_code_the_ranks_run():
    """The child runs by module name; the asset reaches it through function references, so an edit to a
    rank's training code marks train_adapter stale like an edit to the asset body."""
    from llama_sft_dagster.assets.training import train_adapter
    from llama_sft_dagster.core.versions import code_sources

    sources = code_sources(train_adapter.op.compute_fn.decorated_fn)
    for reached in (
        "llama_sft_dagster.launch.launcher.main",
        "llama_sft_dagster.launch.train.train",
        "llama_sft_dagster.core.training.trainer.fit",
        "llama_sft_dagster.core.training.trainer.setup",
    ):
        assert reached in sources, reached
