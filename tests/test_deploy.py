"""The Kubernetes deployment, offline: step pod specs built with dagster-k8s, and the instance and executor config."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dagster._config import process_config
from dagster_k8s import K8sRunLauncher, k8s_job_executor
from dagster_k8s.job import DagsterK8sJobConfig, construct_dagster_k8s_job, get_user_defined_k8s_config

from orchestration.definitions import build_definitions, default_resources

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
GPU_STEPS = {"item_embeddings", "ranker", "ranker_tensorrt"}


def step_pod_specs() -> dict[str, dict]:
    """What k8s_job_executor would launch for each step of `main`: its Job, built from the step's tags."""
    job = build_definitions(default_resources()).resolve_job_def("main")
    assert job.executor_def is k8s_job_executor
    config = DagsterK8sJobConfig(
        job_image="registry.example.com/rec-pipeline:0.1.0", dagster_home="/opt/dagster/dagster_home",
        image_pull_policy="IfNotPresent", instance_config_map="dagster-instance", postgres_password_secret="dagster-postgresql-secret",
    )
    specs = {}
    for node in job.graph.node_defs:
        k8s_job = construct_dagster_k8s_job(
            config, args=["dagster", "api", "execute_step"], job_name=f"dagster-step-{node.name.replace('_', '-')}",
            user_defined_k8s_config=get_user_defined_k8s_config(node.tags),
        )
        specs[node.name] = k8s_job.to_dict()["spec"]["template"]["spec"]
    return specs


