"""`GET /api/v1/events`: the console's live events over Server-Sent Events (sse-starlette).

One poller per API process (api/event_stream.py), built on the first subscriber and stopped
with the app (this router's lifespan, merged into the app's by FastAPI)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Header, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.deps import AppState, CurrentTenant, Session
from api.event_stream import Event, EventHub

PING_SECONDS = 15
"""A comment line this often: proxies keep the connection, clients see it is alive."""
SEND_TIMEOUT_SECONDS = 30.0
"""A send that takes longer (a client that stopped reading) ends the stream."""
RETRY_MILLISECONDS = 2000
"""EventSource's reconnection delay, sent with the first line."""


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    try:
        yield
    finally:
        hub: EventHub | None = getattr(app.state, "leadflow_events", None)
        if hub is not None:
            await hub.stop()


router = APIRouter(prefix="/api/v1", tags=["events"], lifespan=_lifespan)


def event_hub(request: Request) -> EventHub:
    """The process's hub, built on first use (on the app's database)."""
    app_state = request.app.state
    hub: EventHub | None = getattr(app_state, "leadflow_events", None)
    if hub is None:
        state: AppState = app_state.leadflow
        hub = EventHub(state.db)
        app_state.leadflow_events = hub
    return hub


def _sse(event: Event, event_id: int) -> ServerSentEvent:
    return ServerSentEvent(
        event="conversation", id=str(event_id), data=event.data.model_dump_json()
    )


async def _stream(hub: EventHub, tenant_id: str, after: int | None) -> AsyncIterator[Any]:
    subscriber = await hub.subscribe(tenant_id)
    try:
        # A comment first: the client knows it is subscribed (nothing after this is missed).
        yield ServerSentEvent(comment="connected", retry=RETRY_MILLISECONDS)
        last = after or 0
        if after is not None:
            for event in await hub.replay(tenant_id, after=after):
                last = max(event.id, last + 1)
                yield _sse(event, last)
        while True:
            live = await subscriber.queue.get()
            if live is None:  # too slow, or the API stops: the client reconnects
                return
            last = max(live.id, last + 1)  # ids only increase on this stream
            yield _sse(live, last)
    finally:
        hub.unsubscribe(subscriber)


# Not in the OpenAPI document: an endless stream is no request/response operation, and the
# schemathesis contract test (tests/api/test_api_contract.py) would wait on it until its
# timeout. README "Inbox API and live events" documents it; its auth, bad Last-Event-ID (422)
# and resume are tested in tests/api/test_live_events_e2e.py.
@router.get(
    "/events",
    include_in_schema=False,
    response_class=EventSourceResponse,
    responses={
        200: {
            "description": "An endless `text/event-stream`: `conversation` events (data: "
            '`{"id","kind","stage","needs_human","last_message_at"}`) and a `: ping` comment '
            f"every {PING_SECONDS} s.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    },
)
async def events(
    request: Request,
    tenant: CurrentTenant,
    session: Session,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            pattern=r"^\d{1,17}$",
            description="Resume: the conversations changed since that event are sent first.",
        ),
    ] = None,
) -> EventSourceResponse:
    """The tenant's live events: a new message, a reply sent, a stage change, a handoff, a
    close — as they are recorded by any worker, within about a second. Reconnecting with
    `Last-Event-ID` (EventSource does) sends what changed meanwhile."""
    # The stream lasts hours: give the request's database connection back now.
    await session.close()
    after = int(last_event_id) if last_event_id is not None else None
    return EventSourceResponse(
        _stream(event_hub(request), tenant.id, after),
        ping=PING_SECONDS,
        send_timeout=SEND_TIMEOUT_SECONDS,
    )
