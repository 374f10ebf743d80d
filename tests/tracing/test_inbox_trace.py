"""A message the inbox delivers later (api/inbox.py) stays in its webhook's trace: in the
background after a "queued" answer, and when this process's sweeper retries it after Temporal
refused. A row swept by another process (after a restart) has lost it and starts its own trace,
as documented. The real dev server; the webhook is stood in for by a server span."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, SpanKind
from sqlalchemy import update
from temporalio.client import Client
from temporalio.service import RPCError

from api.conversations_gateway import CONVERSATION_WORKFLOW
from api.inbox import InboxForwarder
from models.common import Channel
from models.conversation import conversation_workflow_id
from models.db import Database
from models.inbox_tables import InboxMessage
from models.messages import InboundMessage
from models.settings import Settings
from models.tables import utcnow
from tests.tracing.conftest import named
from workers.client import connect

SPAN = f"SignalWithStartWorkflow:{CONVERSATION_WORKFLOW}"


class Temporal:
    """The forwarder's client factory; `client` is swapped to make Temporal refuse or take."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def __call__(self) -> Client:
        return self.client


def message() -> InboundMessage:
    return InboundMessage(
        tenant_id=f"t-{uuid.uuid4().hex[:8]}",
        channel=Channel.WAHA,
        contact=f"3162{uuid.uuid4().int % 10**7:07d}@c.us",
        provider_message_id=uuid.uuid4().hex,
        text="Still available?",
        sent_at=datetime.now(UTC),
    )


async def started_trace_id(client: Client, msg: InboundMessage) -> int:
    """The trace id the run's started event carries (`_tracer-data` traceparent)."""
    workflow_id = conversation_workflow_id(msg.tenant_id, msg.channel, msg.contact)
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    fields = history.events[0].workflow_execution_started_event_attributes.header.fields
    return int(json.loads(fields["_tracer-data"].data)["traceparent"].split("-")[1], 16)


async def make_due(db: Database) -> None:
    async with db.session() as session:
        await session.exec(update(InboxMessage).values(lease_until=utcnow()))
        await session.commit()


@pytest.fixture
def settings(settings_factory: Any, sqlite_url: str) -> Iterator[Settings]:
    made: Settings = settings_factory(sqlite_url, otel_enabled=True)
    yield made


def webhook_span() -> Any:
    return trace.get_tracer("test").start_as_current_span("webhook", kind=SpanKind.SERVER)


async def test_a_queued_delivery_stays_in_the_webhooks_trace(
    spans: InMemorySpanExporter,
    temporal_address: str,
    settings: Settings,
    sqlite_db: Database,
) -> None:
    traced = await connect(settings, address=temporal_address, role="test")
    # No time to wait for Temporal: the answer is "queued" and delivery goes on in the background.
    forwarder = InboxForwarder(
        settings.model_copy(update={"webhook_ack_budget_seconds": 0.0}), sqlite_db, Temporal(traced)
    )
    msg = message()
    try:
        with webhook_span() as span:
            accepted = await forwarder.accept([msg])
            context: SpanContext = span.get_span_context()
        assert not accepted.in_time
        trace_id = await _eventually_started(traced, msg)
        assert trace_id == context.trace_id
        while not named(list(spans.get_finished_spans()), SPAN):  # ends once the RPC returned
            await asyncio.sleep(0.02)
        [client_span] = named(list(spans.get_finished_spans()), SPAN)
        assert client_span.parent is not None and client_span.parent.span_id == context.span_id
    finally:
        await forwarder.stop()


async def test_a_retry_by_the_sweeper_stays_in_the_webhooks_trace_until_a_restart(
    spans: InMemorySpanExporter,
    temporal_address: str,
    temporal_client: Client,
    settings: Settings,
    sqlite_db: Database,
) -> None:
    traced = await connect(settings, address=temporal_address, role="test")
    refusing = await Client.connect(
        temporal_address,
        namespace="no-such-namespace",
        data_converter=temporal_client.data_converter,
    )
    temporal = Temporal(refusing)
    forwarder = InboxForwarder(settings, sqlite_db, temporal)
    restarted = InboxForwarder(settings, sqlite_db, Temporal(traced))  # another API process
    try:
        # Temporal refuses within the budget: the webhook would answer 503, the row waits.
        retried = message()
        with webhook_span() as span:
            with pytest.raises(RPCError):
                await forwarder.accept([retried])
            webhook = span.get_span_context()
        temporal.client = traced
        await make_due(sqlite_db)
        assert await forwarder.sweep_once() == 1  # outside any span, as the sweeper runs
        assert await started_trace_id(traced, retried) == webhook.trace_id
        [client_span] = named(list(spans.get_finished_spans()), SPAN)
        assert client_span.parent is not None and client_span.parent.span_id == webhook.span_id

        # A row another process swept (its API died): its context was in the dead one's memory.
        temporal.client = refusing
        lost = message()
        with webhook_span() as span:
            with pytest.raises(RPCError):
                await forwarder.accept([lost])
            second = span.get_span_context()
        await make_due(sqlite_db)
        assert await restarted.sweep_once() == 1
        assert await started_trace_id(traced, lost) != second.trace_id
    finally:
        await forwarder.stop()
        await restarted.stop()


async def _eventually_started(client: Client, msg: InboundMessage) -> int:
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        try:
            return await started_trace_id(client, msg)
        except RPCError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)
