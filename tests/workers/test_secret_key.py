"""The secret key that encrypts stored credentials is never the published one by accident:
`leadflow up` generates one into the data dir (0600, reused), `leadflow api` and `leadflow
worker` refuse the published default outside development mode, `leadflow secrets rotate`
re-encrypts with the first key, and the data dir is its owner's only."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from models.crm import CrmKind
from models.crypto import CredentialsError
from models.db import Database, migrate
from models.repo import crm as crm_repo
from models.repo import tenants as tenant_repo
from models.settings import PUBLISHED_SECRET_KEY, Settings
from tests.live_stack import free_port
from workers.cli import app
from workers.data_dir import private_dir
from workers.secret_key import key_file_secret, secret_key_problem, with_up_secret_key

LEADFLOW = Path(sys.executable).parent / "leadflow"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_key_file_is_generated_owner_only_once_and_reused(tmp_path: Path) -> None:
    key, created = key_file_secret(tmp_path)
    assert created and len(key) >= 40
    assert _mode(tmp_path / "secret.key") == 0o600
    assert (tmp_path / "secret.key").read_text() == key + "\n"
    assert key_file_secret(tmp_path) == (key, False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.key"]  # no temporary left
    other = tmp_path / "other"
    other.mkdir()
    assert key_file_secret(other)[0] != key  # random, not derived


def test_an_empty_key_file_is_refused_not_replaced(tmp_path: Path) -> None:
    (tmp_path / "secret.key").write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        key_file_secret(tmp_path)


def test_up_uses_the_environment_key_else_the_key_file(tmp_path: Path) -> None:
    given = Settings(data_dir=tmp_path, secret_key="from-the-environment")
    assert with_up_secret_key(given) == (given, False)
    assert not (tmp_path / "secret.key").exists()
    unset = Settings(data_dir=tmp_path).model_copy()
    unset.model_fields_set.discard("secret_key")  # the suite's environment sets one
    chosen, created = with_up_secret_key(unset)
    assert created
    assert chosen.secret_key.get_secret_value() == (tmp_path / "secret.key").read_text().strip()
    assert with_up_secret_key(unset)[0].secret_key == chosen.secret_key


def test_every_command_uses_the_data_dirs_key_unless_one_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LEADFLOW_SECRET_KEY", raising=False)
    assert Settings(data_dir=tmp_path).secret_key.get_secret_value() == PUBLISHED_SECRET_KEY
    key, _ = key_file_secret(tmp_path)
    assert Settings(data_dir=tmp_path).secret_key.get_secret_value() == key
    monkeypatch.setenv("LEADFLOW_SECRET_KEY", "from-the-environment")
    assert Settings(data_dir=tmp_path).secret_key.get_secret_value() == "from-the-environment"


def test_the_published_key_is_a_problem_outside_dev_mode(tmp_path: Path) -> None:
    def problem(key: str, dev_mode: bool = False) -> str | None:
        return secret_key_problem(Settings(secret_key=key, dev_mode=dev_mode))

    assert "published default" in (problem(PUBLISHED_SECRET_KEY) or "")
    assert "published default" in (problem(f"{PUBLISHED_SECRET_KEY},other") or "")
    assert problem(PUBLISHED_SECRET_KEY, dev_mode=True) is None
    # Rotating away from it: the published key may still decrypt, not encrypt.
    assert problem(f"fresh-key,{PUBLISHED_SECRET_KEY}") is None
    assert "empty" in (problem(" , ") or "")


def test_the_data_dir_is_created_and_tightened_to_its_owner(tmp_path: Path) -> None:
    fresh = private_dir(tmp_path / "a" / "data")
    assert _mode(fresh) == 0o700
    old = tmp_path / "old"
    (old / "logs").mkdir(parents=True)
    old.chmod(0o755)
    (old / "leadflow.db").write_text("x")
    (old / "leadflow.db").chmod(0o644)
    (old / "logs" / "worker-1.log").write_text("x")
    (old / "logs" / "worker-1.log").chmod(0o664)
    private_dir(old)
    assert _mode(old) == 0o700
    assert _mode(old / "logs") == 0o700
    assert _mode(old / "leadflow.db") == 0o600
    assert _mode(old / "logs" / "worker-1.log") == 0o600


# ---- the commands ------------------------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment of an operator who set nothing but a database."""
    for name in list(os.environ):
        if name.startswith("LEADFLOW_"):
            monkeypatch.delenv(name)
    values = {
        "LEADFLOW_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}",
        "LEADFLOW_DATA_DIR": str(tmp_path / "data"),
        "LEADFLOW_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",  # nobody there
        "COLUMNS": "240",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.mark.parametrize("command", [["api"], ["worker"]])
def test_api_and_worker_refuse_the_published_key(env: dict[str, str], command: list[str]) -> None:
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    assert "LEADFLOW_SECRET_KEY is the published default" in said
    assert "LEADFLOW_DEV_MODE=1" in said


def test_worker_in_dev_mode_gets_past_the_key(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADFLOW_DEV_MODE", "1")
    result = CliRunner().invoke(app, ["worker", "--queue", "nope"])
    assert result.exit_code == 1, result.output
    assert "published" not in result.output and "nope" in result.output


def test_api_in_dev_mode_starts_and_answers(env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(LEADFLOW), "api", "--port", str(port)],
            env={**os.environ, "LEADFLOW_DEV_MODE": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        assert answer.json() == {"status": "ok"}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert _mode(tmp_path / "cli.db") == 0o600  # created under the API's umask


async def _seed(url: str, key: str) -> None:
    db = Database(url)
    try:
        async with db.session() as s:
            await tenant_repo.create_tenant(s, tenant_id="acme", name="Acme", secret_key=key)
            await crm_repo.create_integration(
                s,
                tenant_id="acme",
                kind=CrmKind.PIPEDRIVE,
                name="pd",
                credentials={"api_token": "pd-secret"},
                secret_key=key,
            )
    finally:
        await db.dispose()


async def _read(url: str, key: str) -> dict[str, object]:
    db = Database(url)
    try:
        async with db.session() as s:
            tenant = await tenant_repo.get_tenant(s, tenant_id="acme")
            assert tenant is not None
            tenant_repo.tenant_settings(tenant, secret_key=key)
            (integration,) = await crm_repo.list_integrations(s, tenant_id="acme")
            return crm_repo.integration_credentials(integration, secret_key=key)
    finally:
        await db.dispose()


def test_secrets_rotate_moves_everything_to_the_new_key(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = env["LEADFLOW_DATABASE_URL"]
    migrate(url)
    asyncio.run(_seed(url, "the-old-key"))

    monkeypatch.setenv("LEADFLOW_SECRET_KEY", "the-new-key")
    refused = CliRunner().invoke(app, ["secrets", "rotate"])
    assert refused.exit_code == 1
    assert "nothing changed" in refused.output and "'acme'" in refused.output

    monkeypatch.setenv("LEADFLOW_SECRET_KEY", "the-new-key,the-old-key")
    result = CliRunner().invoke(app, ["secrets", "rotate"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "settings of 1 tenant(s) and the credentials of 1 CRM connection(s)" in said
    assert asyncio.run(_read(url, "the-new-key")) == {"api_token": "pd-secret"}
    with pytest.raises(CredentialsError):
        asyncio.run(_read(url, "the-old-key"))


def test_secrets_rotate_refuses_to_encrypt_with_the_published_key(env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["secrets", "rotate"])
    assert result.exit_code == 2
    assert "published default" in result.output
