"""Deliver the webhook inbox to Temporal (models/repo/inbox.py).

A webhook stores its messages, then gives Temporal `webhook_ack_budget_seconds` to take them:
in time, the answer says what was delivered; too slow (a burst, a restart), the answer is
"queued" and the delivery goes on here. Rows whose delivery failed (or whose API process died)
are swept up again by any API process once their lease runs out. Delivering twice is harmless:
the signal-with-start request id is deterministic and the workflow drops message ids it saw.

Tracing (LEADFLOW_OTEL_ENABLED): a row keeps the trace context of the webhook that stored it, in
memory, so a delivery in the background or a retry by this process's sweeper still continues the
webhook's trace. Rows swept after their API process died lost it: their workflow starts a trace
of its own."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NamedTuple

from opentelemetry import context as otel_context
from sqlalchemy import Engine, create_engine, event, make_url
from temporalio.client import Client

from api.conversations_gateway import deliver_inbound
from models.db import Database, sqlite_pragmas, sync_url
from models.inbox_tables import InboxMessage
from models.messages import InboundMessage
from models.metrics import MESSAGES_RECEIVED
from models.repo import deployment_keys
from models.repo import inbox as inbox_repo
from models.settings import Settings
from models.tables import utcnow
from models.webhooks import Delivered

log = logging.getLogger("leadflow.inbox")

LEASE = timedelta(seconds=60)  # a deliverer's hold on its rows; then anyone may sweep them
SWEEP_EVERY_SECONDS = 2.0
SWEEP_BATCH = 200
MAX_BACKOFF_SECONDS = 60.0
# Deliveries in flight per API process: a burst waits here (cheaply) instead of piling up
# thousands of RPCs on a Temporal that is already behind.
MAX_IN_FLIGHT = 64


# Delivered rows wait this long for a webhook's transaction to take their DELETE along.
DELETE_AFTER_SECONDS = 0.5

# Message keys (models/identity_tables.py InboundKey) are kept this long: WAHA's twins arrive
# within seconds, providers redeliver for a day or two. Pruned by the sweeper now and then, in
# batches, never on a webhook's path.
KEY_RETENTION = timedelta(days=7)
PRUNE_EVERY_SECONDS = 600.0
PRUNE_BATCH = 5000

# Trace contexts of rows waiting for a retry (tracing on only); beyond this many the oldest are
# dropped (their delivery still happens, in a trace of its own).
MAX_HELD_CONTEXTS = 10_000


@dataclass(frozen=True, slots=True)
class Dropped:
    """A copy of a message received before (a redelivery, WAHA's @c.us/@lid twin)."""

    message: InboundMessage
    original: inbox_repo.Duplicate  # its key and where the first copy went

    def reason(self) -> str:
        m = self.message
        return (
            f"{m.channel.value} message {m.provider_message_id} from {m.contact}: duplicate of "
            f"{self.original.key} already received for {self.original.workflow_id}"
        )


class Accepted(NamedTuple):
    """What `InboxForwarder.accept` made of a webhook's messages."""

    in_time: bool  # Temporal took them within the ack budget
    delivered: list[Delivered]  # delivered, or stored and queued
    duplicates: list[Dropped]  # copies of messages received before: stored nowhere


@dataclass(frozen=True, slots=True)
class Pending:
    """An inbox row being delivered: `message` parsed already when this process just stored
    it, else the row's JSON (parsed at delivery, where a bad row is retried and logged)."""

    id: int
    workflow_id: str
    message: InboundMessage | str
    attempts: int = 0
    trace: otel_context.Context | None = None  # the webhook's trace context (tracing on)

    @classmethod
    def of(cls, row: InboxMessage, trace: otel_context.Context | None = None) -> Pending:
        return cls(
            id=row.id or 0,
            workflow_id=row.workflow_id,
            message=row.message,
            attempts=row.attempts,
            trace=trace,
        )

    def inbound(self) -> InboundMessage:
        if isinstance(self.message, InboundMessage):
            return self.message
        return InboundMessage.model_validate_json(self.message)


class InboxForwarder:
    def __init__(
        self, settings: Settings, db: Database, client: Callable[[], Awaitable[Client]]
    ) -> None:
        self.settings = settings
        self.db = db
        self._client = client
        # Held only while a conversation's rows are being delivered (weak: no growth).
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._tasks: set[asyncio.Task[object]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._latency: float | None = None  # of this process's deliveries, smoothed (seconds)
        # Group commit: the webhooks that arrive while one transaction is written share the
        # next one (SQLite takes one writer at a time; a burst must not queue on its lock).
        self._puts: list[
            tuple[list[InboundMessage], asyncio.Future[list[Pending | inbox_repo.Duplicate]]]
        ] = []
        self._pruned_at = time.monotonic()
        self._writer: asyncio.Task[None] | None = None
        self._delivered_ids: list[int] = []
        self._delete_timer: asyncio.TimerHandle | None = None
        self._tracing = settings.otel_enabled
        # Row id -> the trace context of its webhook, for rows waiting for a retry.
        self._contexts: dict[int, otel_context.Context] = {}
        # SQLite: each statement through aiosqlite is several hops to its thread and back (most
        # of an acknowledgement's CPU); the inbox's writes go to a synchronous engine on the same
        # file instead, one thread hop per transaction.
        self._sync_engine: Engine | None = None
        database = make_url(db.url).database
        if db.dialect == "sqlite" and database and database != ":memory:":  # a file: shareable
            self._sync_engine = create_engine(sync_url(db.url))
            event.listen(self._sync_engine, "connect", sqlite_pragmas)

    # ---- the webhook's path ------------------------------------------------------------------

    async def accept(self, messages: Sequence[InboundMessage]) -> Accepted:
        """Store the messages, then deliver them within the ack budget.

        A message whose key (models/identity.py `message_key`) was received before is neither
        stored nor delivered: it is reported in `duplicates`. Raises what Temporal raised when
        it refused within the budget (the rows stay for the sweeper)."""
        await deployment_keys.ensure_loaded(self.db)  # the ids of the rows (one check, loaded)
        stored = await self._store(messages)
        rows: list[Pending] = []
        kept: list[InboundMessage] = []
        duplicates: list[Dropped] = []
        for message, row in zip(messages, stored, strict=True):
            if isinstance(row, inbox_repo.Duplicate):
                duplicates.append(Dropped(message, row))
            else:
                rows.append(row)
                kept.append(message)
                MESSAGES_RECEIVED.labels(message.channel.value, message.role.value).inc()
        if not rows:
            return Accepted(True, [], duplicates)
        if self._tracing:
            current = otel_context.get_current()
            rows = [dataclasses.replace(row, trace=current) for row in rows]
        loop = asyncio.get_running_loop()
        started = loop.time()
        task: asyncio.Task[list[Delivered]] = asyncio.create_task(self.deliver(rows))
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        task.add_done_callback(lambda done: self._timed(done, loop.time() - started))
        budget = self.settings.webhook_ack_budget_seconds
        # While Temporal answers slower than the budget (a burst, a restart), waiting for it
        # only adds the budget to every answer: the message is stored, answer at once.
        done, _ = await asyncio.wait({task}, timeout=0 if self._behind(budget) else budget)
        if task in done:
            return Accepted(True, task.result(), duplicates)
        queued = [
            Delivered(workflow_id=row.workflow_id, provider_message_id=m.provider_message_id)
            for row, m in zip(rows, kept, strict=True)
        ]
        return Accepted(False, queued, duplicates)

    async def _store(
        self, messages: Sequence[InboundMessage]
    ) -> list[Pending | inbox_repo.Duplicate]:
        future: asyncio.Future[list[Pending | inbox_repo.Duplicate]]
        future = asyncio.get_running_loop().create_future()
        self._puts.append((list(messages), future))
        self._write_soon()
        return await future

    def _forget(self, row_id: int) -> None:
        """Delivered: deleted with the next webhook's rows (in its transaction), or with the
        others delivered meanwhile after DELETE_AFTER_SECONDS. Until then the row is a harmless
        duplicate should this process die (the sweeper would deliver it again)."""
        self._delivered_ids.append(row_id)
        if len(self._delivered_ids) >= SWEEP_BATCH:
            self._write_soon()
        elif self._delete_timer is None:
            self._delete_timer = asyncio.get_running_loop().call_later(
                DELETE_AFTER_SECONDS, self._write_soon
            )

    def _write_soon(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())

    async def _write(self) -> None:
        """The process's one writer of the inbox: new rows (a webhook waits for them) and the
        deletions of delivered rows, all that is pending in one transaction. Two writers would
        wait on SQLite's lock (its busy handler sleeps up to 100 ms a try)."""
        while self._puts or self._delivered_ids:
            if self._delete_timer is not None:
                self._delete_timer.cancel()
                self._delete_timer = None
            batch, self._puts = self._puts, []
            ids, self._delivered_ids = self._delivered_ids, []
            messages = [m for group, _ in batch for m in group]
            try:
                new = inbox_repo.new_rows(messages, lease=LEASE)
                keys = inbox_repo.key_rows(messages, new)
                row_ids = await self._write_rows(new, ids, keys)
            except Exception as exc:
                if ids:
                    # The rows are delivered again once their lease ends: a harmless duplicate.
                    log.warning("inbox: could not delete %d delivered row(s): %s", len(ids), exc)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for group, future in batch:
                if not future.done():
                    future.set_result(
                        [
                            row_id
                            if isinstance(row_id, inbox_repo.Duplicate)
                            else Pending(id=row_id, workflow_id=row["workflow_id"], message=message)
                            for row_id, row, message in zip(
                                row_ids[start : start + len(group)],
                                new[start : start + len(group)],
                                group,
                                strict=True,
                            )
                        ]
                    )
                start += len(group)

    async def _write_rows(
        self, rows: list[dict[str, Any]], delivered: list[int], keys: list[dict[str, Any]]
    ) -> list[int | inbox_repo.Duplicate]:
        """inbox_repo.write in one committed transaction."""
        engine = self._sync_engine
        if engine is not None:

            def write() -> list[int | inbox_repo.Duplicate]:
                with engine.begin() as connection:
                    return inbox_repo.write(connection, rows, delivered, keys)

            return await asyncio.to_thread(write)
        async with self.db.engine.begin() as connection:
            return await connection.run_sync(inbox_repo.write, rows, delivered, keys)

    def _timed(self, task: asyncio.Task[list[Delivered]], seconds: float) -> None:
        if not task.cancelled() and task.exception() is None:
            self._latency = (
                seconds if self._latency is None else 0.8 * self._latency + 0.2 * seconds
            )

    def _behind(self, budget: float) -> bool:
        """Temporal took longer than the budget, smoothed over the last deliveries."""
        return self._latency is not None and self._latency > budget

    def _finished(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Already recorded on its rows; the sweeper delivers them later.
            log.info("inbox delivery deferred: %s", task.exception())

    # ---- delivery --------------------------------------------------------------------------

    async def deliver(self, rows: Sequence[Pending]) -> list[Delivered]:
        """Each conversation's rows in order, conversations in parallel; delivered rows are
        deleted, the others retried later with backoff. Raises the first failure."""
        by_workflow: dict[str, list[Pending]] = {}
        for row in rows:
            by_workflow.setdefault(row.workflow_id, []).append(row)
        results = await asyncio.gather(
            *(self._deliver_in_order(group) for group in by_workflow.values()),
            return_exceptions=True,
        )
        delivered: list[Delivered] = []
        failure: BaseException | None = None
        for result in results:
            if isinstance(result, BaseException):
                failure = failure or result
            else:
                delivered.extend(result)
        if failure is not None:
            raise failure
        return delivered

    async def _deliver_in_order(self, rows: list[Pending]) -> list[Delivered]:
        workflow_id = rows[0].workflow_id
        lock = self._locks.get(workflow_id)
        if lock is None:
            lock = self._locks[workflow_id] = asyncio.Lock()
        done: list[Delivered] = []
        async with lock:  # one conversation's messages reach Temporal in their order
            for index, row in enumerate(rows):
                try:
                    client = await self._client()
                    message = row.inbound()
                    async with self._slots:
                        if row.trace is None:
                            done.append(await deliver_inbound(client, self.settings, message))
                        else:  # in its webhook's trace (a sweeper's retry runs outside it)
                            token = otel_context.attach(row.trace)
                            try:
                                done.append(await deliver_inbound(client, self.settings, message))
                            finally:
                                otel_context.detach(token)
                except Exception as exc:
                    await self._later(rows[index:], exc)
                    raise
                self._forget(row.id)
        return done

    async def _later(self, rows: Sequence[Pending], exc: BaseException) -> None:
        """Not delivered now: any API process tries again once the backoff has passed."""
        self._hold_contexts(rows)
        async with self.db.session() as session:
            for row in rows:
                backoff = min(MAX_BACKOFF_SECONDS, 2.0 ** min(row.attempts + 1, 6))
                await inbox_repo.retry_later(
                    session,
                    row.id,
                    after=timedelta(seconds=backoff),
                    error=f"{type(exc).__name__}: {exc}",
                )

    def _hold_contexts(self, rows: Sequence[Pending]) -> None:
        """Keep the trace context of rows left for the sweeper (in this process's memory)."""
        for row in rows:
            if row.trace is not None:
                self._contexts[row.id] = row.trace
        while len(self._contexts) > MAX_HELD_CONTEXTS:
            del self._contexts[next(iter(self._contexts))]

    # ---- the sweeper -----------------------------------------------------------------------

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="inbox-sweeper")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        # Deliveries in flight get a moment; what they do not finish, the next start sweeps.
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)
        if self._delivered_ids:  # delete now what was delivered: no duplicate on the next start
            self._write_soon()
        if self._writer is not None and not self._writer.done():
            await asyncio.wait({self._writer}, timeout=5)
        if self._delete_timer is not None:
            self._delete_timer.cancel()
            self._delete_timer = None
        if self._sync_engine is not None:
            self._sync_engine.dispose()

    async def sweep_once(self) -> int:
        """Deliver what is due; returns how many rows were delivered."""
        async with self.db.session() as session:
            rows = await inbox_repo.claim_due(session, limit=SWEEP_BATCH, lease=LEASE)
        if not rows:
            return 0
        try:
            pending = [Pending.of(row, self._contexts.pop(row.id or 0, None)) for row in rows]
            return len(await self.deliver(pending))
        except Exception as exc:  # recorded on the rows; logged once per sweep
            log.warning("inbox: %d message(s) wait for Temporal: %s", len(rows), exc)
            return 0

    async def prune_keys(self) -> int:
        """Delete message keys older than KEY_RETENTION, PRUNE_BATCH at a time; returns how many.

        Several API processes may prune at once: each deletes what is still there."""
        cutoff = utcnow() - KEY_RETENTION
        total = 0
        while True:
            async with self.db.engine.begin() as connection:
                deleted: int = await connection.run_sync(
                    lambda sync: inbox_repo.prune_keys(sync, older_than=cutoff, limit=PRUNE_BATCH)
                )
            total += deleted
            if deleted < PRUNE_BATCH:
                return total

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await deployment_keys.ensure_loaded(self.db)  # deliveries compute ids
                while await self.sweep_once() == SWEEP_BATCH:
                    pass
                if time.monotonic() - self._pruned_at >= PRUNE_EVERY_SECONDS:
                    self._pruned_at = time.monotonic()
                    await self.prune_keys()
            except Exception:
                log.exception("inbox sweep failed; retrying")
            await asyncio.sleep(SWEEP_EVERY_SECONDS)
