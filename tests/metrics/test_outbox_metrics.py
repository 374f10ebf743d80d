"""`leadflow_outbox_sends_total`: each send attempt that decides, by the message's channel and
what became of it — through temporalio's ActivityEnvironment against the fake WAHA."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import REGISTRY
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.channels.activities import ChannelActivities, builtin_channel_adapters
from models.common import Channel
from models.conversation import conversation_workflow_id
from models.db import Database
from models.messages import OutboundMessage
from models.settings import Settings
from models.tenant import TenantSettings
from tests.conftest import TEST_SECRET, make_tenant
from tests.fakes.waha import FakeWaha

OUTCOMES = ("sent", "stored", "already_sent", "failed", "retrying")


def counts() -> dict[str, float]:
    return {
        o: REGISTRY.get_sample_value(
            "leadflow_outbox_sends_total", {"channel": "waha", "outcome": o}
        )
        or 0.0
        for o in OUTCOMES
    }


def grown(before: dict[str, float]) -> dict[str, float]:
    after = counts()
    return {o: after[o] - before[o] for o in OUTCOMES if after[o] != before[o]}


@pytest.fixture
async def channels(sqlite_db: Database) -> AsyncIterator[ChannelActivities]:
    async with httpx.AsyncClient(timeout=5) as http:
        settings = Settings(secret_key=TEST_SECRET, database_url=sqlite_db.url)
        yield ChannelActivities(sqlite_db, settings, http, builtin_channel_adapters(http))


def message(tenant_id: str) -> OutboundMessage:
    to = "31612345678@c.us"
    return OutboundMessage(
        tenant_id=tenant_id,
        channel=Channel.WAHA,
        to=to,
        text="Saturday at 10:00 works.",
        idempotency_key=f"turn-{uuid.uuid4().hex[:8]}",
        conversation_id=conversation_workflow_id(tenant_id, Channel.WAHA, to),
    )


async def test_sent_retrying_and_already_sent(
    sqlite_db: Database, channels: ChannelActivities, fake_waha: FakeWaha
) -> None:
    tid, _ = await make_tenant(sqlite_db, settings=TenantSettings(waha=fake_waha.settings()))
    reply = message(tid)
    before = counts()
    fake_waha.fail_next(status=503)
    with pytest.raises(ApplicationError):
        await ActivityEnvironment().run(channels.send_message, reply)
    assert grown(before) == {"retrying": 1}
    await ActivityEnvironment().run(channels.send_message, reply)  # Temporal's retry
    await ActivityEnvironment().run(channels.send_message, reply)  # a duplicate
    assert grown(before) == {"retrying": 1, "sent": 1, "already_sent": 1}


async def test_stored_without_a_channel_and_failed_for_good(
    sqlite_db: Database, channels: ChannelActivities, fake_waha: FakeWaha
) -> None:
    bare, _ = await make_tenant(sqlite_db)
    before = counts()
    await ActivityEnvironment().run(channels.send_message, message(bare))
    assert grown(before) == {"stored": 1}

    revoked = TenantSettings(waha=fake_waha.settings(api_key="revoked"))
    refused, _ = await make_tenant(sqlite_db, settings=revoked)
    before = counts()
    with pytest.raises(ApplicationError):
        await ActivityEnvironment().run(channels.send_message, message(refused))
    assert grown(before) == {"failed": 1}
