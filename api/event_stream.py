"""Live events for the console (`GET /api/v1/events`): ONE poller per API process reads what
changed in the database and fans it out to that process's subscribers, each getting only its
tenant's events.

Why poll the database: the changes are written by workers (other processes, other machines) and
by the API; the database is the one place every process sees, and a turn's record is one
transaction that moves the conversation's `updated_at` with its messages and stage. So every
`POLL_SECONDS` the poller reads the conversations of the subscribed tenants whose `updated_at`
is past the tenant's watermark minus `LOOKBACK` (a transaction that committed late, a worker
whose clock is a little behind), compares them with what it saw, and names what happened
(models/live_events.py). A send's outbox status is settled before its line is recorded (send,
then record; a failed send is recorded as a system note), so the recorded line is the event.

Event ids are microseconds of the change (`updated_at`), made strictly increasing per process:
a client that reconnects with `Last-Event-ID` (to this process or any other) is sent the
conversations changed since that moment (minus `LOOKBACK`), read from the database. A duplicate
is harmless: an event says "this conversation changed, here is its state".

A subscriber's queue is bounded: a client too slow to take its events is dropped (its stream
ends; EventSource reconnects with its Last-Event-ID and catches up from the database), and the
poller never waits for anyone."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from models.db import Database
from models.live_events import (
    EPOCH,
    ConversationEvent,
    Seen,
    at_micros,
    event_of,
    kinds_at_resume,
    kinds_of,
    micros,
)
from models.repo import inbox_view as repo

log = logging.getLogger("leadflow.events")

POLL_SECONDS = 1.0
LOOKBACK = timedelta(seconds=10)
QUEUE_SIZE = 1000
"""Events waiting for one client; beyond, the client is dropped (and catches up on reconnect)."""
MAX_CHANGES = 2000
"""Changed conversations read per poll (the latest, when a burst changed more)."""
REPLAY_LIMIT = 500
"""Conversations sent to a client resuming with Last-Event-ID (the latest changed)."""
SEEN_SIZE = 50_000
"""Conversations whose last state the poller remembers (least recently changed forgotten)."""


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    data: ConversationEvent


@dataclass(eq=False)
class Subscriber:
    tenant_id: str
    queue: asyncio.Queue[Event | None]
    dropped: bool = False


@dataclass
class _Watch:
    """A subscribed tenant: its watermark (the latest `updated_at` seen) and the highest message
    id when it was first watched (lines above it are new to a conversation never seen)."""

    high: datetime
    floor: int
    subscribers: set[Subscriber] = field(default_factory=set)


class EventHub:
    def __init__(
        self,
        db: Database,
        *,
        poll_seconds: float = POLL_SECONDS,
        lookback: timedelta = LOOKBACK,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self.db = db
        self.poll_seconds = poll_seconds
        self.lookback = lookback
        self.queue_size = queue_size
        self._watches: dict[str, _Watch] = {}
        self._seen: OrderedDict[str, Seen] = OrderedDict()
        self._last_id = 0
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._stopped = False

    # ---- subscribers -------------------------------------------------------------------------

    async def subscribe(self, tenant_id: str) -> Subscriber:
        """Register a subscriber; from its return on, every change of the tenant reaches it.

        The first subscriber of a tenant reads the tenant's watermark and remembers the
        conversations changed within LOOKBACK of it (so they are not announced again)."""
        if self._stopped:
            raise RuntimeError("the event hub is stopped")
        subscriber = Subscriber(tenant_id, asyncio.Queue(self.queue_size))
        async with self._lock:  # not during a poll: the poll's watermarks stay consistent
            watch = self._watches.get(tenant_id)
            if watch is None:
                watch = await self._watch(tenant_id)
                self._watches[tenant_id] = watch
            watch.subscribers.add(subscriber)
        self._start()
        return subscriber

    async def _watch(self, tenant_id: str) -> _Watch:
        async with self.db.session() as session:
            latest = await repo.latest_update(session, tenant_id=tenant_id)
            floor = await repo.max_message_id(session)
            recent = (
                await repo.changed_since(
                    session, since={tenant_id: latest - self.lookback}, limit=MAX_CHANGES
                )
                if latest is not None
                else []
            )
        for row in recent:
            self._remember(row)
        return _Watch(high=latest or EPOCH, floor=floor)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        watch = self._watches.get(subscriber.tenant_id)
        if watch is None:
            return
        watch.subscribers.discard(subscriber)
        if not watch.subscribers:
            # Nobody of the tenant listens here: stop reading its changes. A later subscriber
            # starts from the then current state (and its Last-Event-ID replay).
            del self._watches[subscriber.tenant_id]

    def _drop(self, subscriber: Subscriber) -> None:
        """End a subscriber's stream: too slow (its queue is full), or the hub stops."""
        subscriber.dropped = True
        self.unsubscribe(subscriber)
        queue = subscriber.queue
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(None)

    def subscribers(self, tenant_id: str) -> int:
        watch = self._watches.get(tenant_id)
        return len(watch.subscribers) if watch else 0

    # ---- the poller -------------------------------------------------------------------------

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="live-events-poller")

    async def stop(self) -> None:
        """At the app's shutdown: the poller ends, every stream ends."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for watch in list(self._watches.values()):
            for subscriber in list(watch.subscribers):
                self._drop(subscriber)

    async def _run(self) -> None:
        failing = False
        while True:
            try:
                await self.poll_once()
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception:
                if not failing:  # once per outage, not every second
                    log.exception("live events: polling the database failed; retrying")
                failing = True
            await asyncio.sleep(self.poll_seconds)

    async def poll_once(self) -> int:
        """Read what changed for the subscribed tenants and publish it; returns how many
        events were published."""
        async with self._lock:
            if not self._watches:
                return 0
            since = {t: w.high - self.lookback for t, w in self._watches.items()}
            floors = {t: w.floor for t, w in self._watches.items()}
            async with self.db.session() as session:
                rows = await repo.changed_since(session, since=since, limit=MAX_CHANGES)
                changed = [(row, self._seen.get(row.id)) for row in rows]
                changed = [(row, seen) for row, seen in changed if not (seen and seen.same(row))]
                after: dict[str, int] = {}
                for row, seen in changed:
                    known = seen.last_message_id if seen else floors.get(row.tenant_id, 0)
                    if row.last_message_id is not None and row.last_message_id > (known or 0):
                        after[row.id] = known or 0
                roles = await repo.new_message_roles(session, after=after) if after else {}
            published = 0
            for row, seen in changed:
                before = seen or Seen(None, None, floors.get(row.tenant_id))
                kinds = kinds_of(row, before, roles.get(row.id, ()))
                self._remember(row)
                watch = self._watches.get(row.tenant_id)
                if watch is not None and row.updated_at > watch.high:
                    watch.high = row.updated_at
                for kind in kinds:
                    published += self._publish(
                        row.tenant_id, self._event(row.updated_at, kind, row)
                    )
            return published

    def _remember(self, row: repo.ChangeRow) -> None:
        self._seen[row.id] = Seen.of(row)
        self._seen.move_to_end(row.id)
        while len(self._seen) > SEEN_SIZE:
            self._seen.popitem(last=False)

    def _event(self, at: datetime, kind: str, row: repo.ChangeRow) -> Event:
        self._last_id = max(self._last_id + 1, micros(at))
        return Event(self._last_id, event_of(row, kind))  # type: ignore[arg-type]

    def _publish(self, tenant_id: str, event: Event) -> int:
        watch = self._watches.get(tenant_id)
        if watch is None:
            return 0
        for subscriber in list(watch.subscribers):
            try:
                subscriber.queue.put_nowait(event)
            except asyncio.QueueFull:
                log.info("live events: a %s client is too slow; dropped", tenant_id)
                self._drop(subscriber)
        return 1

    # ---- resuming ---------------------------------------------------------------------------

    async def replay(self, tenant_id: str, *, after: int) -> list[Event]:
        """What a client that last saw event `after` missed: an event for each of the tenant's
        conversations changed since then (minus LOOKBACK), oldest first, at most REPLAY_LIMIT
        (the latest). Ids are the changes' times; the stream makes them increase."""
        since = at_micros(after)
        async with self.db.session() as session:
            rows = await repo.changed_since(
                session, since={tenant_id: since - self.lookback}, limit=REPLAY_LIMIT
            )
        return [
            Event(micros(row.updated_at), event_of(row, kind))
            for row in rows
            for kind in kinds_at_resume(row, since=since, margin=self.lookback)
        ]
