"""With LEADFLOW_OTEL_ENABLED, a conversation is traced from the client call through the
workflow into its activities."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from models.common import Channel
from models.conversation import ConversationInput, conversation_workflow_id
from models.db import Database, migrate
from models.messages import InboundMessage
from models.task_queues import CONVERSATIONS
from tests.conftest import make_tenant
from workers.client import connect
from workers.worker import WorkerProcess

EXPORTER = InMemorySpanExporter()


def _install_provider() -> None:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))


async def test_a_conversation_is_traced_end_to_end(
    temporal_address: str, settings_factory: Any, sqlite_url: str
) -> None:
    _install_provider()
    settings = settings_factory(sqlite_url, otel_enabled=True, debounce_seconds=0.2)
    migrate(sqlite_url)
    db = Database(sqlite_url)
    tenant_id, _ = await make_tenant(db)
    client = await connect(settings, address=temporal_address, role="test")
    worker = WorkerProcess(settings, queues=[CONVERSATIONS], client=client)
    await worker.start()
    task = asyncio.create_task(worker.run())
    contact = "31655555555@c.us"
    workflow_id = conversation_workflow_id(tenant_id, Channel.WAHA, contact)
    try:
        await client.start_workflow(
            "ConversationWorkflow",
            ConversationInput.new(tenant_id=tenant_id, channel=Channel.WAHA, contact=contact),
            id=workflow_id,
            task_queue=CONVERSATIONS,
            start_signal="inbound",
            start_signal_args=[
                InboundMessage(
                    tenant_id=tenant_id,
                    channel=Channel.WAHA,
                    contact=contact,
                    provider_message_id="otel-1",
                    text="Hello, is the Golf still available?",
                    sent_at=datetime.now(UTC),
                )
            ],
        )
        for _ in range(300):
            names = {span.name for span in EXPORTER.get_finished_spans()}
            if "RunActivity:send_and_record" in names:
                break
            await asyncio.sleep(0.1)
        names = {span.name for span in EXPORTER.get_finished_spans()}
        assert "SignalWithStartWorkflow:ConversationWorkflow" in names
        assert "RunActivity:prepare_turn" in names
        assert "RunActivity:send_and_record" in names
        traces = {
            span.context.trace_id
            for span in EXPORTER.get_finished_spans()
            if span.name
            in ("SignalWithStartWorkflow:ConversationWorkflow", "RunActivity:send_and_record")
        }
        assert len(traces) == 1, "the activity span belongs to the client call's trace"
    finally:
        await client.get_workflow_handle(workflow_id).terminate("test over")
        worker.stop()
        await task
        await db.dispose()


async def test_tracing_is_off_by_default(settings_factory: Any, sqlite_url: str) -> None:
    from workers.telemetry import tracing_interceptors

    assert tracing_interceptors(settings_factory(sqlite_url), role="test") == []
