"""The deploy files under test and what they say, read once: manifests, compose, Prometheus,
the dashboard. Shared by the tests of tests/deploy; no file is edited here."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
OTEL = DEPLOY / "otel" / "collector.yaml"
GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "leadflow.json"
DOCKERFILE = DEPLOY / "Dockerfile"

# The Kubernetes version the manifests are validated against (kubernetes-validate ships its
# schemas). Raise it deliberately, with the cluster.
KUBERNETES_VERSION = "1.33"


@dataclass(frozen=True)
class Doc:
    path: Path
    index: int
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(K8S)}#{self.index}:{self.kind}/{self.name}"


def k8s_files() -> list[Path]:
    """Every manifest file (kustomization.yaml is kustomize's, not the cluster's)."""
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def load_documents(text: str) -> list[dict[str, Any]]:
    """The documents of a multi-document YAML text, as `kubectl apply` reads them: each
    document on its own, so an anchor defined in one and used in another is an error
    (yaml.ComposerError: found undefined alias)."""
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


@cache
def k8s_documents() -> tuple[Doc, ...]:
    """Every document of every manifest; a file that does not parse is left out here (test
    parametrisation must not crash collection) and fails test_manifests_exist_and_parse."""
    docs: list[Doc] = []
    for path in k8s_files():
        try:
            bodies = load_documents(path.read_text())
        except yaml.YAMLError:
            continue
        docs += [Doc(path, index, body) for index, body in enumerate(bodies)]
    return tuple(docs)


def of_kind(kind: str) -> list[Doc]:
    return [d for d in k8s_documents() if d.kind == kind]


def pod_spec(doc: Doc) -> dict[str, Any]:
    spec: dict[str, Any] = doc.body["spec"]["template"]["spec"]
    return spec


def config_map() -> dict[str, str]:
    (doc,) = [d for d in of_kind("ConfigMap") if d.name == "leadflow-config"]
    data: dict[str, str] = doc.body["data"]
    return data


def worker_queue(args: list[str]) -> str | None:
    """The task queue of a `leadflow worker --queue Q` command line, None for another command."""
    if not args or args[0] != "worker":
        return None
    queues = [args[i + 1] for i, arg in enumerate(args) if arg == "--queue"]
    assert len(queues) == 1, f"one task queue per worker deployment/service, got {args}"
    return queues[0]


@cache
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def compose_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose()["services"]
    return services


def compose_command(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else list(command)


_INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?message}` with `env`: a required
    variable missing from `env` is a KeyError, a defaulted one takes its default."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        given = env.get(name)
        if given is not None and (given or op not in (":-", ":?")):
            return given
        if op in (":-", "-"):
            return arg
        if op in (":?", "?"):
            raise KeyError(f"{name} is required: {arg}")
        return ""

    return _INTERPOLATION.sub(one, value)


def compose_environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def exposed_ports(service: dict[str, Any]) -> set[int]:
    """The container ports a compose service declares (`expose`, and the target of `ports`)."""
    ports = {int(str(p).split("/")[0]) for p in service.get("expose", [])}
    for mapping in service.get("ports", []):
        ports.add(int(str(mapping).split(":")[-1].split("/")[0]))
    return ports


@cache
def prometheus_config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(PROMETHEUS.read_text())
    return loaded


def scrape_targets() -> Iterator[tuple[str, str, int]]:
    """(job, host, port) of every static scrape target."""
    for job in prometheus_config()["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                yield job["job_name"], host, int(port)
