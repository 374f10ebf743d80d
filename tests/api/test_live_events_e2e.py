"""End to end, the console's live inbox on the real stack (the API served by uvicorn, the worker
with every plugin, the dev server, a fake WAHA): a lead's WhatsApp message reaches
`/api/v1/events` (read as a stream with httpx) as the worker records it, the conversation's page
then shows the lead's line and the AI's reply delivered ("sent") through WAHA; another tenant's
stream gets none of it; a client that reconnects with Last-Event-ID is sent the handoff that
happened while it was away; pings keep the stream alive; bad input is refused."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from temporalio.client import Client

import api.routes.events as events_route
from models import users
from models.conversation import conversation_workflow_id
from models.settings import Settings
from models.task_queues import CONVERSATIONS
from models.tenant import TenantSettings
from tests.conftest import make_tenant
from tests.fakes.waha import FakeWaha
from tests.stack import LiveStack, live_stack

pytestmark = pytest.mark.timeout(240)

LEAD = "31655577788@c.us"
B_LEAD = "31655500011@c.us"
PASSWORD = "correct horse battery staple"
WAIT = 90.0  # generous: two cores shared with other test runs; never a timed assertion


@dataclass
class SseMessage:
    event: str | None = None
    id: str | None = None
    data: str = ""
    comment: str | None = None

    def json(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.data)
        return value


@dataclass
class SseReader:
    """Reads one `text/event-stream` response as the browser's EventSource would."""

    messages: asyncio.Queue[SseMessage] = field(default_factory=asyncio.Queue)
    status: int | None = None

    async def run(self, http: httpx.AsyncClient, headers: dict[str, str]) -> None:
        async with http.stream(
            "GET", "/api/v1/events", headers=headers, timeout=httpx.Timeout(30, read=None)
        ) as response:
            self.status = response.status_code
            assert response.headers["content-type"].startswith("text/event-stream")
            current = SseMessage()
            async for line in response.aiter_lines():
                if line == "":
                    if current.event or current.data:
                        await self.messages.put(current)
                    current = SseMessage()
                elif line.startswith(":"):
                    await self.messages.put(SseMessage(comment=line[1:].strip()))
                else:
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "event":
                        current.event = value
                    elif name == "id":
                        current.id = value
                    elif name == "data":
                        current.data = f"{current.data}\n{value}" if current.data else value

    async def next(self, predicate: Callable[[SseMessage], bool], what: str) -> SseMessage:
        """The next message satisfying `predicate` (others are skipped)."""

        async def find() -> SseMessage:
            while True:
                message = await self.messages.get()
                if predicate(message):
                    return message

        try:
            return await asyncio.wait_for(find(), timeout=WAIT)
        except TimeoutError as exc:
            raise AssertionError(f"no {what} on the stream within {WAIT}s") from exc

    async def conversation(self, what: str) -> SseMessage:
        return await self.next(lambda m: m.event == "conversation", what)


@contextlib.asynccontextmanager
async def listening(http: httpx.AsyncClient, headers: dict[str, str]) -> AsyncIterator[SseReader]:
    """A stream, open once the server said it is subscribed (its first comment)."""
    reader = SseReader()
    task = asyncio.create_task(reader.run(http, headers))
    try:
        connected = reader.next(lambda m: m.comment == "connected", "connected comment")
        done, _ = await asyncio.wait(
            {task, asyncio.ensure_future(connected)}, return_when=asyncio.FIRST_COMPLETED
        )
        if task in done:
            task.result()  # the stream ended (or failed) before it was connected
            raise AssertionError("the event stream ended before it was connected")
        yield reader
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await task


async def _webhook(stack: LiveStack, tenant_id: str, raw: bytes, headers: dict[str, str]) -> None:
    response = await stack.http.post(
        f"/webhooks/waha/{tenant_id}",
        content=raw,
        headers={**headers, "content-type": "application/json"},
    )
    assert response.status_code in (200, 202), response.text


