"""The webhook's raw signal-with-start (api/conversations_gateway.py) carries the trace as the
SDK's own `client.start_workflow(..., start_signal=...)` through TracingInterceptor does: the
same client span, the same `_tracer-data` header in the started and signalled events; and with
tracing off it adds nothing. Both against the real dev server, reading the recorded history."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from api.conversations_gateway import (
    CONVERSATION_WORKFLOW,
    INBOUND_SIGNAL,
    conversation_input,
    deliver_inbound,
)
from models.common import Channel
from models.conversation import conversation_workflow_id
from models.db import Database
from models.messages import InboundMessage
from models.repo import deployment_keys
from models.settings import Settings
from models.task_queues import CONVERSATIONS
from tests.tracing.conftest import named
from workers.client import connect
from workers.telemetry import client_tracing

HEADER = "_tracer-data"  # TracingInterceptor's header_key
SPAN = f"SignalWithStartWorkflow:{CONVERSATION_WORKFLOW}"


def message(tenant_id: str) -> InboundMessage:
    return InboundMessage(
        tenant_id=tenant_id,
        channel=Channel.WAHA,
        contact=f"3161{uuid.uuid4().int % 10**7:07d}@c.us",
        provider_message_id=uuid.uuid4().hex,
        text="Is the Golf still for sale?",
        sent_at=datetime.now(UTC),
    )


async def events(client: Client, workflow_id: str) -> tuple[HistoryEvent, HistoryEvent]:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    started = history.events[0]
    [signalled] = [
        e for e in history.events if e.HasField("workflow_execution_signaled_event_attributes")
    ]
    return started, signalled


def tracer_header(event: HistoryEvent) -> dict[str, Payload]:
    if event.HasField("workflow_execution_started_event_attributes"):
        return dict(event.workflow_execution_started_event_attributes.header.fields)
    return dict(event.workflow_execution_signaled_event_attributes.header.fields)


def carrier(payload: Payload) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(payload.data)
    return value


def client_span(finished: list[ReadableSpan], workflow_id: str) -> ReadableSpan:
    """The first client span of the workflow (the one whose header the run recorded)."""
    found = [
        s
        for s in named(finished, SPAN)
        if (s.attributes or {}).get("temporalWorkflowID") == workflow_id
    ]
    assert found, workflow_id
    return min(found, key=lambda s: s.start_time or 0)


async def test_the_raw_signal_with_start_carries_the_trace_as_the_sdk_does(
    spans: InMemorySpanExporter,
    temporal_address: str,
    settings_factory: Any,
    sqlite_db: Database,
    sqlite_url: str,
) -> None:
    settings: Settings = settings_factory(sqlite_url, otel_enabled=True)
    await deployment_keys.ensure_loaded(sqlite_db)
    traced = await connect(settings, address=temporal_address, role="test")
    assert client_tracing(traced) is not None
    tenant_id = f"t-{uuid.uuid4().hex[:8]}"
    by_sdk, by_us = message(tenant_id), message(tenant_id)
    sdk_id = conversation_workflow_id(tenant_id, Channel.WAHA, by_sdk.contact)
    our_id = conversation_workflow_id(tenant_id, Channel.WAHA, by_us.contact)

    with trace.get_tracer("test").start_as_current_span("webhook", kind=SpanKind.SERVER) as webhook:
        await traced.start_workflow(
            CONVERSATION_WORKFLOW,
            conversation_input(settings, by_sdk),
            id=sdk_id,
            task_queue=CONVERSATIONS,
            start_signal=INBOUND_SIGNAL,
            start_signal_args=[by_sdk],
        )
        delivered = await deliver_inbound(traced, settings, by_us)
        # Still the deterministic request id: a redelivery adds nothing to the run.
        again = await deliver_inbound(traced, settings, by_us)
    assert delivered.started and not again.started and again.run_id == delivered.run_id

    finished = list(spans.get_finished_spans())
    sdk_span, our_span = client_span(finished, sdk_id), client_span(finished, our_id)
    parent = webhook.get_span_context()
    for span in (sdk_span, our_span):
        assert span.kind == SpanKind.CLIENT
        assert span.parent is not None and span.parent.span_id == parent.span_id
        assert span.context is not None and span.context.trace_id == parent.trace_id
    assert set((sdk_span.attributes or {}).keys()) == set((our_span.attributes or {}).keys())

    sdk_events, our_events = await events(traced, sdk_id), await events(traced, our_id)
    for sdk_event, our_event, span_of_ours in (
        (sdk_events[0], our_events[0], our_span),
        (sdk_events[1], our_events[1], our_span),
    ):
        sdk_header, our_header = tracer_header(sdk_event), tracer_header(our_event)
        assert set(sdk_header) == set(our_header) == {HEADER}
        assert dict(our_header[HEADER].metadata) == dict(sdk_header[HEADER].metadata)
        sdk_carrier, our_carrier = carrier(sdk_header[HEADER]), carrier(our_header[HEADER])
        assert set(our_carrier) == set(sdk_carrier)
        # traceparent: version-trace id-parent span id-flags; the parent is each call's span.
        version, trace_id, span_id, flags = our_carrier["traceparent"].split("-")
        assert (version, flags) == tuple(sdk_carrier["traceparent"].split("-")[::3])
        assert int(trace_id, 16) == parent.trace_id
        assert span_of_ours.context is not None and int(span_id, 16) == span_of_ours.context.span_id
        assert sdk_carrier["traceparent"].split("-")[1] == trace_id
        assert sdk_span.context is not None
        assert int(sdk_carrier["traceparent"].split("-")[2], 16) == sdk_span.context.span_id


async def test_with_tracing_off_nothing_is_added(
    spans: InMemorySpanExporter,
    temporal_client: Client,
    settings_factory: Any,
    sqlite_db: Database,
    sqlite_url: str,
) -> None:
    """The test session's client has no TracingInterceptor (LEADFLOW_OTEL_ENABLED unset): even
    inside an active span, the request gets no header and no span is made."""
    settings: Settings = settings_factory(sqlite_url)
    await deployment_keys.ensure_loaded(sqlite_db)
    assert client_tracing(temporal_client) is None
    msg = message(f"t-{uuid.uuid4().hex[:8]}")
    workflow_id = conversation_workflow_id(msg.tenant_id, Channel.WAHA, msg.contact)
    with trace.get_tracer("test").start_as_current_span("webhook", kind=SpanKind.SERVER):
        assert (await deliver_inbound(temporal_client, settings, msg)).started
    started, signalled = await events(temporal_client, workflow_id)
    assert tracer_header(started) == {} and tracer_header(signalled) == {}
    assert named(list(spans.get_finished_spans()), SPAN) == []
