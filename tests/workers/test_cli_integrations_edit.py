"""`leadflow integrations disable|enable|delete`: the API's service from the command line, each
change in the audit log under the person at the command line; an unknown id is exit 1."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import typer
from sqlmodel import select
from typer.testing import CliRunner

from models import audit
from models.crm import CrmKind
from models.crm_tables import CrmLink
from models.db import Database
from models.repo import crm as crm_repo
from models.repo import leads as lead_repo
from models.settings import get_settings
from tests.conftest import TEST_SECRET, make_tenant
from workers import cli_crm


@pytest.fixture
def app(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[typer.Typer]:
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", sqlite_url)
    get_settings.cache_clear()
    app = typer.Typer()
    cli_crm.register(app)
    yield app
    get_settings.cache_clear()


async def test_disable_enable_delete(sqlite_db: Database, app: typer.Typer) -> None:
    tid, _ = await make_tenant(sqlite_db)
    other, _ = await make_tenant(sqlite_db)
    async with sqlite_db.session() as s:
        row = await crm_repo.create_integration(
            s,
            tenant_id=tid,
            kind=CrmKind.HUBSPOT,
            name="hs",
            credentials={"access_token": "pat"},
            secret_key=TEST_SECRET,
        )
        lead = await lead_repo.create_lead(s, tenant_id=tid, channel="waha", address="5@c.us")
        await crm_repo.save_link(
            s, tenant_id=tid, integration_id=row.id, lead_id=lead.id, remote_id="7"
        )
        integration_id = row.id
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, ["integrations", *args])
        return result.exit_code, result.output

    async def enabled() -> bool:
        async with sqlite_db.session() as s:
            found = await crm_repo.get_integration(s, tenant_id=tid, integration_id=integration_id)
            assert found is not None
            return found.enabled

    code, out = await asyncio.to_thread(
        run, "disable", integration_id, "--tenant", tid, "--by", "Mila"
    )
    assert code == 0, out
    assert await enabled() is False
    code, out = await asyncio.to_thread(run, "enable", integration_id, "--tenant", tid)
    assert code == 0 and await enabled() is True, out
    # another tenant's id is unknown, changes nothing
    code, out = await asyncio.to_thread(run, "disable", integration_id, "--tenant", other)
    assert code == 1 and "has no integration" in out
    code, out = await asyncio.to_thread(run, "delete", integration_id, "--tenant", other, "--yes")
    assert code == 1 and await enabled() is True
    # without --yes it asks; "n" keeps it
    refused = await asyncio.to_thread(
        runner.invoke, app, ["integrations", "delete", integration_id, "--tenant", tid], input="n\n"
    )
    assert refused.exit_code != 0 and await enabled() is True
    code, out = await asyncio.to_thread(
        run, "delete", integration_id, "--tenant", tid, "--yes", "--by", "Mila"
    )
    assert code == 0, out
    async with sqlite_db.session() as s:
        assert (
            await crm_repo.get_integration(s, tenant_id=tid, integration_id=integration_id) is None
        )
        assert (await s.exec(select(CrmLink).where(CrmLink.tenant_id == tid))).all() == []
        entries = await audit.list_events(s, tenant_id=tid, action="integration.*")
    assert [(e.action, e.actor, e.actor_kind) for e in entries][::-1] == [
        ("integration.update", "Mila", "cli"),
        ("integration.update", entries[-2].actor, "cli"),
        ("integration.delete", "Mila", "cli"),
    ]
