"""Kubernetes placement of the steps (used only when the code location runs on Kubernetes, deploy/).

`SFT_EXECUTOR=k8s` makes every step its own pod (dagster-k8s `k8s_job_executor`); the training step's
op tag `dagster-k8s/config` then asks for GPUs and lands on the GPU node pool. Locally (no variable) the
default executor runs and the tag is ignored. Node pool label and GPU count come from the environment of
the code location, so a cluster is set up without code changes:

    SFT_K8S_TRAIN_GPUS      GPUs of the training pod (default 1; the gpu resource starts one rank each)
    SFT_K8S_GPU_NODE_LABEL  node label selecting the GPU pool, key=value (default nvidia.com/gpu.present=true)
"""

from __future__ import annotations

import os

K8S_CONFIG_TAG = "dagster-k8s/config"  # read by dagster-k8s's executor and run launcher


def training_step_k8s_config(env: dict[str, str] | None = None) -> dict:
    """The `dagster-k8s/config` of a training step: GPUs requested, GPU node pool, its taint tolerated."""
    env = os.environ if env is None else env
    gpus = env.get("SFT_K8S_TRAIN_GPUS", "1")
    if not gpus.isdigit() or int(gpus) < 1:
        raise ValueError(f"SFT_K8S_TRAIN_GPUS={gpus!r}: a positive number of GPUs")
    key, _, value = env.get("SFT_K8S_GPU_NODE_LABEL", "nvidia.com/gpu.present=true").partition("=")
    return {
        "container_config": {"resources": {"limits": {"nvidia.com/gpu": gpus}, "requests": {"nvidia.com/gpu": gpus}}},
        "pod_spec_config": {
            "node_selector": {key: value},
            # GPU pools are usually tainted so that CPU pods stay off them
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        },
    }


def step_executor(env: dict[str, str] | None = None):
    """dagster-k8s's k8s_job_executor when SFT_EXECUTOR=k8s, else None (Dagster's default executor)."""
    env = os.environ if env is None else env
    choice = env.get("SFT_EXECUTOR", "")
    if choice in ("", "default"):
        return None
    if choice != "k8s":
        raise ValueError(f"SFT_EXECUTOR={choice!r}: use 'k8s' (a pod per step) or leave it unset")
    from dagster_k8s import k8s_job_executor

    return k8s_job_executor
