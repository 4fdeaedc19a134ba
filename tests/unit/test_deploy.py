"""deploy/ checked offline: the Kubernetes instance config against Dagster's instance schema and the
dagster-k8s / dagster-postgres class schemas, the training step's k8s tag turned into a real Kubernetes
Job by dagster-k8s, the k8s executor's run config against the job's run-config schema, and a dry check
that the Dockerfile installs what pyproject.toml declares. Nothing is applied to a cluster or built.

dagster-k8s/dagster-postgres are the `k8s` extra (0.29.27, the family of dagster 1.13.27, with their own
pins); these tests skip where they are missing.
"""

from __future__ import annotations

import json
import re
import tomllib

import pytest
import yaml

from support.paths import REPO

DEPLOY = REPO / "deploy"
k8s = pytest.importorskip("dagster_k8s", reason="dagster-k8s not installed (make install adds it)")
pg = pytest.importorskip("dagster_postgres", reason="dagster-postgres not installed (make install adds it)")


def _validate(schema, value):
    from dagster._config import validate_config

    result = validate_config(schema, value)
    assert result.success, [e.message for e in result.errors]


def test_instance_config_passes_dagsters_schema(tmp_path):
    from dagster._core.instance.config import dagster_instance_config

    (tmp_path / "dagster.yaml").write_text((DEPLOY / "dagster.yaml").read_text())
    config, _ = dagster_instance_config(str(tmp_path))  # raises DagsterInvalidConfigError on a bad key
    assert (config["run_launcher"]["module"], config["run_launcher"]["class"]) == ("dagster_k8s", "K8sRunLauncher")
    assert list(config["storage"]) == ["postgres"]  # not SQLite: several pods write the instance at once


def test_run_launcher_and_storage_pass_their_class_schemas():
    from dagster._serdes.config_class import class_from_code_pointer

    config = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    launcher = config["run_launcher"]
    assert class_from_code_pointer(launcher["module"], launcher["class"]) is k8s.K8sRunLauncher
    _validate(k8s.K8sRunLauncher.config_type(), launcher["config"])
    _validate(pg.DagsterPostgresStorage.config_type(), config["storage"]["postgres"])
    # a missing field is caught (the check can fail)
    with pytest.raises(AssertionError):
        _validate(pg.DagsterPostgresStorage.config_type(), {"postgres_db": {"hostname": "h"}})


def test_training_step_becomes_a_gpu_kubernetes_job():
    """The op tag of train_adapter, as dagster-k8s's executor reads it, builds a Job asking for GPUs on
    the GPU node pool (k8s_model_from_dict rejects unknown Kubernetes fields)."""
    import dagster as dg
    from dagster_k8s.job import DagsterK8sJobConfig, construct_dagster_k8s_job, get_user_defined_k8s_config

    from llama_sft_dagster.definitions import all_assets

    train = next(a for a in all_assets if dg.AssetKey("train_adapter") in a.keys)
    user_config = get_user_defined_k8s_config(train.op.tags)
    job = construct_dagster_k8s_job(
        DagsterK8sJobConfig(job_image="llama-sft-dagster:test", dagster_home="/opt/dh"),
        ["dagster", "api", "execute_step"],
        "train-adapter-step",
        user_config,
    )
    pod = job.spec.template.spec
    assert pod.containers[0].resources.limits == {"nvidia.com/gpu": "1"}
    assert pod.node_selector == {"nvidia.com/gpu.present": "true"}
    assert pod.tolerations[0].key == "nvidia.com/gpu"


