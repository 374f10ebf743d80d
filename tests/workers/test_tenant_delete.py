"""`leadflow tenant delete`: every workflow of the tenant terminated and its history deleted,
every row of it gone in every table, its API keys with them; another tenant keeps everything.
It asks for the tenant id to confirm, and refuses an unknown tenant."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect
from sqlmodel import SQLModel, func, select
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode
from typer.testing import CliRunner, Result

from models import search_attributes
from models.audit_tables import AuditEvent
from models.crm import crm_sync_workflow_id
from models.db import Database, migrate
from models.repo import tenants as tenant_repo
from models.table_modules import import_all
from tests.api.test_erasure import _recorded_lead
from tests.conftest import TEST_SECRET, make_tenant
from workers.cli import app

pytestmark = pytest.mark.timeout(120)


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=input)


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", url)
    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LEADFLOW_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("COLUMNS", "240")
    migrate(url)
    return url


@pytest.fixture
def cli_db(cli_env: str, monkeypatch: pytest.MonkeyPatch, temporal_address: str) -> str:
    monkeypatch.setenv("LEADFLOW_TEMPORAL_ADDRESS", temporal_address)
    return cli_env


async def _rows_per_table(db: Database, tenant_id: str) -> dict[str, int]:
    """Rows of the tenant in every table that has a tenant column (and the tenant row)."""
    import_all()
    counts: dict[str, int] = {}
    async with db.session() as session:
        conn = await session.connection()
        existing = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
        for table in SQLModel.metadata.sorted_tables:
            if table.name not in existing:
                continue
            column = table.c.get("tenant_id") if table.name != "tenants" else table.c.id
            if column is None:
                continue
            n = (
                await conn.execute(
                    select(func.count()).select_from(table).where(column == tenant_id)
                )
            ).scalar_one()
            if n:
                counts[table.name] = int(n)
    return counts


async def _start(client: Client, workflow_id: str, tenant_id: str | None) -> None:
    """A workflow no worker runs (its own task queue): it stays running until terminated."""
    await client.start_workflow(
        "TenantDeleteProbe",
        id=workflow_id,
        task_queue=f"tq-{uuid.uuid4().hex[:10]}",
        search_attributes=TypedSearchAttributes(
            [SearchAttributePair(search_attributes.TENANT, tenant_id)] if tenant_id else []
        ),
    )


async def _status(client: Client, workflow_id: str) -> WorkflowExecutionStatus | None:
    try:
        return (await client.get_workflow_handle(workflow_id).describe()).status
    except RPCError as exc:
        assert exc.status == RPCStatusCode.NOT_FOUND
        return None


async def _wait(predicate: Any, what: str, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_tenant_delete_removes_everything_of_it_and_nothing_of_another(
    cli_db: str, temporal_client: Client
) -> None:
    db = Database(cli_db)
    try:
        doomed, doomed_key = await make_tenant(db)
        kept, kept_key = await make_tenant(db)
        doomed_lead, doomed_conv = await _recorded_lead(db, doomed)
        kept_lead, kept_conv = await _recorded_lead(db, kept)
        before_kept = await _rows_per_table(db, kept)
        assert {"tenants", "api_keys", "leads", "conversations", "messages"} <= set(
            await _rows_per_table(db, doomed)
        )

        # Workflows: found by the tenant search attribute, by id prefix, and from its rows.
        doomed_ids = [
            f"conv:{doomed}:waha:probe",
            crm_sync_workflow_id(doomed, doomed_lead),
            doomed_conv,  # a conversation row's id is its workflow id
        ]
        await _start(temporal_client, doomed_ids[0], doomed)
        await _start(temporal_client, doomed_ids[1], None)
        await _start(temporal_client, doomed_ids[2], None)
        kept_ids = [f"conv:{kept}:waha:probe", crm_sync_workflow_id(kept, kept_lead)]
        await _start(temporal_client, kept_ids[0], kept)
        await _start(temporal_client, kept_ids[1], None)

        async def visible() -> bool:
            found = [
                wf.id
                async for wf in temporal_client.list_workflows(
                    f'{search_attributes.TENANT.name}="{doomed}"'
                )
            ]
            return doomed_ids[0] in found

        await _wait(visible, "the tenant's workflow in visibility")

        # Not confirmed: nothing deleted.
        refused = await asyncio.to_thread(run, "tenant", "delete", doomed, input="acme\n")
        assert refused.exit_code == 1, refused.output
        assert "not confirmed" in refused.output
        assert await _status(temporal_client, doomed_ids[0]) == WorkflowExecutionStatus.RUNNING
        assert "leads" in await _rows_per_table(db, doomed)

        unknown = await asyncio.to_thread(run, "tenant", "delete", "no-such-tenant", "--yes")
        assert unknown.exit_code == 1 and "unknown tenant" in unknown.output

        # Confirmed by typing the id.
        deleted = await asyncio.to_thread(
            run, "tenant", "delete", doomed, "--by", "ops-test", input=f"{doomed}\n"
        )
        assert deleted.exit_code == 0, deleted.output
        assert f"deleted tenant {doomed}" in deleted.output

        for workflow_id in doomed_ids:

            async def gone(workflow_id: str = workflow_id) -> bool:
                return await _status(temporal_client, workflow_id) is None

            await _wait(gone, f"{workflow_id} deleted")
        for workflow_id in kept_ids:
            assert await _status(temporal_client, workflow_id) == WorkflowExecutionStatus.RUNNING

        # Only the audit entry of the deletion itself is left of the deleted tenant.
        assert await _rows_per_table(db, doomed) == {"audit_events": 1}
        async with db.session() as session:
            (entry,) = (
                await session.exec(select(AuditEvent).where(AuditEvent.tenant_id == doomed))
            ).all()
            assert (entry.action, entry.actor) == ("tenant.delete", "ops-test")
            assert await tenant_repo.tenant_for_key(session, key=doomed_key) is None
            assert await tenant_repo.tenant_for_key(session, key=kept_key) is not None
        assert await _rows_per_table(db, kept) == before_kept
        assert kept_conv != doomed_conv

        again = await asyncio.to_thread(run, "tenant", "delete", doomed, "--yes")
        assert again.exit_code == 1 and "unknown tenant" in again.output
    finally:
        await db.dispose()


async def test_without_temporal_nothing_is_deleted(
    cli_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its workflows must stop before its rows go: with Temporal unreachable, nothing goes."""
    monkeypatch.setenv("LEADFLOW_TEMPORAL_ADDRESS", "127.0.0.1:1")
    db = Database(cli_env)
    try:
        tid, _ = await make_tenant(db)
        await _recorded_lead(db, tid)
        before = await _rows_per_table(db, tid)
        refused = await asyncio.to_thread(run, "tenant", "delete", tid, "--yes")
        assert refused.exit_code == 1, refused.output
        assert "Temporal is unavailable" in refused.output
        assert "nothing was deleted" in refused.output
        assert await _rows_per_table(db, tid) == before
    finally:
        await db.dispose()


