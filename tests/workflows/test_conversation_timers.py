"""Follow-ups and the holding message run on durable timers: tested on Temporal's time-skipping
test server, with the real worker, activities and database."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from models.common import Channel, Role, Stage
from models.conversation import ConversationInput, conversation_workflow_id, lead_id_for
from models.crm import crm_sync_workflow_id
from models.db import Database, migrate
from models.messages import InboundMessage
from models.repo import outbox as outbox_repo
from models.repo.playbooks import builtin_playbook
from models.settings import Settings
from models.task_queues import CONVERSATIONS, CRM
from models.tenant import TenantSettings
from tests.conftest import TEST_SECRET, make_tenant
from workers.worker import WorkerProcess

PLAYBOOK = builtin_playbook("car_dealership")
CONTACT = "31699999999@c.us"
AMSTERDAM = ZoneInfo("Europe/Amsterdam")


@pytest.fixture(scope="module")
async def skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(Path(sys.executable).parent / "temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    yield env
    await env.shutdown()


@pytest.fixture
async def timer_stack(
    skipping_env: WorkflowEnvironment, tmp_path: Path
) -> AsyncIterator[tuple[Database, str]]:
    """A database with a tenant, and the real worker on the time-skipping server."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    migrate(url)
    db = Database(url)
    settings = Settings(database_url=url, data_dir=tmp_path, secret_key=TEST_SECRET)  # type: ignore[arg-type]
    # The car dealership's cadence and quiet hours, which the tests below check against (a
    # tenant without a playbook gets the neutral one, without quiet hours).
    tenant_id, _ = await make_tenant(db, settings=TenantSettings(playbook="car_dealership"))
    # The CRM queue too: a lead change starts its CrmSyncWorkflow, and a workflow task nobody
    # polls would stop the test server from skipping time.
    worker = WorkerProcess(settings, queues=[CONVERSATIONS, CRM], client=skipping_env.client)
    await worker.start()
    task = asyncio.create_task(worker.run())
    try:
        yield db, tenant_id
    finally:
        # A workflow left waiting on timers would hold up time skipping in the next test.
        for wid in (
            conversation_workflow_id(tenant_id, Channel.WAHA, CONTACT),
            crm_sync_workflow_id(tenant_id, lead_id_for(tenant_id, Channel.WAHA, CONTACT)),
        ):
            with contextlib.suppress(RPCError):
                await skipping_env.client.get_workflow_handle(wid).terminate("test over")
        worker.stop()
        await task
        await db.dispose()


async def _stored(db: Database, tenant_id: str) -> list[str]:
    async with db.session() as session:
        rows = await outbox_repo.list_outbox(session, tenant_id=tenant_id)
    return [r.text for r in reversed(rows)]


def _message(tenant_id: str, text: str, n: int, at: datetime) -> InboundMessage:
    return InboundMessage(
        tenant_id=tenant_id,
        channel=Channel.WAHA,
        contact=CONTACT,
        provider_message_id=f"m{n}",
        text=text,
        sent_at=at,
    )


def _until_local(now: datetime, *, hour: int) -> timedelta:
    """From `now` to the next `hour`:00 in Amsterdam."""
    local = now.astimezone(AMSTERDAM)
    target = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    if target <= local:
        target += timedelta(days=1)
    return target - local


async def _until(
    env: WorkflowEnvironment, check: Any, *, step: timedelta, limit: timedelta
) -> datetime:
    """Skip time in steps until `check()` is truthy; returns the (skipped) time it became so."""
    waited = timedelta()
    while waited <= limit:
        if await check():
            return await env.get_current_time()
        await env.sleep(step)
        waited += step
    raise AssertionError(f"condition not met within {limit}")


async def _start(client: Client, tenant_id: str, first: InboundMessage) -> str:
    workflow_id = conversation_workflow_id(tenant_id, Channel.WAHA, first.contact)
    await client.start_workflow(
        "ConversationWorkflow",
        ConversationInput.new(
            tenant_id=tenant_id,
            channel=Channel.WAHA,
            contact=first.contact,
            debounce_seconds=1,
            search_attributes=False,  # the time-skipping server has no custom attributes
        ),
        id=workflow_id,
        task_queue=CONVERSATIONS,
        start_signal="inbound",
        start_signal_args=[first],
    )
    return workflow_id


