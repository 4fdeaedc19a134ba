"""Training as a launched job: `accelerate launch` (torchrun's elastic agent) starts 1..N rank processes
on 1..M machines; Dagster starts the launcher through Pipes and hears back from rank 0.

    job.py       the job spec (one JSON file) the asset writes and every process reads
    command.py   the accelerate launch arguments, multi-node settings from the environment, failure reports
    launcher.py  `python -m llama_sft_dagster.launch.launcher JOB.json`: the entry point on every machine
    train.py     one rank: set up the trainer, train, rank 0 writes and reports
    accelerate/  the shipped accelerate configs (ddp.yaml default, fsdp2.yaml, deepspeed_zero3.yaml)

Dagster-free: these modules import dagster_pipes, never dagster, so a cluster launcher (KubeRay, Kubeflow,
Slurm) can run the same entry point without the code location.
"""