async def test_the_tenants_weaviate_data_goes_first(
    cli_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With Weaviate configured, the tenant's Weaviate tenant is dropped before its rows; a
    Weaviate that does not answer stops the deletion with the rows intact (run it again)."""
    from decimal import Decimal

    from models.inventory import NewInventoryItem
    from models.knowledge.service import KnowledgeService, build_index
    from models.knowledge.weaviate_index import weaviate_tenant
    from models.settings import get_settings
    from tests.fakes.weaviate import FakeWeaviate

    db = Database(cli_db)
    try:
        with FakeWeaviate() as weaviate:
            monkeypatch.setenv("LEADFLOW_WEAVIATE_URL", weaviate.url)
            monkeypatch.setenv("LEADFLOW_WEAVIATE_GRPC_PORT", str(weaviate.grpc_port))
            monkeypatch.setenv("LEADFLOW_WEAVIATE_VECTORS", "none")
            get_settings.cache_clear()
            doomed, _ = await make_tenant(db)
            kept, _ = await make_tenant(db)
            knowledge = KnowledgeService(db, build_index(get_settings(), db))
            car = NewInventoryItem(key="a", make="Toyota", price=Decimal(9000)).keyed()
            try:
                for tenant in (doomed, kept):
                    await knowledge.apply_items(tenant_id=tenant, items=[car], replace=True)
            finally:
                await knowledge.index.close()
            assert {weaviate_tenant(doomed), weaviate_tenant(kept)} <= set(
                weaviate.tenants("LeadflowKnowledge")
            )

            weaviate.stop()
            refused = await asyncio.to_thread(run, "tenant", "delete", doomed, "--yes")
            assert refused.exit_code == 1, refused.output
            assert "Weaviate" in refused.output and "not deleted" in refused.output
            assert "inventory_items" in await _rows_per_table(db, doomed)

        with FakeWeaviate() as weaviate:
            monkeypatch.setenv("LEADFLOW_WEAVIATE_URL", weaviate.url)
            monkeypatch.setenv("LEADFLOW_WEAVIATE_GRPC_PORT", str(weaviate.grpc_port))
            get_settings.cache_clear()
            knowledge = KnowledgeService(db, build_index(get_settings(), db))
            try:
                # A new Weaviate is filled from the database's canonical rows.
                for tenant in (doomed, kept):
                    assert await knowledge.reindex(tenant_id=tenant) == (0, 1)
            finally:
                await knowledge.index.close()
            deleted = await asyncio.to_thread(run, "tenant", "delete", doomed, "--yes")
            assert deleted.exit_code == 0, deleted.output
            assert weaviate_tenant(doomed) not in weaviate.tenants("LeadflowKnowledge")
            assert weaviate_tenant(kept) in weaviate.tenants("LeadflowKnowledge")
            assert await _rows_per_table(db, doomed) == {"audit_events": 1}
    finally:
        get_settings.cache_clear()
        await db.dispose()
