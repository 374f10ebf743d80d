"""api.conversations_gateway against the real Temporal dev server."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime

import pytest
from temporalio.client import Client
from temporalio.service import RPCError

from api.conversations_gateway import (
    deliver_inbound,
    inbound_request_id,
    signal_conversation,
)
from models import workflow_ids
from models.common import Channel
from models.conversation import ReleaseRequest, conversation_workflow_id
from models.messages import InboundMessage
from models.settings import Settings


@pytest.fixture(autouse=True)
def workflow_id_key() -> None:
    """These tests deliver without a database: hold an id key as a migrated process does."""
    if workflow_ids.held_key() is None:
        workflow_ids.set_key(secrets.token_bytes(workflow_ids.KEY_BYTES))


def message(tenant: str, provider_id: str, text: str = "hello") -> InboundMessage:
    return InboundMessage(
        tenant_id=tenant,
        channel=Channel.WAHA,
        contact="5511999999999@c.us",
        provider_message_id=provider_id,
        text=text,
        sent_at=datetime(2025, 1, 1, tzinfo=UTC),
    )


def test_request_id_is_deterministic() -> None:
    assert inbound_request_id("conv:a:waha:1", "m1") == inbound_request_id("conv:a:waha:1", "m1")
    assert inbound_request_id("conv:a:waha:1", "m1") != inbound_request_id("conv:a:waha:1", "m2")
    assert inbound_request_id("conv:a:waha:1", "m1") != inbound_request_id("conv:b:waha:1", "m1")


async def test_deliver_start_then_signal_in_order(temporal_client: Client) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    settings = Settings(debounce_seconds=1.5, conversation_history_limit=777)
    first = await deliver_inbound(temporal_client, settings, message(tenant, "m1", "one"))
    again = await deliver_inbound(temporal_client, settings, message(tenant, "m1", "one"))
    second = await deliver_inbound(temporal_client, settings, message(tenant, "m2", "two"))
    assert first.started is True
    assert again.started is False and second.started is False
    assert first.run_id == again.run_id == second.run_id

    handle = temporal_client.get_workflow_handle(first.workflow_id)
    history = await handle.fetch_history()
    start = history.events[0].workflow_execution_started_event_attributes
    (start_arg,) = await temporal_client.data_converter.decode(start.input.payloads)
    assert start_arg["debounce_seconds"] == 1.5
    assert start_arg["history_limit"] == 777
    texts = []
    for event in history.events:
        if event.HasField("workflow_execution_signaled_event_attributes"):
            attrs = event.workflow_execution_signaled_event_attributes
            (arg,) = await temporal_client.data_converter.decode(attrs.input.payloads)
            texts.append((attrs.signal_name, arg["text"]))
    assert texts == [("inbound", "one"), ("inbound", "two")]  # the redelivery added nothing


async def test_signal_conversation(temporal_client: Client) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    assert not await signal_conversation(
        temporal_client,
        conversation_workflow_id(tenant, "waha", "nobody"),
        "release",
        ReleaseRequest(),
    )
    delivered = await deliver_inbound(temporal_client, Settings(), message(tenant, "m1"))
    assert await signal_conversation(
        temporal_client, delivered.workflow_id, "release", ReleaseRequest(by="api")
    )
    history = await temporal_client.get_workflow_handle(delivered.workflow_id).fetch_history()
    names = [
        e.workflow_execution_signaled_event_attributes.signal_name
        for e in history.events
        if e.HasField("workflow_execution_signaled_event_attributes")
    ]
    assert names == ["inbound", "release"]


async def test_refused_delivery_raises_rpc_error(temporal_client: Client) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    refusing = await Client.connect(
        temporal_client.service_client.config.target_host,
        namespace="no-such-namespace",
        data_converter=temporal_client.data_converter,
    )
    with pytest.raises(RPCError):
        await deliver_inbound(refusing, Settings(), message(tenant, "m1"))