def test_gpu_count_and_pool_label_come_from_the_environment():
    from llama_sft_dagster.config.k8s import step_executor, training_step_k8s_config

    config = training_step_k8s_config({"SFT_K8S_TRAIN_GPUS": "8", "SFT_K8S_GPU_NODE_LABEL": "pool=a100"})
    assert config["container_config"]["resources"]["limits"] == {"nvidia.com/gpu": "8"}
    assert config["pod_spec_config"]["node_selector"] == {"pool": "a100"}
    with pytest.raises(ValueError, match="SFT_K8S_TRAIN_GPUS='0'"):
        training_step_k8s_config({"SFT_K8S_TRAIN_GPUS": "0"})
    assert step_executor({}) is None and step_executor({"SFT_EXECUTOR": "k8s"}) is k8s.k8s_job_executor
    with pytest.raises(ValueError, match="SFT_EXECUTOR='ray'"):
        step_executor({"SFT_EXECUTOR": "ray"})


def test_k8s_executor_run_config_passes_the_jobs_schema():
    import dagster as dg

    from llama_sft_dagster.definitions import all_assets, all_checks, build_resources

    defs = dg.Definitions(
        assets=all_assets, asset_checks=all_checks, resources=build_resources(), executor=k8s.k8s_job_executor
    )
    job = defs.resolve_implicit_global_asset_job_def()
    run_config = yaml.safe_load((DEPLOY / "run_config.k8s.yaml").read_text())
    dg.validate_run_config(job, run_config)
    with pytest.raises(dg.DagsterInvalidConfigError):
        dg.validate_run_config(job, {"execution": {"config": {"no_such_field": 1}}})


def test_dockerfile_installs_the_locked_set_make_install_is_constrained_by():
    """A dry check (no docker here): the image installs deploy/requirements.lock, then the project without
    resolving again; `make install` is constrained by the same file; the lock holds one Dagster family with
    dagster-k8s/postgres (no `--no-deps` install of a library from another release) and pyproject's pins;
    the image serves the module pyproject names as the code location."""
    docker = (DEPLOY / "Dockerfile").read_text()
    make = (REPO / "Makefile").read_text()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    lock = dict(line.split("==", 1) for line in (DEPLOY / "requirements.lock").read_text().splitlines() if "==" in line)
    assert "pip install -r deploy/requirements.lock" in docker
    assert "-c deploy/requirements.lock" in make and "--no-deps dagster" not in make + docker
    extras = re.findall(r"pip install --no-deps '\.\[([a-z0-9,]+)\]'", docker)
    assert extras and set(extras[0].split(",")) <= set(project["project"]["optional-dependencies"])
    pinned = project["project"]["dependencies"] + project["project"]["optional-dependencies"]["k8s"]
    for dep in (d for d in pinned if "==" in d):
        name, version = dep.split("==")
        assert lock[name] == version, dep
    # Dagster's numbering: core 1.M.P, its libraries 0.(M+16).P
    (core,) = {lock[n] for n in ("dagster", "dagster-webserver", "dagster-pipes", "dagster-graphql")}
    _, minor, patch = core.split(".")
    assert {lock[n] for n in ("dagster-k8s", "dagster-postgres")} == {f"0.{int(minor) + 16}.{patch}"}
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", docker, re.M).group(1))
    assert cmd[cmd.index("--module-name") + 1] == project["tool"]["dagster"]["module_name"]
    for copied in re.findall(r"^COPY (\S+) ", docker, re.M):
        assert (REPO / copied).exists(), copied


