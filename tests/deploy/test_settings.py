"""Deploy cannot drift from the code: every LEADFLOW_* name in deploy/ is a setting of
models/settings.py, the values given are ones Settings accepts, and the routes that probes and
Prometheus use are routes of the API app."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from models.db import migrate
from models.settings import Settings
from tests.deploy.files import (
    DEPLOY,
    compose_environment,
    compose_services,
    config_map,
    interpolate,
    of_kind,
)

ENV_NAME = re.compile(r"\bLEADFLOW_[A-Z0-9_]+\b")
SETTINGS = {f"LEADFLOW_{name.upper()}" for name in Settings.model_fields}


def deploy_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file())


@pytest.mark.parametrize("path", deploy_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_leadflow_variable_named_in_deploy_is_a_setting(path: Path) -> None:
    names = set(ENV_NAME.findall(path.read_text(errors="replace")))
    assert names - SETTINGS == set(), f"not settings of models/settings.py: {names - SETTINGS}"


def _secret_settings() -> set[str]:
    """The settings that hold secrets: every SecretStr field, and the database URL (it carries
    the password)."""
    secret = {
        f"LEADFLOW_{name.upper()}"
        for name, info in Settings.model_fields.items()
        if "SecretStr" in str(info.annotation)
    }
    return secret | {"LEADFLOW_DATABASE_URL"}


def test_secrets_come_from_the_secret_and_the_shell_never_from_a_literal() -> None:
    secret = _secret_settings()
    assert {"LEADFLOW_SECRET_KEY", "LEADFLOW_PAYLOAD_KEYS", "LEADFLOW_CODEC_TOKEN"} <= secret
    (example,) = of_kind("Secret")
    assert set(example.body["stringData"]) == secret & {
        "LEADFLOW_DATABASE_URL",
        "LEADFLOW_SECRET_KEY",
        "LEADFLOW_PAYLOAD_KEYS",
        "LEADFLOW_CODEC_TOKEN",
    }
    assert not secret & set(config_map()), "a secret in the ConfigMap"
    for name, service in compose_services().items():
        for key, value in compose_environment(service).items():
            if key in secret - {"LEADFLOW_DATABASE_URL"}:
                assert value.startswith("${") and ":?" in value, f"{name}: {key} is a literal"
    # Every pod that reads settings reads the Secret.
    for doc in of_kind("Deployment") + of_kind("Job"):
        for container in doc.body["spec"]["template"]["spec"]["containers"]:
            refs = [e.get("secretRef", {}).get("name") for e in container["envFrom"]]
            assert example.name in refs, doc.name


def test_the_name_check_catches_a_misspelt_setting() -> None:
    assert set(ENV_NAME.findall("LEADFLOW_TEMPORAL_ADDRES: x")) - SETTINGS


def _settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp: Path) -> Settings:
    """Settings as a container with `env` (and nothing else of ours) reads it."""
    for name in [n for n in os.environ if n.startswith("LEADFLOW_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp)  # no .env of the checkout
    return Settings()


def test_kubernetes_config_and_secret_are_accepted_by_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (secret,) = of_kind("Secret")
    env = {**config_map(), **secret.body["stringData"]}
    settings = _settings_from(env, monkeypatch, tmp_path)
    assert settings.api_port == int(env["LEADFLOW_API_PORT"])
    assert settings.codec_cors_origins == ["https://temporal.example.com"]
    assert settings.resolved_database_url.startswith("postgresql+psycopg://")


@pytest.mark.parametrize(
    "service",
    sorted(n for n, s in compose_services().items() if s.get("image", "").startswith("leadflow:")),
)
def test_compose_environment_is_accepted_by_settings(
    service: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    given = {"LEADFLOW_SECRET_KEY": "k", "LEADFLOW_PAYLOAD_KEYS": "p", "LEADFLOW_CODEC_TOKEN": "t"}
    env = {
        k: interpolate(v, given)
        for k, v in compose_environment(compose_services()[service]).items()
    }
    settings = _settings_from(env, monkeypatch, tmp_path)
    assert settings.temporal_address == env["LEADFLOW_TEMPORAL_ADDRESS"]
    assert settings.otel_enabled is True


def test_a_value_settings_refuses_is_caught(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="api_port"):
        _settings_from(
            {**config_map(), "LEADFLOW_API_PORT": "eight thousand"}, monkeypatch, tmp_path
        )


def _closed_port() -> int:
    """A local port nothing listens on: /ready's Temporal check is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_probe_and_scrape_paths_are_routes_of_the_api(tmp_path: Path) -> None:
    """The paths the Kubernetes probes and Prometheus use, on the real app with its lifespan:
    /health is live, /ready answers its report (503 here: no Temporal), /metrics is Prometheus
    text with leadflow's series."""
    settings = Settings(
        dev_mode=True, data_dir=tmp_path, temporal_address=f"127.0.0.1:{_closed_port()}"
    )
    migrate(settings.resolved_database_url)  # as `leadflow api` does before serving
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://api") as client,
    ):
        health = await client.get("/health")
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        ready = await client.get("/ready")
        assert ready.status_code == 503
        assert "temporal" in ready.json()["problems"]
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain")
        assert "leadflow_inbox_backlog" in metrics.text
        assert (await client.get("/no-such-route")).status_code == 404
