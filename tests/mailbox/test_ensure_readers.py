"""Starting, telling and stopping readers (models/mailbox.py `ensure_mailbox_reader`) on the real
dev server, the start-of-process sweep (`leadflow up` / `leadflow worker`), the CLI's follow-up
after `tenant configure`, and the settings API when Temporal cannot follow."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import SearchAttributeKey

from api.app import create_app
from models import mailbox as mailbox_model
from models import search_attributes
from models.db import Database
from models.mailbox import (
    SIGNAL_SETTINGS_CHANGED,
    SIGNAL_STOP,
    MailboxAction,
    ensure_mailbox_reader,
    mailbox_workflow_id,
    reader_wanted,
)
from models.repo import tenants as tenant_repo
from models.settings import Settings
from models.tenant import ImapSettings, TenantSettings
from tests.conftest import TEST_SECRET, make_tenant
from workers.mailbox_readers import follow_saved_settings, start_mailbox_readers

pytestmark = pytest.mark.timeout(120)

IMAP = ImapSettings(host="imap.dealer.example", username="sales@dealer.example", password="pw")


@pytest.fixture
def queue(monkeypatch: pytest.MonkeyPatch) -> str:
    # No worker serves it: these tests look at what was asked of Temporal, not at readers.
    name = f"tq-ensure-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(mailbox_model, "TASK_QUEUE", name)
    return name


async def signals(client: Client, tenant_id: str) -> list[str]:
    history = await client.get_workflow_handle(mailbox_workflow_id(tenant_id)).fetch_history()
    return [
        e.workflow_execution_signaled_event_attributes.signal_name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    ]


def test_a_reader_is_wanted_for_an_enabled_block_with_credentials() -> None:
    assert reader_wanted(IMAP)
    assert not reader_wanted(None)
    assert not reader_wanted(IMAP.model_copy(update={"enabled": False}))
    assert not reader_wanted(IMAP.model_copy(update={"password": None}))
    assert not reader_wanted(IMAP.model_copy(update={"username": " "}))


async def test_ensure_starts_tells_leaves_and_stops(temporal_client: Client, queue: str) -> None:
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    assert await ensure_mailbox_reader(temporal_client, tenant_id=tenant, imap=None) == (
        MailboxAction.NONE
    )
    started = await ensure_mailbox_reader(temporal_client, tenant_id=tenant, imap=IMAP)
    assert started == MailboxAction.STARTED
    handle = temporal_client.get_workflow_handle(mailbox_workflow_id(tenant))
    description = await handle.describe()
    assert description.status == WorkflowExecutionStatus.RUNNING
    assert description.task_queue == queue
    # Findable by tenant (tenant deletion terminates every workflow carrying it).
    assert (
        description.typed_search_attributes.get(
            SearchAttributeKey.for_keyword(search_attributes.TENANT.name)
        )
        == tenant
    )
    assert await signals(temporal_client, tenant) == [SIGNAL_SETTINGS_CHANGED]
    # Unchanged settings leave a running reader alone; changed ones tell it.
    unchanged = await ensure_mailbox_reader(
        temporal_client, tenant_id=tenant, imap=IMAP, changed=False
    )
    assert unchanged == MailboxAction.RUNNING
    await ensure_mailbox_reader(temporal_client, tenant_id=tenant, imap=IMAP)
    assert await signals(temporal_client, tenant) == [SIGNAL_SETTINGS_CHANGED] * 2
    disabled = IMAP.model_copy(update={"enabled": False})
    stopped = await ensure_mailbox_reader(temporal_client, tenant_id=tenant, imap=disabled)
    assert stopped == MailboxAction.STOPPED
    assert (await signals(temporal_client, tenant))[-1] == SIGNAL_STOP


async def test_the_start_sweep_starts_readers_for_tenants_with_a_mailbox(
    temporal_client: Client,
    queue: str,
    sqlite_db: Database,
    sqlite_url: str,
    settings_factory: Callable[..., Settings],
) -> None:
    with_mailbox, _ = await make_tenant(sqlite_db, settings=TenantSettings(imap=IMAP))
    disabled, _ = await make_tenant(
        sqlite_db, settings=TenantSettings(imap=IMAP.model_copy(update={"enabled": False}))
    )
    without, _ = await make_tenant(sqlite_db)
    settings = settings_factory(sqlite_url)
    first = await start_mailbox_readers(settings, temporal_client)
    assert first == {with_mailbox: MailboxAction.STARTED}
    assert disabled not in first and without not in first
    # A second worker starting: the reader is left as it runs (no signal, no second run).
    second = await start_mailbox_readers(settings, temporal_client)
    assert second == {with_mailbox: MailboxAction.RUNNING}
    assert await signals(temporal_client, with_mailbox) == []


async def test_the_start_sweep_never_fails_its_start(
    temporal_client: Client, settings_factory: Callable[..., Settings], tmp_path: Any
) -> None:
    broken = settings_factory(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'x' / 'db'}")
    assert await start_mailbox_readers(broken, temporal_client) == {}


async def test_the_cli_follow_up_tells_the_reader_or_says_why_not(
    temporal_client: Client,
    temporal_address: str,
    queue: str,
    sqlite_url: str,
    settings_factory: Callable[..., Settings],
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    settings = settings_factory(sqlite_url, temporal_address=temporal_address)
    assert await follow_saved_settings(settings, tenant, IMAP, IMAP) is None  # nothing changed
    assert await follow_saved_settings(settings, tenant, None, IMAP) is None
    handle = temporal_client.get_workflow_handle(mailbox_workflow_id(tenant))
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    down = settings_factory(sqlite_url, temporal_address="127.0.0.1:1")
    warning = await follow_saved_settings(down, tenant, IMAP, None)
    assert warning is not None and "next `leadflow worker`" in warning


async def test_settings_saved_while_temporal_is_down_say_so(
    sqlite_db: Database, sqlite_url: str, settings_factory: Callable[..., Settings]
) -> None:
    app = create_app(settings_factory(sqlite_url, temporal_address="127.0.0.1:1"))
    tenant_id, key = await make_tenant(sqlite_db)
    headers = {"Authorization": f"Bearer {key}"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://leadflow.test") as http:
            imap = IMAP.model_dump(mode="json") | {"password": "pw"}
            response = await http.patch("/api/v1/settings", json={"imap": imap}, headers=headers)
            assert response.status_code == 503, response.text
            assert "the settings are saved" in response.json()["detail"]
            # Other settings still save: an unchanged mailbox block needs no Temporal.
            response = await http.patch(
                "/api/v1/settings", json={"timezone": "Europe/Amsterdam"}, headers=headers
            )
            assert response.status_code == 200, response.text
            status = await http.get("/api/v1/settings/mailbox", headers=headers)
            assert status.status_code == 503
    async with sqlite_db.session() as session:
        tenant = await tenant_repo.get_tenant(session, tenant_id=tenant_id)
        assert tenant is not None
        saved = tenant_repo.tenant_settings(tenant, secret_key=TEST_SECRET)
    assert saved.imap == IMAP and saved.timezone == "Europe/Amsterdam"
