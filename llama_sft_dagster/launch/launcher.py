"""The entry point of a training job on each machine: `accelerate launch` with the job's config, and a
record of the rank that failed.

    python -m llama_sft_dagster.launch.launcher JOB.json

accelerate's launcher runs torchrun's elastic agent in this process; the agent starts the ranks
(`python -m llama_sft_dagster.launch.train JOB.json`), stops them all when one fails, and raises
ChildFailedError, whose root failure (command.root_failure) is written to the job's failure.json before exiting 1.
Multi-node settings come from the environment (see command.py), so a cluster scheduler runs this same
command on every node.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from llama_sft_dagster.launch.command import (
    accelerate_args,
    cluster_from_env,
    config_file,
    failure_record,
    root_failure,
)
from llama_sft_dagster.launch.job import TrainJob


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    job_path = Path(argv[0]).resolve()
    job = TrainJob.read(job_path)
    job.failure_file.unlink(missing_ok=True)
    args = accelerate_args(
        config_file(job.accelerate_config or "ddp"), job.processes, job_path, job.log_dir, cluster_from_env(os.environ)
    )
    print("accelerate launch " + " ".join(args), flush=True)
    try:
        launch_command(launch_command_parser().parse_args(args))
    except ChildFailedError as exc:
        rank, failure = root_failure(exc.failures)
        job.failure_file.write_text(json.dumps(failure_record(rank, failure)))
        print(exc, file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
