"""The worker's one cache of tenant settings and playbooks (models/playbook_service.py)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event

from models.db import Database
from models.playbook_service import PlaybookResolver, UnknownTenantError
from models.repo import tenants as tenant_repo
from models.repo.playbooks import PlaybookError
from models.tenant import TenantSettings, WahaSettings
from tests.conftest import TEST_SECRET, make_tenant


def statements(db: Database) -> list[str]:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        seen.append(sql)

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    return seen


async def test_settings_are_read_once_per_ttl_and_shared_with_the_playbook(db: Database) -> None:
    waha = WahaSettings(base_url="http://127.0.0.1:9", session="default")
    tenant_id, _ = await make_tenant(
        db, settings=TenantSettings(playbook="car_dealership", waha=waha)
    )
    resolver = PlaybookResolver(db, TEST_SECRET, ttl_seconds=60)
    seen = statements(db)
    first = await resolver.settings(tenant_id)
    read = len(seen)
    assert read >= 1 and first.waha is not None
    again = await resolver.settings(tenant_id)
    profile = await resolver.tenant(tenant_id)
    assert len(seen) == read, "a second read within the TTL went to the database"
    assert again is first and profile.settings is first
    assert profile.playbook.name


async def test_a_changed_setting_applies_after_the_ttl(db: Database) -> None:
    tenant_id, _ = await make_tenant(db, settings=TenantSettings(playbook="car_dealership"))
    resolver = PlaybookResolver(db, TEST_SECRET, ttl_seconds=0)
    assert (await resolver.settings(tenant_id)).timezone != "Asia/Tokyo"
    async with db.session() as session:
        tenant = await tenant_repo.get_tenant(session, tenant_id=tenant_id)
        assert tenant is not None
        await tenant_repo.save_tenant_settings(
            session,
            tenant=tenant,
            settings=TenantSettings(playbook="car_dealership", timezone="Asia/Tokyo"),
            secret_key=TEST_SECRET,
        )
    assert (await resolver.settings(tenant_id)).timezone == "Asia/Tokyo"


async def test_a_broken_playbook_does_not_stop_reading_the_settings(db: Database) -> None:
    tenant_id, _ = await make_tenant(db, settings=TenantSettings(playbook_yaml="name: [unclosed"))
    resolver = PlaybookResolver(db, TEST_SECRET)
    assert (await resolver.settings(tenant_id)).playbook_yaml == "name: [unclosed"
    with pytest.raises(PlaybookError):
        await resolver.tenant(tenant_id)


async def test_an_unknown_tenant_is_an_error_that_names_it(db: Database) -> None:
    resolver = PlaybookResolver(db, TEST_SECRET)
    with pytest.raises(UnknownTenantError, match="nobody"):
        await resolver.settings("nobody")