def chart_instance(values: dict) -> dict:
    """The dagster.yaml Dagster's chart (1.13) renders from `values` for the keys deploy/helm/values.yaml sets,
    written as its templates/configmap-instance.yaml and _helpers.tpl map them (camelCase -> Dagster's keys)."""
    daemon, launcher = values["dagsterDaemon"], values["runLauncher"]["config"]["k8sRunLauncher"]
    monitoring, concurrency = daemon["runMonitoring"], values["concurrency"]
    instance = {
        "storage": {"postgres": {"postgres_db": {"hostname": "h", "username": "u", "password": "p", "db_name": "d"}}},
        "run_launcher": {
            "module": "dagster_k8s",
            "class": "K8sRunLauncher",
            "config": {
                "image_pull_policy": launcher["imagePullPolicy"],
                "load_incluster_config": launcher["loadInclusterConfig"],
                "env_secrets": [s["name"] for s in launcher["envSecrets"]],
                "volume_mounts": launcher["volumeMounts"],
                "volumes": launcher["volumes"],
                "run_k8s_config": {"container_config": launcher["runK8sConfig"]["containerConfig"]},
                "instance_config_map": "llama-sft-dagster-instance",
                "dagster_home": "/opt/dagster/dagster_home",
            },
        },
        # with concurrency enabled and no maxConcurrentRuns here, the chart renders no max_concurrent_runs
        "run_coordinator": {"module": "dagster.core.run_coordinator", "class": daemon["runCoordinator"]["type"]},
        "run_monitoring": {
            "enabled": monitoring["enabled"],
            "start_timeout_seconds": monitoring["startTimeoutSeconds"],
            "max_resume_run_attempts": monitoring["maxResumeRunAttempts"],
            "free_slots_after_run_end_seconds": monitoring["freeSlotsAfterRunEndSeconds"],
        },
        "concurrency": {
            "runs": {"max_concurrent_runs": concurrency["runs"]["maxConcurrentRuns"]},
            "pools": {
                "default_limit": concurrency["pools"]["defaultLimit"],
                "granularity": concurrency["pools"]["granularity"],
            },
        },
        "telemetry": {"enabled": values["telemetry"]["enabled"]},
    }
    assert "maxConcurrentRuns" not in (daemon["runCoordinator"].get("config") or {}).get("queuedRunCoordinator", {})
    return instance


def test_helm_values_render_an_instance_dagster_accepts(tmp_path):
    from dagster._core.instance.config import dagster_instance_config

    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    instance = chart_instance(values)
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(instance))
    config, _ = dagster_instance_config(str(tmp_path))  # raises on a bad key or a conflicting queue limit
    _validate(k8s.K8sRunLauncher.config_type(), instance["run_launcher"]["config"])
    assert config["concurrency"]["pools"] == {"default_limit": 1, "granularity": "op"}
    # the queue limit in both places is what Dagster refuses (the check can fail)
    instance["run_coordinator"]["config"] = {"max_concurrent_runs": 10}
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(instance))
    with pytest.raises(Exception, match="incompatible"):
        dagster_instance_config(str(tmp_path))


def test_helm_user_deployment_serves_the_project_with_the_gpu_settings():
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    args = deployment["dagsterApiGrpcArgs"]
    assert args[args.index("--module-name") + 1] == project["tool"]["dagster"]["module_name"]
    assert deployment["includeConfigInLaunchedRuns"]["enabled"], "run and step pods get the image and env"
    env = {e["name"]: e["value"] for e in deployment["env"]}
    assert env["SFT_EXECUTOR"] == "k8s" and "SFT_K8S_GPU_NODE_LABEL" in env  # the training step's own GPU pod
    from llama_sft_dagster.config.k8s import step_executor, training_step_k8s_config

    assert step_executor(env) is k8s.k8s_job_executor
    assert training_step_k8s_config(env)["pod_spec_config"]["node_selector"] == {"nvidia.com/gpu.present": "true"}
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"


def test_mlflow_manifest_is_valid_kubernetes():
    from dagster_k8s.models import k8s_model_from_dict, k8s_snake_case_dict
    from kubernetes.client import V1Deployment, V1Service

    docs = list(yaml.safe_load_all((DEPLOY / "mlflow.yaml").read_text()))
    kinds = {d["kind"]: d for d in docs}
    # the manifests' camelCase keys mapped to the API models' fields; an unknown key raises
    deployment = k8s_model_from_dict(V1Deployment, k8s_snake_case_dict(V1Deployment, kinds["Deployment"]))
    service = k8s_model_from_dict(V1Service, k8s_snake_case_dict(V1Service, kinds["Service"]))
    assert service.spec.selector == deployment.spec.template.metadata.labels
    assert "mlflow server" in deployment.spec.template.spec.containers[0].args[0]
