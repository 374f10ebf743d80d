"""A conversation started before hashed workflow ids (`conv:{tenant}:waha:{phone}`) keeps its id:
an API that starts while it runs routes the lead's next webhook message to it, on the real
stack (API, worker, Temporal dev server, fake WAHA). New contacts get hashed ids."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.service import RPCError

from api.app import create_app
from api.conversations_gateway import (
    CONVERSATION_WORKFLOW,
    INBOUND_SIGNAL,
    conversation_input,
    conversation_search_attributes,
)
from models import workflow_ids
from models.common import Channel
from models.conversation import conversation_workflow_id
from models.messages import InboundMessage
from models.settings import Settings
from models.task_queues import CONVERSATIONS
from models.tenant import TenantSettings
from tests.fakes.waha import FakeWaha
from tests.live_stack import serve_app
from tests.stack import LiveStack, live_stack

LEAD = "31612345678@c.us"
NEW_LEAD = "31687654321@c.us"


@pytest.fixture
def routes() -> Iterator[None]:
    """The process's legacy routes as they were before the test (the API's start replaces them)."""
    before = workflow_ids.legacy_routes()
    try:
        yield
    finally:
        workflow_ids.set_legacy_routes(before)


async def _detail(http: httpx.AsyncClient, stack: LiveStack, conv_id: str, n: int) -> Any:
    response = await http.get(f"/api/v1/conversations/{conv_id}", headers=stack.auth)
    if response.status_code != 200:
        return None
    body = response.json()
    return body if len(body["transcript"]) >= n else None


async def _post(http: httpx.AsyncClient, stack: LiveStack, fake: FakeWaha, **kw: Any) -> str:
    raw, headers = fake.message_webhook(**kw)
    response = await http.post(
        f"/webhooks/waha/{stack.tenant_id}",
        content=raw,
        headers={**headers, "content-type": "application/json"},
    )
    assert response.status_code in (200, 202), response.text
    (delivered,) = response.json()["delivered"]
    return str(delivered["workflow_id"])


async def test_a_legacy_conversation_receives_the_next_message(
    temporal_client: Client,
    settings_factory: Any,
    sqlite_url: str,
    fake_waha: FakeWaha,
    routes: None,
) -> None:
    settings: Settings = settings_factory(sqlite_url, debounce_seconds=0.3)
    async with live_stack(
        temporal_client,
        settings,
        tenant_settings=TenantSettings(playbook="car_dealership", waha=fake_waha.settings()),
        queues=[CONVERSATIONS],
    ) as stack:
        # The conversation as the API before hashed ids started it: signal-with-start under
        # the contact's own id.
        legacy = f"conv:{stack.tenant_id}:waha:{LEAD}"
        stack.started.append(legacy)
        first = InboundMessage(
            tenant_id=stack.tenant_id,
            channel=Channel.WAHA,
            contact=LEAD,
            provider_message_id="false_31612345678@c.us_LEGACY1",
            text="Hi, I'm looking for a Volkswagen Golf",
            sent_at=datetime.now(UTC),
        )
        await temporal_client.start_workflow(
            CONVERSATION_WORKFLOW,
            conversation_input(settings, first),
            id=legacy,
            task_queue=CONVERSATIONS,
            start_signal=INBOUND_SIGNAL,
            start_signal_args=[first],
            search_attributes=conversation_search_attributes(first),
        )
        await stack.wait_for(
            lambda: _detail(stack.http, stack, legacy, 2), what="the legacy conversation's reply"
        )

        # The API that was running when hashed ids came (its start found no legacy row yet)
        # would send the lead elsewhere; a restarted API finds the open legacy conversation.
        assert conversation_workflow_id(stack.tenant_id, Channel.WAHA, LEAD) != legacy
        app = create_app(settings)
        async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
            app.state.leadflow.temporal = temporal_client
            assert conversation_workflow_id(stack.tenant_id, Channel.WAHA, LEAD) == legacy
            delivered = await _post(
                http, stack, fake_waha, from_=LEAD, body="Is it available as a hybrid?"
            )
            assert delivered == legacy
            detail = await stack.wait_for(
                lambda: _detail(http, stack, legacy, 4), what="the second turn, same conversation"
            )
            assert [m["role"] for m in detail["transcript"]] == ["lead", "ai", "lead", "ai"]
            assert detail["transcript"][2]["text"] == "Is it available as a hybrid?"
            # Operator commands take either form of id.
            handed = await http.post(
                f"/api/v1/conversations/{legacy}/handoff", json={}, headers=stack.auth
            )
            assert handed.status_code == 200, handed.text
            assert (handed.json()["id"], handed.json()["stage"]) == (legacy, "human_handoff")
            # Nothing started under the lead's hashed id.
            key = workflow_ids.held_key()
            assert key is not None
            hashed = workflow_ids.hashed_conversation_id(stack.tenant_id, Channel.WAHA, LEAD, key)
            with pytest.raises(RPCError):
                await temporal_client.get_workflow_handle(hashed).describe()

            # A new contact's conversation has a hashed id: no digit of the phone in it.
            fresh = await _post(http, stack, fake_waha, from_=NEW_LEAD, body="Hallo")
            stack.started.append(fresh)
            assert fresh.startswith(f"conv:{stack.tenant_id}:waha:")
            assert workflow_ids.is_hashed(fresh, stack.tenant_id, Channel.WAHA)
            assert "31687654321" not in fresh
            await stack.wait_for(
                lambda: _detail(http, stack, fresh, 2), what="the new contact's reply"
            )
            description = await temporal_client.get_workflow_handle(fresh).describe()
            assert description.id == fresh
            closed = await http.post(
                f"/api/v1/conversations/{fresh}/close", json={"reason": "done"}, headers=stack.auth
            )
            assert closed.status_code == 200, closed.text
            assert (closed.json()["id"], closed.json()["stage"]) == (fresh, "closed")
            with contextlib.suppress(RPCError):
                await temporal_client.get_workflow_handle(legacy).terminate("test over")
