"""`leadflow up` on a data dir an older version filled under the published secret key: it
generates a key into <data dir>/secret.key (0600), re-encrypts the stored settings with it, its
API and worker processes use it (a WhatsApp message is answered with the tenant's playbook), the
files of the data dir are its owner's only, and the next start reuses the key."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import httpx
import pytest

from models.crypto import CredentialsError
from models.db import Database, migrate
from models.repo import tenants as tenant_repo
from models.settings import PUBLISHED_SECRET_KEY
from models.tenant import TenantSettings
from tests.workers.test_up import _send, _stop, _wait, leadflow_up

pytestmark = [pytest.mark.slow, pytest.mark.timeout(280)]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def _old_data_dir(url: str) -> str:
    """A demo tenant as `up` created it before keys were generated: under the published key."""
    db = Database(url)
    try:
        async with db.session() as s:
            await tenant_repo.create_tenant(
                s,
                tenant_id="demo",
                name="Demo car dealership",
                secret_key=PUBLISHED_SECRET_KEY,
                settings=TenantSettings(playbook="car_dealership", allow_unsigned_webhooks=True),
            )
            return await tenant_repo.create_api_key(s, tenant_id="demo")
    finally:
        await db.dispose()


async def _settings_under(url: str, key: str) -> str | None:
    db = Database(url)
    try:
        async with db.session() as s:
            tenant = await tenant_repo.get_tenant(s, tenant_id="demo")
            assert tenant is not None
            return tenant_repo.tenant_settings(tenant, secret_key=key).playbook
    finally:
        await db.dispose()


def test_up_generates_adopts_and_reuses_its_key_and_keeps_files_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "state"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    url = f"sqlite+aiosqlite:///{data_dir / 'leadflow.db'}"
    migrate(url)
    (data_dir / "leadflow.db").chmod(0o644)
    api_key = asyncio.run(_old_data_dir(url))
    (data_dir / "demo-api-key").write_text(api_key + "\n")
    auth = {"Authorization": f"Bearer {api_key}"}

    with leadflow_up(data_dir, tmp_path / "up-1.log", args=["--workers", "1"]) as up:
        key_file = data_dir / "secret.key"
        assert _mode(key_file) == 0o600
        key = key_file.read_text().strip()
        assert len(key) >= 40 and key not in up.output()
        settings = httpx.get(f"{up.api}/api/v1/settings", headers=auth)
        assert settings.status_code == 200, settings.text
        assert settings.json()["playbook"] == "car_dealership"
        _send(up, "false_31612345678@c.us_KEY0001", "Hallo, is de auto nog beschikbaar?")
        _wait(
            lambda: httpx.get(f"{up.api}/api/v1/outbox", headers=auth).json(),
            timeout=60,
            what="the reply in the outbox (the worker decrypted the settings)",
            up=up,
        )
        for path in (
            data_dir / "leadflow.db",
            data_dir / "demo-api-key",
            data_dir / "temporal.sqlite",
            data_dir / "temporal.log",
            data_dir / "logs" / "worker-1.log",
        ):
            assert _mode(path) & 0o077 == 0, (path, oct(_mode(path)))
        assert _mode(data_dir) == 0o700
        assert _mode(data_dir / "logs") == 0o700
        _stop(up)

    # Stored under the generated key only: a copy of the database no longer opens with the
    # published one.
    assert asyncio.run(_settings_under(url, key)) == "car_dealership"
    with pytest.raises(CredentialsError):
        asyncio.run(_settings_under(url, PUBLISHED_SECRET_KEY))

    with leadflow_up(data_dir, tmp_path / "up-2.log", args=["--workers", "1"]) as up:
        assert key_file.read_text().strip() == key
        assert httpx.get(f"{up.api}/api/v1/settings", headers=auth).status_code == 200
        _stop(up)