def test_exactly_the_gpu_tagged_steps_get_a_gpu_limit_node_selector_and_tolerations():
    # A fresh process, as a code location starts: the GPU tags read the deployment's environment at import.
    env = {**os.environ, "REC_PIPELINE_EXECUTOR": "k8s", "REC_PIPELINE_GPU_NODE_SELECTOR": '{"cloud.google.com/gke-accelerator": "nvidia-l4"}'}
    built = subprocess.run([sys.executable, "-m", "tests.test_deploy"], env=env, cwd=DEPLOY.parent, capture_output=True, text=True, check=True)
    specs = json.loads(built.stdout)
    assert GPU_STEPS < set(specs) and len(specs) > len(GPU_STEPS)
    for step, spec in specs.items():
        [container] = spec["containers"]
        limits = (container["resources"] or {}).get("limits") or {}
        if step in GPU_STEPS:
            assert limits == {"nvidia.com/gpu": "1"}, step
            assert spec["node_selector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
            assert [t["key"] for t in spec["tolerations"]] == ["nvidia.com/gpu"]
        else:
            assert "nvidia.com/gpu" not in limits, step
            assert not spec.get("node_selector") and not spec.get("tolerations"), step
        assert container["image"] == "registry.example.com/rec-pipeline:0.1.0"


def test_the_executor_is_chosen_by_the_environment(monkeypatch):
    monkeypatch.setenv("REC_PIPELINE_EXECUTOR", "multiprocess")
    assert build_definitions(default_resources()).resolve_job_def("main").executor_def.name == "multiprocess"
    monkeypatch.setenv("REC_PIPELINE_EXECUTOR", "in_process")
    definitions = build_definitions(default_resources())
    assert definitions.resolve_job_def("main").executor_def.name == "in_process"
    # What the UI launches ("Materialize all", one asset) runs the same way.
    assert definitions.resolve_implicit_global_asset_job_def().executor_def.name == "in_process"
    monkeypatch.setenv("REC_PIPELINE_EXECUTOR", "k8ss")
    with pytest.raises(ValueError, match="REC_PIPELINE_EXECUTOR='k8ss': expected multiprocess, in_process or k8s"):
        build_definitions(default_resources())


def test_the_deployment_instance_config_is_valid_for_dagster_k8s():
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    launcher = instance["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    checked = process_config(K8sRunLauncher.config_type(), launcher["config"])
    assert checked.success, checked.errors
    assert "postgres" in instance["storage"] and instance["concurrency"]["pools"]["default_limit"] >= 1
    values = yaml.safe_load((DEPLOY / "values.yaml").read_text())
    [deployment] = values["dagster-user-deployments"]["deployments"]
    env = {e["name"]: e["value"] for e in deployment["env"]}
    assert env["REC_PIPELINE_EXECUTOR"] == "k8s" and json.loads(env["REC_PIPELINE_GPU_NODE_SELECTOR"])
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    # Run monitoring: the daemon marks a run whose pod died failed and frees its concurrency slots.
    monitoring = instance["run_monitoring"]
    assert monitoring["enabled"] and monitoring["free_slots_after_run_end_seconds"] > 0
    assert K8sRunLauncher.supports_check_run_worker_health.fget(None)  # what run monitoring asks of the launcher
    assert values["dagsterDaemon"]["runMonitoring"]["enabled"] and values["dagsterDaemon"]["runMonitoring"]["freeSlotsAfterRunEndSeconds"] > 0


if __name__ == "__main__":
    print(json.dumps(step_pod_specs(), default=str))


SERVICE_MANIFESTS = DEPLOY / "service" / "service.yaml"
KUBERNETES_VERSION = "1.32.0"


def test_the_service_manifests_validate_against_the_kubernetes_schemas_offline():
    import kubernetes_validate

    documents = list(yaml.safe_load_all(SERVICE_MANIFESTS.read_text()))
    kinds = sorted(d["kind"] for d in documents)
    assert kinds == ["Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service", "Service", "StatefulSet"]
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    [deployment] = [d for d in documents if d["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz" and container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["command"][:2] == ["rec-pipeline", "serve"] and "redis://rec-pipeline-redis:6379/0" in container["command"]
    assert container["env"][0]["valueFrom"]["secretKeyRef"]["key"] == "token"  # the write token from a Secret, not the manifest
    [hpa] = [d for d in documents if d["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"] and hpa["spec"]["minReplicas"] >= 2


def test_the_validation_catches_a_misspelt_field():
    import kubernetes_validate

    [deployment, *_] = yaml.safe_load_all(SERVICE_MANIFESTS.read_text())
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = deployment["spec"]["template"]["spec"]["containers"][0].pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


SPARK_MANIFESTS = DEPLOY / "spark" / "spark-connect.yaml"


def test_the_spark_connect_manifests_validate_and_the_engine_config_points_at_them():
    import kubernetes_validate

    from orchestration.config import read_config

    documents = list(yaml.safe_load_all(SPARK_MANIFESTS.read_text()))
    assert sorted(d["kind"] for d in documents) == ["Deployment", "Role", "RoleBinding", "Service", "Service", "ServiceAccount"]
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    [deployment] = [d for d in documents if d["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    args = container["command"]
    conf = dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "--conf")
    assert args[:3] == ["spark-submit", "--class", "org.apache.spark.sql.connect.service.SparkConnectServer"]
    # The executors run the project's image with the project volume where the Dagster pods have it (deploy/values.yaml).
    values = yaml.safe_load((DEPLOY / "values.yaml").read_text())
    [user_deployment] = values["dagster-user-deployments"]["deployments"]
    [mount] = user_deployment["volumeMounts"]
    [volume] = user_deployment["volumes"]
    assert conf["spark.kubernetes.executor.volumes.persistentVolumeClaim.project-data.options.claimName"] == volume["persistentVolumeClaim"]["claimName"]
    assert conf["spark.kubernetes.executor.volumes.persistentVolumeClaim.project-data.mount.path"] == mount["mountPath"]
    assert conf["spark.kubernetes.container.image"] == container["image"] == f"{user_deployment['image']['repository']}:{user_deployment['image']['tag']}"
    # The code location's config file selects the spark engine at the Connect server's Service.
    env = {e["name"]: e["value"] for e in user_deployment["env"]}
    config = read_config(DEPLOY.parent / env["REC_PIPELINE_CONFIG"].removeprefix("/opt/rec_pipeline/"))
    engine = default_resources(config=config)["engine"]
    [service] = [d for d in documents if d["kind"] == "Service" and d["metadata"]["name"] == "rec-pipeline-spark-connect"]
    assert engine.name == "spark"
    assert engine.spark_conf["spark.remote"] == f"sc://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    assert conf["spark.connect.grpc.binding.port"] == str(service["spec"]["ports"][0]["port"])
