"""Operator commands through the API, against the real stack (dev server, worker, offline
provider, outbox channel): each waits for the conversation's Update and answers with the
resulting stage (200), the validator's reason (409), or says that no conversation runs (404);
an Idempotency-Key makes a retried request act once; bad keys are 422."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import Worker

from api.app import create_app
from api.conversations_gateway import CommandPending, command_conversation
from models.common import Channel
from models.conversation import (
    UPDATE_CLOSE,
    UPDATE_HANDOFF,
    CloseRequest,
    ConversationInput,
    HandoffRequest,
    conversation_workflow_id,
)
from models.db import Database
from models.messages import InboundMessage
from models.settings import Settings
from tests.conftest import make_tenant
from tests.stack import LiveStack, live_stack
from tests.workflows.test_conversation_updates import Scripted
from workers.worker import workflow_runner
from workflows.conversation import ConversationWorkflow

pytestmark = pytest.mark.timeout(180)

WAHA_MESSAGE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "waha-message.json"
LEAD = "31612345678@c.us"  # the example's sender


async def _first_turn(stack: LiveStack) -> str:
    posted = await stack.http.post(
        f"/webhooks/waha/{stack.tenant_id}",
        content=WAHA_MESSAGE.read_bytes(),
        headers={"content-type": "application/json"},
    )
    assert posted.status_code in (200, 202), posted.text
    conv_id = conversation_workflow_id(stack.tenant_id, "waha", LEAD)

    async def answered() -> bool:
        r = await stack.http.get(f"/api/v1/conversations/{conv_id}", headers=stack.auth)
        return r.status_code == 200 and r.json()["turns"] >= 1

    await stack.wait_for(answered, what="the first turn")
    return conv_id


async def _outbox(stack: LiveStack, conv_id: str) -> list[str]:
    r = await stack.http.get(
        "/api/v1/outbox", params={"conversation_id": conv_id}, headers=stack.auth
    )
    return [row["text"] for row in r.json()]


async def test_commands_answer_with_the_resulting_stage_and_retries_act_once(
    temporal_client: Client, settings_factory: Callable[..., Settings], sqlite_url: str
) -> None:
    async with live_stack(temporal_client, settings_factory(sqlite_url)) as stack:
        conv_id = await _first_turn(stack)
        url = f"/api/v1/conversations/{conv_id}"

        # Nothing to release yet: refused, with the reason.
        refused = await stack.http.post(f"{url}/release", headers=stack.auth)
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"] == "release refused"
        assert "not handed to a human" in refused.json()["detail"]

        key = {**stack.auth, "Idempotency-Key": "handoff-7f3a"}
        taken = await stack.http.post(f"{url}/handoff", headers=key, json={"reason": "VIP"})
        assert taken.status_code == 200, taken.text
        body = taken.json()
        assert (body["status"], body["stage"], body["command"]) == (
            "done",
            "human_handoff",
            "handoff",
        )
        assert body["handoff"]["reason"] == "VIP" and body["handoff"]["human_replied"]
        assert body["request_id"] == "handoff:handoff-7f3a"
        again = await stack.http.post(f"{url}/handoff", headers=key, json={"reason": "VIP"})
        assert again.status_code == 200 and again.json() == body, "the retry acted once"
        other = await stack.http.post(f"{url}/handoff", headers=stack.auth, json={"reason": "me"})
        assert other.status_code == 409
        assert other.json()["detail"] == "already handed to a human: VIP"

        # An operator message is answered once sent and recorded; its retry sends nothing.
        before = await _outbox(stack, conv_id)
        said = await stack.http.post(
            f"{url}/messages",
            headers={**stack.auth, "Idempotency-Key": "msg-1"},
            json={"text": "Dag Jan, Sanne hier."},
        )
        assert said.status_code == 200, said.text
        assert said.json()["sent"] is True, "sent (to the outbox: no channel configured)"
        # The same key in the body: the same command.
        retried = await stack.http.post(
            f"{url}/messages",
            headers=stack.auth,
            json={"text": "Dag Jan, Sanne hier.", "request_id": "msg-1"},
        )
        assert retried.status_code == 200 and retried.json() == said.json()
        assert sorted(await _outbox(stack, conv_id)) == sorted([*before, "Dag Jan, Sanne hier."])

        released = await stack.http.post(f"{url}/release", headers=stack.auth)
        assert released.status_code == 200, released.text
        assert released.json()["stage"] == "qualifying" and released.json()["handoff"] is None

        close_key = {**stack.auth, "Idempotency-Key": "close-1"}
        closed = await stack.http.post(f"{url}/close", headers=close_key, json={"reason": "sold"})
        assert closed.status_code == 200, closed.text
        assert closed.json()["stage"] == "closed"
        detail = await stack.http.get(url, headers=stack.auth)
        assert detail.json()["stage"] == "closed"
        # The run is over: a new command finds nothing running; the close's retry its answer.
        late = await stack.http.post(f"{url}/messages", headers=stack.auth, json={"text": "Hi?"})
        assert late.status_code == 404, late.text
        assert late.json()["error"] == "conversation is not running"
        again_closed = await stack.http.post(
            f"{url}/close", headers=close_key, json={"reason": "sold"}
        )
        assert again_closed.status_code == 200 and again_closed.json() == closed.json()


async def test_commands_to_unknown_conversations_and_bad_keys_start_nothing(
    temporal_client: Client, settings_factory: Callable[..., Settings], sqlite_url: str
) -> None:
    async with live_stack(temporal_client, settings_factory(sqlite_url)) as stack:
        conv_id = await _first_turn(stack)
        url = f"/api/v1/conversations/{conv_id}"
        _, other_key = await make_tenant(stack.db)
        idle = conversation_workflow_id(stack.tenant_id, "waha", "31699999999@c.us")
        for command, body in [
            ("handoff", {"reason": "mine now"}),
            ("release", None),
            ("messages", {"text": "Hello from someone else"}),
            ("close", {"reason": "mine"}),
        ]:
            foreign = await stack.http.post(
                f"{url}/{command}", headers={"Authorization": f"Bearer {other_key}"}, json=body
            )
            assert foreign.status_code == 404, (command, foreign.text)
            assert foreign.json()["error"] == "conversation not found"
            nothing = await stack.http.post(
                f"/api/v1/conversations/{idle}/{command}", headers=stack.auth, json=body
            )
            assert nothing.status_code == 404, (command, nothing.text)
            assert nothing.json()["error"] == "conversation is not running"

        bad: list[tuple[dict[str, str], dict[str, Any]]] = [
            ({"Idempotency-Key": "k" * 129}, {"text": "hi"}),
            ({"Idempotency-Key": "a\tb"}, {"text": "hi"}),
            ({}, {"text": "hi", "request_id": "x\u0007y"}),
            ({"Idempotency-Key": "one"}, {"text": "hi", "request_id": "two"}),
            ({}, {"text": ""}),
            ({}, {"text": "x" * 4097}),
        ]
        for headers, body in bad:
            response = await stack.http.post(
                f"{url}/messages", headers={**stack.auth, **headers}, json=body
            )
            assert response.status_code == 422, (headers, body, response.text)
        assert all("hi" != text for text in await _outbox(stack, conv_id)), "nothing was sent"
        blank = await stack.http.post(f"{url}/handoff", headers=stack.auth, json={"reason": ""})
        assert blank.status_code == 422
        state = await stack.http.get(url, headers=stack.auth)
        assert state.json()["stage"] != "human_handoff"


async def test_a_command_while_temporal_is_unreachable_is_503(
    sqlite_db: Database, sqlite_url: str, settings_factory: Callable[..., Settings]
) -> None:
    tenant_id, key = await make_tenant(sqlite_db)
    app = create_app(settings_factory(sqlite_url, temporal_address="127.0.0.1:1"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://leadflow.test") as http:
            conv_id = conversation_workflow_id(tenant_id, "waha", LEAD)
            response = await http.post(
                f"/api/v1/conversations/{conv_id}/handoff",
                headers={"Authorization": f"Bearer {key}"},
                json={"reason": "VIP"},
            )
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "Temporal is unavailable"


async def test_the_gateway_says_pending_when_the_answer_takes_longer_than_the_wait(
    temporal_client: Client,
) -> None:
    """Not taken in time (no worker): pending, not accepted (the API's 503). Accepted but still
    running (a close waiting for a turn to stop): pending, accepted (the API's 202)."""
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    workflow_id = conversation_workflow_id(tenant, "waha", LEAD)
    idle_queue = f"tq-{uuid.uuid4().hex[:8]}"
    start = ConversationInput.new(
        tenant_id=tenant, channel=Channel.WAHA, contact=LEAD, debounce_seconds=0.1
    )
    handle = await temporal_client.start_workflow(
        "ConversationWorkflow", start, id=workflow_id, task_queue=idle_queue
    )
    try:
        with pytest.raises(CommandPending) as untaken:
            await command_conversation(
                temporal_client,
                workflow_id,
                UPDATE_HANDOFF,
                HandoffRequest(),
                update_id="handoff:slow",
                wait=timedelta(seconds=1),
            )
        assert not untaken.value.accepted
    finally:
        await handle.terminate("test over")

    stubs = Scripted(gate=asyncio.Event())
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    async with Worker(
        temporal_client,
        task_queue=queue,
        workflows=[ConversationWorkflow],
        activities=stubs.activities(),
        workflow_runner=workflow_runner(),
    ):
        first = InboundMessage(
            tenant_id=tenant,
            channel=Channel.WAHA,
            contact=LEAD,
            provider_message_id="m1",
            text="Hello",
            sent_at=datetime.now(UTC),
        )
        handle = await temporal_client.start_workflow(
            "ConversationWorkflow",
            start.model_copy(update={"search_attributes": False}),
            id=workflow_id,
            task_queue=queue,
            start_signal="inbound",
            start_signal_args=[first],
        )
        try:
            await asyncio.wait_for(stubs.entered.wait(), timeout=30)
            with pytest.raises(CommandPending) as running:
                await command_conversation(
                    temporal_client,
                    workflow_id,
                    UPDATE_CLOSE,
                    CloseRequest(reason="sold"),
                    update_id="close:slow",
                    wait=timedelta(seconds=1),
                )
            assert running.value.accepted
            assert stubs.gate is not None
            stubs.gate.set()
            # The retry with the same id gets the outcome.
            closed = await command_conversation(
                temporal_client,
                workflow_id,
                UPDATE_CLOSE,
                CloseRequest(reason="sold"),
                update_id="close:slow",
            )
            assert closed.stage == "closed" and stubs.sent == []
        finally:
            if stubs.gate is not None:
                stubs.gate.set()
            with contextlib.suppress(RPCError):
                await handle.terminate("test over")
