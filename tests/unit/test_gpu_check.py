"""benchmarks/gpu_check.py: one line and exit 0 without CUDA; its code path (the project's trainer setup,
masking check, timed steps, MFU) run on the CPU with the rehearsal shape so it is not dead code."""

import json
import subprocess
import sys

from support.paths import REPO, shared_file


def run(*args, timeout=600):
    return subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_without_cuda_it_says_so_in_one_line_and_exits_0():
    proc = run()
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().count("\n") == 0 and "no CUDA device" in proc.stdout


def test_the_code_path_runs_on_cpu_with_the_rehearsal_shape():
    shared_file("llama31_tokenizer")
    proc = run(
        "--shape", "rehearsal", "--allow-cpu", "--steps", "1", "--warmup", "0", "--rows", "8", "--modes", "planned"
    )  # one mode: each costs a model, a masking check and the steps
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [(r["kernel"], r["mode"]) for r in report["results"]] == [("sdpa", "planned")]
    assert report["skipped"] == {"flash_attention_2": "no CUDA"}
    for r in report["results"]:
        assert r["masking_ok"] and r["tokens_per_s"] > 0 and 0 < r["mfu"] and r["params_trainable"] > 0
    assert report["results"][0]["padding_share"] == 0 and report["results"][0]["params_total"] > 8_000_000
    planned = report["results"][0]
    assert planned["timed_steps"] == 1 and planned["median_step_s"] > 0 and planned["micro_batch"] == 8  # CPU: 8 x 4
    table = proc.stdout.strip().splitlines()[-4:-1]
    assert table[0].startswith("| configuration | kernel |") and table[2].startswith("| planned | sdpa | 8 | off |")
