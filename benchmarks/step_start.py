"""How a run's step processes start: Dagster's default `spawn` (the baseline: each step a fresh interpreter that
imports Dagster and the code location) against the project's executor (config/executor.py: steps forked from a
server that imported the code location once).

    python benchmarks/step_start.py                  # the demo's raw stage, 2 runs per mode
    python benchmarks/step_start.py --repeats 3

Each run is `dagster asset materialize -m llama_sft_dagster.definitions --select <the raw stage>` on a fresh state
folder and Dagster home (demo profile: the corpus is generated, nothing is downloaded), the baseline with the run
config `execution: {config: {multiprocess: {start_method: {spawn: {}}}}}`. The raw stage is 4 assets and 1 check:
5 step processes whose own work takes about 1.5 s each. Reported: each run's wall seconds, the fastest per mode,
and the ratio. One JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RAW_STAGE = "bitext_raw,multiwoz_raw,conversations_raw,raw_pairs"
SPAWN = {"execution": {"config": {"multiprocess": {"start_method": {"spawn": {}}}}}}


def one_run(run_config: dict | None) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "SFT_PROFILE": "demo",
            "SFT_STATE_DIR": tmp,
            "DAGSTER_HOME": str(Path(tmp) / "dagster_home"),
        }
        Path(env["DAGSTER_HOME"]).mkdir()
        cmd = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "llama_sft_dagster.definitions"]
        cmd += ["--select", RAW_STAGE, *(["--config-json", json.dumps(run_config)] if run_config else [])]
        started = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if proc.returncode != 0 or proc.stderr.count("STEP_SUCCESS") != 5:
            sys.exit(f"the run failed or did not run 5 steps:\n{proc.stderr[-3000:]}")
        return round(seconds, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2, help="runs per mode (modes alternate)")
    args = parser.parse_args()
    modes = {"spawn (Dagster's default, baseline)": SPAWN, "fork server (the project's)": None}
    runs: dict[str, list[float]] = {name: [] for name in modes}
    for _ in range(args.repeats):
        for name, run_config in modes.items():
            runs[name].append(one_run(run_config))
            print(f"{name:38s} {runs[name][-1]:6.2f} s", flush=True)
    best = {name: min(seconds) for name, seconds in runs.items()}
    ratio = round(best["spawn (Dagster's default, baseline)"] / best["fork server (the project's)"], 2)
    print(f"fastest: {best}; spawn / fork server: {ratio}x")
    print(json.dumps({"runs": runs, "fastest": best, "speedup": ratio}))


if __name__ == "__main__":
    main()
