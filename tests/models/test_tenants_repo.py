from __future__ import annotations

import pytest

from models.db import Database
from models.repo import tenants as repo
from models.tenant import TenantSettings, WahaSettings
from tests.conftest import TEST_SECRET, make_tenant


async def test_api_key_is_stored_hashed_and_resolves_its_tenant(db: Database) -> None:
    tid, key = await make_tenant(db)
    async with db.session() as session:
        assert (await repo.tenant_for_key(session, key=key)).id == tid  # type: ignore[union-attr]
        assert await repo.tenant_for_key(session, key=key + "x") is None
        from sqlmodel import select

        from models.tables import ApiKey

        stored = (await session.exec(select(ApiKey))).all()
        assert all(key not in (row.key_hash, row.prefix) for row in stored)


async def test_settings_are_encrypted_at_rest(db: Database) -> None:
    settings = TenantSettings(waha=WahaSettings(api_key="super-secret-waha-key"))  # type: ignore[arg-type]
    tid, _ = await make_tenant(db, settings=settings)
    async with db.session() as session:
        tenant = await repo.get_tenant(session, tenant_id=tid)
        assert tenant is not None
        assert "super-secret-waha-key" not in tenant.settings_encrypted
        loaded = repo.tenant_settings(tenant, secret_key=TEST_SECRET)
        assert loaded.waha is not None and loaded.waha.api_key is not None
        assert loaded.waha.api_key.get_secret_value() == "super-secret-waha-key"


async def test_duplicate_and_invalid_tenant_ids_are_refused(db: Database) -> None:
    tid, _ = await make_tenant(db)
    async with db.session() as session:
        with pytest.raises(repo.TenantExists):
            await repo.create_tenant(session, tenant_id=tid, name="x", secret_key=TEST_SECRET)
        with pytest.raises(repo.InvalidTenantId):
            await repo.create_tenant(session, tenant_id="Bad Id!", name="x", secret_key=TEST_SECRET)