async def test_a_lead_message_reaches_the_live_inbox_and_its_page(
    temporal_client: Client,
    settings_factory: Callable[..., Settings],
    sqlite_url: str,
    fake_waha: FakeWaha,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(events_route, "PING_SECONDS", 1)  # see a ping without waiting 15 s
    settings = settings_factory(sqlite_url, debounce_seconds=0.2)
    tenant = TenantSettings(playbook="car_dealership", waha=fake_waha.settings())
    async with live_stack(
        temporal_client, settings, tenant_settings=tenant, queues=[CONVERSATIONS]
    ) as stack:
        b_id, b_key = await make_tenant(stack.db)
        b_auth = {"Authorization": f"Bearer {b_key}"}
        conv_id = conversation_workflow_id(stack.tenant_id, "waha", LEAD)
        # A person signed in (a viewer): the browser's EventSource sends only the cookie.
        async with stack.db.session() as session:
            await users.create_user(
                session,
                tenant_id=stack.tenant_id,
                email="vera@example.nl",
                name="Vera",
                role="viewer",
                password=PASSWORD,
            )
        browser = httpx.AsyncClient(base_url=stack.api_url, timeout=30)
        signed_in = await browser.post(
            "/api/v1/auth/login",
            json={"tenant": stack.tenant_id, "email": "vera@example.nl", "password": PASSWORD},
        )
        assert signed_in.status_code == 200, signed_in.text
        async with (
            contextlib.aclosing(browser),
            listening(stack.http, stack.auth) as a,
            listening(stack.http, b_auth) as b,
            listening(browser, {}) as cookie,
        ):
            raw, headers = fake_waha.message_webhook(
                from_=LEAD, body="Hallo, is de Skoda Octavia nog te koop?"
            )
            await _webhook(stack, stack.tenant_id, raw, headers)

            # The worker (another process in production) records the turn: the stream says so.
            message = await a.next(
                lambda m: m.event == "conversation" and m.json()["kind"] == "message",
                "message event",
            )
            data = message.json()
            assert data["id"] == conv_id and data["needs_human"] is False
            assert data["stage"] and data["last_message_at"]
            replied = await a.next(
                lambda m: m.event == "conversation" and m.json()["kind"] == "reply_sent",
                "reply_sent event",
            )
            assert replied.json()["id"] == conv_id
            assert message.id and replied.id and int(replied.id) > int(message.id)
            assert fake_waha.sent, "WAHA took the reply before it was recorded"
            by_cookie = await cookie.next(
                lambda m: m.event == "conversation" and m.json()["kind"] == "reply_sent",
                "reply_sent event on the signed-in person's stream",
            )
            assert by_cookie.json()["id"] == conv_id

            view = await stack.http.get(f"/api/v1/conversations/{conv_id}/view", headers=stack.auth)
            assert view.status_code == 200, view.text
            lines = [(t["author"], t["delivery"]) for t in view.json()["transcript"]]
            assert lines[:2] == [("lead", None), ("ai", "sent")], lines
            assert view.json()["transcript"][0]["text"] == "Hallo, is de Skoda Octavia nog te koop?"
            assert view.json()["transcript"][1]["text"] == fake_waha.sent[0]["text"]
            assert view.json()["lead"]["phone"] == "+31655577788"
            assert view.json()["cost"]["calls"] >= 1  # the offline provider's calls, at 0 USD
            listed = await stack.http.get(
                "/api/v1/conversations", params={"q": "octavia"}, headers=stack.auth
            )
            assert [c["id"] for c in listed.json()["conversations"]] == [conv_id]

            # B: its own lead's message is the first conversation event B sees (A's events,
            # published before it, never reached B's stream).
            raw, headers = fake_waha.message_webhook(from_=B_LEAD, body="Goedemiddag")
            await _webhook(stack, b_id, raw, headers)
            b_first = await b.conversation("B's first event")
            assert b_first.json()["id"] == conversation_workflow_id(b_id, "waha", B_LEAD)
            await b.next(lambda m: (m.comment or "").startswith("ping"), "a ping comment")
            b_view = await stack.http.get(f"/api/v1/conversations/{conv_id}/view", headers=b_auth)
            assert b_view.status_code == 404
            last_id = replied.id

        # Away: an operator hands the conversation over meanwhile (recorded before we return).
        taken = await stack.http.post(
            f"/api/v1/conversations/{conv_id}/handoff", headers=stack.auth, json={"reason": "VIP"}
        )
        assert taken.status_code == 200, taken.text

        async def recorded() -> bool:
            r = await stack.http.get(
                "/api/v1/conversations", params={"needs_human": "true"}, headers=stack.auth
            )
            return [c["id"] for c in r.json()["conversations"]] == [conv_id]

        await stack.wait_for(recorded, timeout=WAIT, what="the handoff in the database")

        # Back with Last-Event-ID: the handoff is sent first, with ids after the one we had.
        async with listening(stack.http, {**stack.auth, "Last-Event-ID": last_id}) as again:
            handoff = await again.next(
                lambda m: m.event == "conversation" and m.json()["kind"] == "handoff",
                "replayed handoff",
            )
            assert handoff.json()["id"] == conv_id and handoff.json()["needs_human"] is True
            assert handoff.id and int(handoff.id) > int(last_id)


async def test_the_event_stream_refuses_bad_input(
    temporal_client: Client,
    settings_factory: Callable[..., Settings],
    sqlite_url: str,
) -> None:
    async with live_stack(
        temporal_client, settings_factory(sqlite_url), start_worker=False
    ) as stack:
        no_key = await stack.http.get("/api/v1/events")
        assert no_key.status_code == 401, no_key.text
        bad_key = await stack.http.get("/api/v1/events", headers={"Authorization": "Bearer nope"})
        assert bad_key.status_code == 401
        for bad in ("abc", "-1", "1" * 18, "12 34"):
            refused = await stack.http.get(
                "/api/v1/events", headers={**stack.auth, "Last-Event-ID": bad}
            )
            assert refused.status_code == 422, (bad, refused.text)
            assert refused.json()["detail"][0]["loc"] == ["header", "Last-Event-ID"]
        # An endless stream is no request/response operation: not in the OpenAPI document
        # (which the contract test fuzzes); the README documents it.
        document = (await stack.http.get("/openapi.json")).json()
        assert "/api/v1/events" not in document["paths"]
        assert "/api/v1/conversations/{conversation_id}/view" in document["paths"]
