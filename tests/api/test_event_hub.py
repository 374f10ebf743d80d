"""The live events' poller (api/event_stream.py) on SQLite and PostgreSQL, driven one poll at a
time over rows written by the record step: what it names (message, reply sent, handoff,
stage, closed), that each tenant gets only its own events, that a client too slow to take its
events is dropped while the others go on, and what a client resuming with Last-Event-ID is
sent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import inspect
from starlette.requests import Request

from api.app import create_app
from api.event_stream import Event, EventHub, Subscriber
from api.routes.events import event_hub
from models.common import Channel, Role, Stage
from models.conversation import RecordTurnInput, conversation_workflow_id
from models.db import Database
from models.messages import TranscriptEntry
from models.repo import conversations as conversation_repo
from models.settings import Settings
from models.tables import utcnow
from tests.conftest import make_tenant

pytestmark = pytest.mark.timeout(120)


def _turn(tenant_id: str, contact: str, key: str, **values: Any) -> RecordTurnInput:
    return RecordTurnInput(
        conversation_id=conversation_workflow_id(tenant_id, "waha", contact),
        tenant_id=tenant_id,
        channel=Channel.WAHA,
        contact=contact,
        lead_id=f"lead-{tenant_id}-{contact}",
        turn_key=key,
        **{"stage": Stage.QUALIFYING, **values},
    )


def _line(role: Role, text: str) -> TranscriptEntry:
    return TranscriptEntry(role=role, text=text, at=utcnow())


async def _record(db: Database, turn: RecordTurnInput) -> None:
    async with db.session() as session:
        await conversation_repo.record_turn(session, record=turn)


def _drain(subscriber: Subscriber) -> list[Event]:
    events: list[Event] = []
    while not subscriber.queue.empty():
        event = subscriber.queue.get_nowait()
        assert event is not None
        events.append(event)
    return events


def _kinds(events: list[Event]) -> list[tuple[str, str]]:
    return [(e.data.id, e.data.kind) for e in events]


async def test_the_poller_names_changes_and_keeps_tenants_apart(db: Database) -> None:
    a, _ = await make_tenant(db)
    b, _ = await make_tenant(db)
    # A conversation from before anyone listened: not announced when the first one subscribes.
    await _record(db, _turn(a, "31600000000@c.us", "old", entries=(_line(Role.LEAD, "oud"),)))
    hub = EventHub(db)
    try:
        a_one, a_two, b_one = (
            await hub.subscribe(a),
            await hub.subscribe(a),
            await hub.subscribe(b),
        )
        assert await hub.poll_once() == 0

        first = _turn(
            a,
            "31611111111@c.us",
            "turn-1",
            entries=(_line(Role.LEAD, "Hoi"), _line(Role.AI, "Welkom!")),
        )
        await _record(db, first)
        conv = first.conversation_id
        assert await hub.poll_once() == 2
        events = _drain(a_one)
        assert _kinds(events) == [(conv, "message"), (conv, "reply_sent")]
        assert _kinds(_drain(a_two)) == _kinds(events)  # every subscriber of the tenant
        assert _drain(b_one) == []  # nothing of A's
        data = events[0].data
        assert (data.stage, data.needs_human) == ("qualifying", False)
        assert data.last_message_at is not None
        assert events[0].id < events[1].id
        assert await hub.poll_once() == 0  # seen: not again

        # A handoff with a line recorded silently; then a close; then a score-only change.
        await _record(
            db,
            first.model_copy(
                update={
                    "turn_key": "silent:1",
                    "entries": (_line(Role.LEAD, "Bel me"),),
                    "stage": Stage.HUMAN_HANDOFF,
                }
            ),
        )
        await hub.poll_once()
        handoff = _drain(a_one)
        assert _kinds(handoff) == [(conv, "message"), (conv, "handoff")]
        assert handoff[-1].data.needs_human is True
        await _record(
            db, first.model_copy(update={"turn_key": "close", "entries": (), "stage": Stage.CLOSED})
        )
        await hub.poll_once()
        assert _kinds(_drain(a_one)) == [(conv, "closed")]
        await _record(
            db,
            first.model_copy(update={"turn_key": "later", "entries": (), "stage": Stage.CLOSED}),
        )
        await hub.poll_once()
        assert _kinds(_drain(a_one)) == [(conv, "stage")]

        assert [kind for _, kind in _kinds(_drain(a_two))] == [
            "message",
            "handoff",
            "closed",
            "stage",
        ]

        # B's own change reaches B alone; ids keep increasing across tenants.
        last_a = handoff[-1].id
        await _record(db, _turn(b, "31622222222@c.us", "turn-1", entries=(_line(Role.LEAD, "B"),)))
        await hub.poll_once()
        (b_event,) = _drain(b_one)
        assert b_event.data.id == conversation_workflow_id(b, "waha", "31622222222@c.us")
        assert b_event.id > last_a
        assert _drain(a_one) == [] and _drain(a_two) == []

        # A system note written outside a turn (do-not-contact) moves the conversation too.
        async with db.session() as session:
            await conversation_repo.add_system_entry(
                session,
                tenant_id=a,
                conversation_ids=[conv],
                text="Do-not-contact set by an operator",
                dedupe_key="do-not-contact:v2",
                at=utcnow(),
            )
            await session.commit()
        await hub.poll_once()
        assert _kinds(_drain(a_one)) == [(conv, "message")]

        # Everyone of A gone: A's changes are no longer read.
        hub.unsubscribe(a_one)
        hub.unsubscribe(a_two)
        assert hub.subscribers(a) == 0 and hub.subscribers(b) == 1
    finally:
        await hub.stop()
    assert b_one.dropped and b_one.queue.get_nowait() is None  # the stop ends every stream


async def test_a_slow_client_is_dropped_and_the_others_go_on(db: Database) -> None:
    tenant, _ = await make_tenant(db)
    hub = EventHub(db, queue_size=2)
    try:
        slow, fast = await hub.subscribe(tenant), await hub.subscribe(tenant)
        got: list[Event] = []
        for n in range(3):
            contact = f"3161000000{n}@c.us"
            await _record(db, _turn(tenant, contact, "t", entries=(_line(Role.LEAD, "hoi"),)))
            await hub.poll_once()
            got += _drain(fast)  # the fast one reads after every poll; the slow one never
        assert len(got) == 3
        assert slow.dropped and not fast.dropped
        assert slow.queue.qsize() == 1 and slow.queue.get_nowait() is None  # its stream ends
        assert hub.subscribers(tenant) == 1
    finally:
        await hub.stop()


async def test_a_resuming_client_gets_what_changed_since_its_last_event(db: Database) -> None:
    tenant, _ = await make_tenant(db)
    other, _ = await make_tenant(db)
    hub = EventHub(db)
    try:
        listener = await hub.subscribe(tenant)
        first = _turn(tenant, "31611111111@c.us", "t1", entries=(_line(Role.LEAD, "Hoi"),))
        await _record(db, first)
        await hub.poll_once()
        (seen,) = _drain(listener)
        hub.unsubscribe(listener)  # the client goes away

        # Meanwhile: a reply in the first conversation, a handoff in a second, and another
        # tenant's change.
        await _record(
            db,
            first.model_copy(update={"turn_key": "t2", "entries": (_line(Role.AI, "Welkom"),)}),
        )
        second = _turn(
            tenant,
            "31622222222@c.us",
            "t1",
            entries=(_line(Role.LEAD, "Mens graag"),),
            stage=Stage.HUMAN_HANDOFF,
        )
        await _record(db, second)
        await _record(db, _turn(other, "31633333333@c.us", "t1", entries=(_line(Role.LEAD, "x"),)))

        replay = await hub.replay(tenant, after=seen.id)
        assert _kinds(replay) == [
            (first.conversation_id, "reply_sent"),
            (second.conversation_id, "message"),
            (second.conversation_id, "handoff"),
        ]
        assert replay[-1].data.needs_human is True
        # From long ago: every conversation of the tenant, none of the other's.
        assert {e.data.id for e in await hub.replay(tenant, after=0)} == {
            first.conversation_id,
            second.conversation_id,
        }
    finally:
        await hub.stop()


async def test_the_poller_runs_on_its_own_once_someone_subscribes(db: Database) -> None:
    """Started lazily by the first subscriber, it polls by itself (no poll_once here)."""
    tenant, _ = await make_tenant(db)
    hub = EventHub(db, poll_seconds=0.1)
    try:
        listener = await hub.subscribe(tenant)
        turn = _turn(tenant, "31611111111@c.us", "t1", entries=(_line(Role.LEAD, "Hoi"),))
        await _record(db, turn)
        event = await asyncio.wait_for(listener.queue.get(), timeout=60)
        assert event is not None and (event.data.id, event.data.kind) == (
            turn.conversation_id,
            "message",
        )
    finally:
        await hub.stop()


async def test_the_app_stops_its_poller_at_shutdown(
    sqlite_db: Database, sqlite_url: str, settings_factory: Callable[..., Settings]
) -> None:
    """One hub per app, built on first use; the app's lifespan (the events router's, merged
    by FastAPI) stops it: the poller ends and every open stream ends with it."""
    tenant, _ = await make_tenant(sqlite_db)
    app = create_app(settings_factory(sqlite_url))
    async with app.router.lifespan_context(app):
        request = Request({"type": "http", "app": app})
        hub = event_hub(request)
        assert event_hub(request) is hub
        listener = await hub.subscribe(tenant)
        assert hub.subscribers(tenant) == 1
    assert listener.dropped and listener.queue.get_nowait() is None
    with pytest.raises(RuntimeError, match="stopped"):
        await hub.subscribe(tenant)


async def test_the_polled_range_has_its_index(db: Database) -> None:
    """Migration 0017: the poller's and the inbox's (tenant_id, updated_at) ranges."""
    async with db.engine.connect() as connection:
        indexes = await connection.run_sync(
            lambda sync: {
                index["name"]: index["column_names"]
                for index in inspect(sync).get_indexes("conversations")
            }
        )
    assert indexes["ix_conversations_tenant_updated"] == ["tenant_id", "updated_at"]
