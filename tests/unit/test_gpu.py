"""GPU resource decisions (no GPU here: torch.cuda facts are monkeypatched, the one allowed mock)."""

import logging
import os

import pytest

from llama_sft_dagster.core.training.device import CPU_MALLOC_TUNABLES, MachineFacts, cpu_training_env, plan_device
from llama_sft_dagster.resources import gpu as gpu_mod
from llama_sft_dagster.resources.gpu import GpuResource


@pytest.mark.parametrize(
    "facts,device,dtype,attn,optim",
    [
        (MachineFacts(True, True, True, "H100", 80.0), "cuda", "bfloat16", "flash_attention_2", "adamw_torch_fused"),
        (MachineFacts(True, True, False, "A100", 40.0), "cuda", "bfloat16", "sdpa", "adamw_torch_fused"),
        (MachineFacts(True, False, True, "T4", 15.0), "cuda", "float32", "sdpa", "adamw_torch_fused"),
        (MachineFacts(False), "cpu", "float32", "sdpa", "adamw_torch"),
    ],
)
def test_auto_decisions(facts, device, dtype, attn, optim):
    plan = plan_device("auto", facts)
    assert (plan.device, plan.dtype, plan.attn_implementation, plan.optim) == (device, dtype, attn, optim)
    assert plan.tf32 == plan.gradient_checkpointing == (device == "cuda")
    assert (plan.fallback_reason is None) == (device == "cuda")


def test_cpu_forced_and_cuda_required():
    assert plan_device("cpu", MachineFacts(True, True, True)).device == "cpu"
    with pytest.raises(RuntimeError, match="cuda"):
        plan_device("cuda", MachineFacts(False))
    with pytest.raises(ValueError, match="device"):
        plan_device("tpu", MachineFacts(False))


def test_resource_logs_one_line_on_cpu_fallback(caplog):
    with caplog.at_level(logging.WARNING):
        plan = GpuResource().plan()
    assert plan.device == "cpu"
    assert [r for r in caplog.records if "training on CPU" in r.message]


def test_resource_reads_cuda_facts(monkeypatch):
    import torch

    class Props:
        name, total_memory = "Fake H100", 80 * 1024**3

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: Props())
    monkeypatch.setattr(gpu_mod, "_flash_attn_importable", lambda: True)
    plan = GpuResource().plan()
    assert (plan.device, plan.dtype, plan.attn_implementation, plan.device_name, plan.total_memory_gb) == (
        "cuda",
        "bfloat16",
        "flash_attention_2",
        "Fake H100",
        80.0,
    )
    assert plan.tf32 and plan.gradient_checkpointing and plan.optim == "adamw_torch_fused"
    plan = GpuResource(flash_attention=False, gradient_checkpointing=False).plan()
    assert plan.attn_implementation == "sdpa" and not plan.gradient_checkpointing


def _cpu_plan():
    return plan_device("cpu", MachineFacts(False))


class _Said:
    """A logger that keeps its warnings and signals the first."""

    def __init__(self):
        import threading

        self.warnings, self.first = [], threading.Event()

    def warning(self, message):
        self.warnings.append(message)
        self.first.set()


def test_exclusive_makes_a_second_holder_wait_and_names_the_first(tmp_path):
    import threading

    gpu = GpuResource(device="cpu", lock_dir=str(tmp_path))
    plan, order = _cpu_plan(), []
    a_holds, release_a, b_in = threading.Event(), threading.Event(), threading.Event()
    said_a, said_b = _Said(), _Said()

    def hold_a():
        with gpu.exclusive(plan, "run-A", logger=said_a):
            order.append("A in")
            a_holds.set()
            release_a.wait(30)
            order.append("A out")

    def hold_b():
        with gpu.exclusive(plan, "run-B", logger=said_b):
            order.append("B in")
            b_in.set()
            holder_seen.append((tmp_path / "cpu.lock").read_text())

    holder_seen = []
    first, second = threading.Thread(target=hold_a), threading.Thread(target=hold_b)
    first.start()
    assert a_holds.wait(10)
    second.start()
    assert said_b.first.wait(10), "run-B did not report that it waits"
    # B said it waits; given a second to get in (which a broken lock would let it do), it stays out while A holds
    assert not b_in.wait(1.0)
    assert order == ["A in"]
    release_a.set()
    first.join(10)
    second.join(10)
    assert order == ["A in", "A out", "B in"]
    assert len(said_b.warnings) == 1 and said_b.warnings[0].startswith("waiting for cpu: held by run-A (pid")
    assert said_a.warnings == []  # the first holder found the device free
    assert holder_seen == [f"run-B (pid {os.getpid()})\n"]
    assert (tmp_path / "cpu.lock").read_text() == ""  # the holder's name is cleared on release


def test_lock_is_per_gpu(tmp_path, monkeypatch):
    gpu = GpuResource(lock_dir=str(tmp_path))
    cuda = plan_device("auto", MachineFacts(True, True, False, "H100", 80.0))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert gpu.lock_path(cuda).name == "cuda-1.lock"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert gpu.lock_path(cuda).name == "cuda-0.lock"  # one process uses the first visible GPU
    assert gpu.lock_path(_cpu_plan()).name == "cpu.lock"


def test_unusable_lock_dir_is_a_clear_error_naming_it(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    gpu = GpuResource(device="cpu", lock_dir=str(blocker / "locks"))
    with pytest.raises(OSError, match=r"cannot open the device lock .*a_file/locks/cpu.lock"):
        with gpu.exclusive(_cpu_plan(), "run"):
            pass


def test_full_profile_on_cuda_without_flash_attn_fails_with_one_line():
    from llama_sft_dagster.core.training.device import FlashAttentionMissing

    with pytest.raises(FlashAttentionMissing) as err:
        plan_device("auto", MachineFacts(True, True, False, "H100", 80.0), require_flash_attention=True)
    assert "\n" not in str(err.value) and "attn_implementation" in str(err.value) and "flash-attn" in str(err.value)


@pytest.mark.parametrize("explicit", ["sdpa", "eager"])
def test_explicit_attention_kernel_is_used_without_flash_attn(explicit):
    plan = plan_device(
        "auto",
        MachineFacts(True, True, False, "H100", 80.0),
        require_flash_attention=True,
        attn_implementation=explicit,
    )
    assert plan.attn_implementation == explicit and plan.metadata()["attn_implementation"] == explicit


def test_explicit_flash_attention_without_flash_attn_is_refused():
    from llama_sft_dagster.core.training.device import FlashAttentionMissing

    with pytest.raises(FlashAttentionMissing, match="flash_attention_2"):
        plan_device("auto", MachineFacts(True, True, False, "A100", 40.0), attn_implementation="flash_attention_2")


@pytest.mark.parametrize("profile,required", [("demo", False), ("rehearsal", False), ("full", False)])
def test_flash_attention_is_not_required_in_any_profile(profile, required):
    """Profile defaults are read at import, so each profile is asked in its own process."""
    import os
    import subprocess
    import sys

    code = (
        "from llama_sft_dagster.resources.gpu import GpuResource as G; g = G(); "
        "print(g.require_flash_attention, g.attn_implementation)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "SFT_PROFILE": profile},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.stdout.split() == [str(required), "None"], out.stderr[-2000:]


def test_cpu_training_env_sets_the_allocator_tunables_unless_off_or_the_caller_set_its_own():
    assert cpu_training_env({}, reuse_memory=True) == {"GLIBC_TUNABLES": CPU_MALLOC_TUNABLES}
    assert cpu_training_env({}, reuse_memory=False) == {}
    assert cpu_training_env({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, reuse_memory=True) == {}  # theirs stays
