"""`make torch` (run by `make install`): the CUDA build of torch where a GPU is present, the pinned CPU build
otherwise. The GPU probe is faked (an `nvidia-smi` on PATH listing a GPU) and so are the packages: tiny fake torch
wheels, a CPU one in a find-links folder (as the machine's CPU pin) and a CUDA one in a local simple index
(TORCH_INDEX_URL). The project's own uv installs them into a bare venv."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from support.paths import REPO

UV = REPO / ".venv" / "bin" / "uv"


def fake_torch_wheel(folder: Path, local: str) -> Path:
    version = f"2.13.0+{local}"
    name = folder / f"torch-{version}-py3-none-any.whl"
    files = {
        "torch/__init__.py": f"__version__ = {version!r}\n",
        f"torch-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n",
        f"torch-{version}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = [
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b'=').decode()},"
        f"{len(text.encode())}"
        for path, text in files.items()
    ]
    files[f"torch-{version}.dist-info/RECORD"] = "\n".join([*record, f"torch-{version}.dist-info/RECORD,,"]) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(name, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
    return name


@pytest.fixture(scope="module")
def machine(tmp_path_factory):
    root = tmp_path_factory.mktemp("install")
    fake_torch_wheel(root / "cpu_links", "cpu")
    wheel = fake_torch_wheel(root / "cuda_index" / "simple" / "torch", "cu130")
    (wheel.parent / "index.html").write_text(f'<html><body><a href="{wheel.name}">{wheel.name}</a></body></html>\n')
    gpu_bin = root / "gpu_bin"
    gpu_bin.mkdir()
    smi = gpu_bin / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-00000000-0000-0000-0000-000000000000)'\n")
    smi.chmod(0o755)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    return root


def make_torch(machine: Path, gpu: bool, *extra: str) -> str:
    path = os.environ["PATH"]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("UV_", "PIP_", "TORCH_"))},
        "PATH": f"{machine / 'gpu_bin'}:{path}" if gpu else path,
        "PIP_FIND_LINKS": str(machine / "cpu_links"),  # the Makefile hands it on to uv, as on this machine
        "TORCH_INDEX_URL": (machine / "cuda_index" / "simple").as_uri(),
        "UV_OFFLINE": "1",
    }
    if not gpu or "TORCH_BUILD=cpu" in extra:
        env["UV_NO_INDEX"] = "1"  # the fake find-links folder only, never the network's index
    proc = subprocess.run(
        ["make", "--no-print-directory", "torch", f"VENV={machine / 'venv'}", f"UV={UV}", *extra],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def test_no_gpu_installs_the_pinned_cpu_build(machine):
    assert subprocess.run(["sh", "-c", "command -v nvidia-smi"], capture_output=True).returncode != 0, "a real GPU?"
    assert make_torch(machine, gpu=False) == "torch 2.13.0+cpu (cpu build)"


def test_a_gpu_installs_the_cuda_build_and_the_variable_overrides_the_probe(machine):
    assert make_torch(machine, gpu=True) == "torch 2.13.0+cu130 (cuda build)"
    assert make_torch(machine, True, "TORCH_BUILD=cpu") == "torch 2.13.0+cpu (cpu build)"