async def test_follow_ups_follow_the_cadence_outside_quiet_hours_and_stop_on_reply(
    skipping_env: WorkflowEnvironment, timer_stack: tuple[Database, str]
) -> None:
    db, tenant_id = timer_stack
    # Start at 18:00 in Amsterdam whatever the wall clock says: the first follow-up (4 h later)
    # then falls in the quiet hours (21:00-08:00) and must move to the morning.
    await skipping_env.sleep(_until_local(await skipping_env.get_current_time(), hour=18))
    now = await skipping_env.get_current_time()
    workflow_id = await _start(
        skipping_env.client,
        tenant_id,
        _message(tenant_id, "Hi, I'm interested in a Toyota Corolla", 1, now),
    )

    async def replies(n: int) -> bool:
        return len(await _stored(db, tenant_id)) >= n

    replied_at = await _until(
        skipping_env, lambda: replies(1), step=timedelta(seconds=1), limit=timedelta(minutes=1)
    )
    # Nothing before the first cadence step (4 h)...
    await skipping_env.sleep(PLAYBOOK.follow_up.cadence[0] - timedelta(minutes=30))
    assert len(await _stored(db, tenant_id)) == 1
    # ...then the first follow-up, moved out of quiet hours.
    sent_at = await _until(
        skipping_env, lambda: replies(2), step=timedelta(minutes=10), limit=timedelta(hours=14)
    )
    assert sent_at >= replied_at + PLAYBOOK.follow_up.cadence[0]
    local = sent_at.astimezone(AMSTERDAM).time()
    # Due at 22:00, inside the quiet hours: sent when they end, at 08:00 (sampled every 10
    # minutes, so seen within one step of it).
    assert time(8, 0) <= local <= time(8, 10), f"follow-up sent at {local} local time"

    handle = skipping_env.client.get_workflow_handle(workflow_id)
    state = await handle.query("state")
    assert state["stage"] == Stage.NURTURE.value

    # The lead answers: follow-ups are cancelled and the cadence starts over after our reply.
    await handle.signal(
        "inbound",
        _message(tenant_id, "Yes, what does it cost?", 2, await skipping_env.get_current_time()),
    )
    await _until(
        skipping_env, lambda: replies(3), step=timedelta(seconds=1), limit=timedelta(minutes=1)
    )
    await skipping_env.sleep(timedelta(hours=2))
    assert len(await _stored(db, tenant_id)) == 3
    state = await handle.query("state")
    assert state["stage"] != Stage.NURTURE.value


async def test_holding_message_when_no_human_answers_in_time(
    skipping_env: WorkflowEnvironment, timer_stack: tuple[Database, str]
) -> None:
    db, tenant_id = timer_stack
    now = await skipping_env.get_current_time()
    workflow_id = await _start(
        skipping_env.client,
        tenant_id,
        _message(tenant_id, "I want to speak to a human please", 1, now),
    )
    handle = skipping_env.client.get_workflow_handle(workflow_id)

    async def in_handoff() -> bool:
        state = await handle.query("state")
        return bool(state["stage"] == Stage.HUMAN_HANDOFF.value)

    await _until(skipping_env, in_handoff, step=timedelta(seconds=1), limit=timedelta(minutes=1))
    assert len(await _stored(db, tenant_id)) == 1  # the polite notice
    await skipping_env.sleep(PLAYBOOK.handoff.holding_after - timedelta(minutes=5))
    assert len(await _stored(db, tenant_id)) == 1

    async def holding_sent() -> bool:
        return len(await _stored(db, tenant_id)) == 2

    await _until(skipping_env, holding_sent, step=timedelta(minutes=2), limit=timedelta(minutes=30))
    # Exactly one holding message, and no follow-ups while a human owns the conversation.
    await skipping_env.sleep(timedelta(days=2))
    assert len(await _stored(db, tenant_id)) == 2
    state = await handle.query("state")
    assert state["stage"] == Stage.HUMAN_HANDOFF.value
    assert [e["role"] for e in state["transcript"]] == [Role.LEAD, Role.AI, Role.AI]
    assert datetime.now(UTC)  # real clock untouched
