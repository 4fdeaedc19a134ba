"""The rehearsal profile end to end (raw samples -> merged_model) in one in-process Dagster run.

Run as a script with SFT_PROFILE=rehearsal (profile defaults are read at import), SFT_STATE_DIR and
DAGSTER_HOME set: every resource takes its rehearsal default except the state folders and a private
device-lock folder (the default lock is machine-wide, shared with any other training on the host).
Prints one JSON line: the run's success, every asset check's name, result and metadata, each step's
seconds and each asset's numeric metadata.

    rehearsal_run.py                      # the whole graph
    rehearsal_run.py --select train_adapter --processes 2 --train-config '{"max_steps": 3}'
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import dagster as dg

STRINGS_KEPT = (
    "attn_implementation_used",
    "glibc_tunables",
    "model_id",
    "mlflow_run_id",
    "tensorboard",
)  # other strings: markdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--select", nargs="*", help="asset keys to materialize (default: every asset)")
    parser.add_argument("--processes", type=int, help="training processes (GpuResource.processes)")
    parser.add_argument("--train-config", type=json.loads, default={}, help="train_adapter config overrides (JSON)")
    args = parser.parse_args(argv)
    from llama_sft_dagster.assets.adapter_training import PLOTS  # kept too: did rank 0 make them
    from llama_sft_dagster.config.profiles import active_profile
    from llama_sft_dagster.definitions import all_assets, all_checks
    from llama_sft_dagster.resources.data_sources import BitextSource, MultiwozSource
    from llama_sft_dagster.resources.gpu import GpuResource
    from support.resources import project_resources

    assert active_profile() == "rehearsal", "run with SFT_PROFILE=rehearsal"
    state = Path(os.environ["SFT_STATE_DIR"])
    gpu = GpuResource(device="cpu", processes=args.processes, lock_dir=str(state / "locks"))
    resources = project_resources(state, bitext=BitextSource(), multiwoz=MultiwozSource(), gpu=gpu)
    run_config = {"ops": {"train_adapter": {"config": args.train_config}}} if args.train_config else None
    start = time.time()
    with dg.DagsterInstance.get() as instance:
        result = dg.materialize(
            [*all_assets, *all_checks],
            resources=resources,
            instance=instance,
            selection=args.select,
            run_config=run_config,
            raise_on_error=False,
        )
        checks = {}
        for event in result.get_asset_check_evaluations():
            meta = {k: getattr(v, "value", v) for k, v in event.metadata.items()}
            checks[event.check_name] = {"passed": event.passed, "metadata": meta}
        steps = {
            e.step_key: round(e.event_specific_data.duration_ms / 1000, 1)
            for e in result.all_events
            if e.event_type_value == "STEP_SUCCESS"
        }
        assets = {}
        for event in result.get_asset_materialization_events():
            mat = event.event_specific_data.materialization
            assets[mat.asset_key.to_user_string()] = {
                k: v.value
                for k, v in mat.metadata.items()
                if isinstance(getattr(v, "value", None), (int, float, str))
                and not isinstance(v.value, str)
                or k in (*STRINGS_KEPT, *PLOTS)
            }
    print(
        json.dumps(
            {
                "success": result.success,
                "seconds": round(time.time() - start, 1),
                "checks": checks,
                "steps": steps,
                "assets": assets,
                "failures": [e.message for e in result.all_events if e.is_failure],
            },
            default=str,
        )
    )
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
