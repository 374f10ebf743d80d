"""deploy/compose.yaml: valid against the compose specification, one worker service per task
queue, pinned images, files it mounts that exist, the Temporal UI wired to the API's codec."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from models.task_queues import ALL as ALL_QUEUES
from tests.deploy.files import (
    COMPOSE,
    DEPLOY,
    OTEL,
    compose,
    compose_command,
    compose_environment,
    compose_services,
    exposed_ports,
    interpolate,
    worker_queue,
)

LEADFLOW_SERVICES = {
    name for name, svc in compose_services().items() if svc.get("image", "").startswith("leadflow:")
}


def check_compose_spec(path: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema with the compose specification it ships (no network)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_compose_file_validates_against_the_compose_specification() -> None:
    result = check_compose_spec(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_check_refuses_an_invalid_file(tmp_path: Path) -> None:
    broken = yaml.safe_load(COMPOSE.read_text())
    broken["services"]["api"]["depends_on"]["migrate"]["condition"] = "service_done"
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(broken))
    result = check_compose_spec(path)
    assert result.returncode != 0
    assert "service_done" in result.stdout + result.stderr


def test_one_worker_service_per_task_queue_and_the_other_roles() -> None:
    commands = {name: compose_command(compose_services()[name]) for name in LEADFLOW_SERVICES}
    queues = sorted(q for c in commands.values() if (q := worker_queue(c)) is not None)
    assert queues == sorted(ALL_QUEUES)
    assert commands["api"] == ["api"]
    assert commands["migrate"] == ["migrate"]
    for name in LEADFLOW_SERVICES - {"migrate"}:
        depends = compose_services()[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, name


def test_leadflow_services_build_the_image_and_run_read_only() -> None:
    for name in LEADFLOW_SERVICES:
        svc = compose_services()[name]
        assert svc["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}, name
        assert (DEPLOY / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file()
        assert svc["read_only"] is True, name
        assert "/tmp" in svc["tmpfs"], name
        data_dir = compose_environment(svc)["LEADFLOW_DATA_DIR"]
        assert data_dir in svc["tmpfs"], name


def test_images_are_pinned() -> None:
    for name, svc in compose_services().items():
        image = svc["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and any(ch.isdigit() for ch in tag), f"{name}: {image}"


def test_mounted_files_exist() -> None:
    for name, svc in compose_services().items():
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in compose()["volumes"], f"{name}: undeclared volume {source}"


def test_required_secrets_are_demanded_not_defaulted() -> None:
    env = compose_environment(compose_services()["api"])
    for name in ("LEADFLOW_SECRET_KEY", "LEADFLOW_PAYLOAD_KEYS", "LEADFLOW_CODEC_TOKEN"):
        with pytest.raises(KeyError, match=name):
            interpolate(env[name], {})


def test_temporal_ui_decodes_through_the_api_codec_endpoint() -> None:
    services = compose_services()
    ui = compose_environment(services["temporal-ui"])
    api = services["api"]
    api_env = compose_environment(api)
    values = {
        "LEADFLOW_CODEC_TOKEN": "tok",
        "LEADFLOW_SECRET_KEY": "s",
        "LEADFLOW_PAYLOAD_KEYS": "p",
    }
    # The browser calls the endpoint: it is the API's published port on the host.
    (published,) = [p for p in api["ports"] if p.endswith(f":{api_env['LEADFLOW_API_PORT']}")]
    host_port = published.split(":")[0]
    endpoint = interpolate(ui["TEMPORAL_CODEC_ENDPOINT"], values)
    assert endpoint == f"http://localhost:{host_port}/codec/tok"
    # ... from the UI's origin, which the API's codec CORS list must allow.
    (ui_published,) = services["temporal-ui"]["ports"]
    ui_origin = f"http://localhost:{ui_published.split(':')[0]}"
    assert ui_origin in yaml.safe_load(api_env["LEADFLOW_CODEC_CORS_ORIGINS"])
    assert ui["TEMPORAL_ADDRESS"] == api_env["LEADFLOW_TEMPORAL_ADDRESS"]
    host, port = api_env["LEADFLOW_TEMPORAL_ADDRESS"].split(":")
    assert int(port) in exposed_ports(services[host])


def test_spans_go_to_the_collector_on_a_port_it_receives_on() -> None:
    collector = yaml.safe_load(OTEL.read_text())
    http = collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    receiver_port = int(http.rsplit(":", 1)[1])
    assert "otlp" in collector["service"]["pipelines"]["traces"]["receivers"]
    for name in LEADFLOW_SERVICES:
        env = compose_environment(compose_services()[name])
        assert env["LEADFLOW_OTEL_ENABLED"] == "true"
        endpoint = env["LEADFLOW_OTEL_EXPORTER_OTLP_ENDPOINT"]
        host, port = endpoint.removeprefix("http://").split(":")
        assert int(port) == receiver_port
        assert receiver_port in exposed_ports(compose_services()[host])


def test_weaviate_is_defined_but_opt_in() -> None:
    assert compose_services()["weaviate"]["profiles"] == ["knowledge"]
