"""A run that holds the `gpu` pool slot and the device lock, as train_adapter does, for argv[1] seconds.

Run as a script by tests that need a second process on the same Dagster instance (DAGSTER_HOME) and
lock folder (SFT_LOCK_DIR). Prints `HOLDING <run id>` once it holds both, `SPAN <start> <end>` (epoch
seconds) when it lets go, and `DONE` after the run succeeded."""

import os
import sys
import time

import dagster as dg

from llama_sft_dagster.housekeeping.pool_guard import GpuPoolGuard
from llama_sft_dagster.resources.gpu import GpuResource


@dg.asset(pool="gpu")
def holds_gpu(context: dg.AssetExecutionContext, gpu: GpuResource, pool_guard: GpuPoolGuard):
    with gpu.exclusive(gpu.plan(context.log), f"run {context.run.run_id}", context.log):
        start = time.time()
        print("HOLDING", context.run.run_id, flush=True)
        time.sleep(float(sys.argv[1]))
        print("SPAN", start, time.time(), flush=True)


if __name__ == "__main__":
    with dg.DagsterInstance.get() as instance:
        gpu = GpuResource(device="cpu", lock_dir=os.environ["SFT_LOCK_DIR"])
        assert dg.materialize(
            [holds_gpu], instance=instance, resources={"gpu": gpu, "pool_guard": GpuPoolGuard()}
        ).success
    print("DONE", flush=True)
