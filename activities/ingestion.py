"""The inventory ingestion activities: fetch a source through the SSRF guard, parse it, and apply
its items (the source's vanished items removed), recording the run on the source's row.

Errors say whether trying again can help: a document that cannot be read, a 4xx, a refused
address or a feed that suddenly lists nothing are final (`non_retryable`), while network
failures, 5xx and an unavailable search backend are retried by Temporal."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.web.fetch import Fetcher, FetchError
from models.db import Database
from models.inventory_parse import MAX_BODY_BYTES, ParsedInventory, SourceFormatError, parse_source
from models.knowledge.index import KnowledgeBackendError
from models.knowledge.ingestion import (
    ERROR_INDEX_UNAVAILABLE,
    ERROR_SOURCE_FORMAT,
    ERROR_SOURCE_NOT_FOUND,
    ERROR_SOURCE_REFUSED,
    ERROR_SOURCE_UNAVAILABLE,
    ERROR_WOULD_EMPTY,
    SKIPPED_REASONS_KEPT,
    IngestFailure,
    IngestResult,
    IngestSourceInput,
)
from models.knowledge.service import KnowledgeService
from models.knowledge_sources import SourceSpec
from models.repo import inventory as inventory_repo
from models.repo import knowledge_sources as source_repo

FETCH_TIMEOUT_SECONDS = 60.0  # a 20 MB feed from a slow dealer host; the redirect chain shares it
HEARTBEAT_EVERY_SECONDS = 5.0


class IngestionActivities:
    def __init__(
        self,
        db: Database,
        http: httpx.AsyncClient,
        knowledge: KnowledgeService,
    ) -> None:
        self._db = db
        self._knowledge = knowledge
        # The worker's guarded client (Fetcher refuses an unguarded one). One more byte than
        # the parser reads: a body that fills it was cut off, and a cut-off feed must never be
        # applied (its missing tail would be removed from stock).
        self._fetcher = Fetcher(
            http,
            timeout=FETCH_TIMEOUT_SECONDS,
            max_bytes=MAX_BODY_BYTES + 1,
            per_host_concurrency=2,
        )

    @activity.defn(name="ingest_inventory_source")
    async def ingest_inventory_source(self, input: IngestSourceInput) -> IngestResult:
        try:
            async with _heartbeating():
                return await self._ingest(input)
        except ApplicationError as exc:
            await self._record_attempt(input, exc)
            raise

    @activity.defn(name="record_ingestion_failure")
    async def record_ingestion_failure(self, input: IngestFailure) -> None:
        """The workflow's failure path: also covers what the activity could not record itself
        (a timeout, a worker that died)."""
        async with self._db.session() as session:
            await source_repo.record_failure(
                session, tenant_id=input.tenant_id, source_id=input.source_id, error=input.error
            )

    async def _ingest(self, input: IngestSourceInput) -> IngestResult:
        started = time.monotonic()
        async with self._db.session() as session:
            row = await source_repo.get_source(
                session, tenant_id=input.tenant_id, source_id=input.source_id
            )
            live = (await inventory_repo.counts(session, tenant_id=input.tenant_id)).get(
                input.source_id, 0
            )
        if row is None:
            raise ApplicationError(
                f"inventory source {input.source_id} does not exist (deleted?)",
                type=ERROR_SOURCE_NOT_FOUND,
                non_retryable=True,
            )
        spec = source_repo.spec_of(row)
        # What an earlier write left pending goes first: a backend that was down catches up
        # now, and an unavailable one fails this attempt before anything is fetched.
        await self._sync(input.tenant_id)
        body, content_type, final_url = await self._fetch(spec)
        try:
            # Parsing a 20 MB page is CPU for seconds: off the event loop, so heartbeats go on.
            parsed: ParsedInventory = await asyncio.to_thread(
                parse_source, spec, body, content_type=content_type, base_url=final_url
            )
        except SourceFormatError as exc:
            raise ApplicationError(
                f"{spec.name}: cannot read {spec.url} as {spec.kind.value}: {exc}",
                type=ERROR_SOURCE_FORMAT,
                non_retryable=True,
            ) from exc
        if not parsed.items and live:
            # A broken page or an emptied feed looks exactly like "everything sold": refusing
            # keeps the stock as it was until a person looks (DELETE the source to empty it).
            reasons = "; ".join(str(s) for s in parsed.skipped[:3])
            raise ApplicationError(
                f"{spec.name}: {spec.url} lists no items ({len(parsed.skipped)} skipped"
                f"{': ' + reasons if reasons else ''}) while {live} items of this source are "
                "in stock; nothing was removed",
                type=ERROR_WOULD_EMPTY,
                non_retryable=True,
            )
        activity.heartbeat("applying")
        try:
            diff = await self._knowledge.apply_items(
                tenant_id=input.tenant_id,
                items=parsed.items,
                source_id=input.source_id,
                replace=True,
            )
        except KnowledgeBackendError as exc:
            # Stored in the database (IndexPending) or not: either way the next attempt's
            # first step pushes what is pending once the backend answers.
            raise ApplicationError(
                f"search backend {self._knowledge.backend}: {exc}",
                type=ERROR_INDEX_UNAVAILABLE,
            ) from exc
        if not await self._source_exists(input):
            # Deleted while this run fetched: the deletion may have removed the items before
            # this apply wrote them back, so they go again (a deleted source offers nothing).
            await self._knowledge.apply_items(
                tenant_id=input.tenant_id, items=[], source_id=input.source_id, replace=True
            )
            raise ApplicationError(
                f"inventory source {input.source_id} was deleted during the run; its items "
                "were removed",
                type=ERROR_SOURCE_NOT_FOUND,
                non_retryable=True,
            )
        result = IngestResult(
            source_id=input.source_id,
            source_name=spec.name,
            format=parsed.format,
            diff=diff,
            skipped=len(parsed.skipped),
            skipped_reasons=tuple(str(s) for s in parsed.skipped[:SKIPPED_REASONS_KEPT]),
            bytes=len(body),
            seconds=round(time.monotonic() - started, 3),
            final_url=final_url,
        )
        async with self._db.session() as session:
            await source_repo.record_success(
                session,
                tenant_id=input.tenant_id,
                source_id=input.source_id,
                result=result.model_dump(mode="json"),
            )
        return result

    async def _source_exists(self, input: IngestSourceInput) -> bool:
        async with self._db.session() as session:
            row = await source_repo.get_source(
                session, tenant_id=input.tenant_id, source_id=input.source_id
            )
        return row is not None

    async def _sync(self, tenant_id: str) -> None:
        try:
            await self._knowledge.sync_index(tenant_id=tenant_id)
        except KnowledgeBackendError as exc:
            raise ApplicationError(
                f"search backend {self._knowledge.backend}: {exc}", type=ERROR_INDEX_UNAVAILABLE
            ) from exc

    async def _fetch(self, spec: SourceSpec) -> tuple[bytes, str, str]:
        activity.heartbeat("fetching")
        try:
            # No robots.txt check: the tenant is the dealer and names its own pages and feeds.
            page = await self._fetcher.fetch(
                spec.url, accept=(), check_robots=False, strict_type=False
            )
        except FetchError as exc:
            raise ApplicationError(
                f"{spec.name}: {exc}",
                type=ERROR_SOURCE_UNAVAILABLE if exc.retryable else ERROR_SOURCE_REFUSED,
                non_retryable=not exc.retryable,
            ) from exc
        if page.truncated or len(page.body) > MAX_BODY_BYTES:
            raise ApplicationError(
                f"{spec.name}: {spec.url} is larger than {MAX_BODY_BYTES:,} bytes",
                type=ERROR_SOURCE_REFUSED,
                non_retryable=True,
            )
        content_type = page.content_type + (f"; charset={page.charset}" if page.charset else "")
        return page.body, content_type, page.final_url

    async def _record_attempt(self, input: IngestSourceInput, error: ApplicationError) -> None:
        """Every failed attempt is on the source's row at once (the operator sees "HTTP 503,
        retrying" without waiting for the retries to run out)."""
        info = activity.info()
        final = error.non_retryable or (
            info.retry_policy is not None
            and info.retry_policy.maximum_attempts > 0
            and info.attempt >= info.retry_policy.maximum_attempts
        )
        note = "" if final else f" (attempt {info.attempt}; retrying)"
        with contextlib.suppress(Exception):  # the error being raised matters more
            async with self._db.session() as session:
                await source_repo.record_failure(
                    session,
                    tenant_id=input.tenant_id,
                    source_id=input.source_id,
                    error=f"{error.message}{note}",
                )


@contextlib.asynccontextmanager
async def _heartbeating() -> AsyncIterator[None]:
    """Heartbeats while the activity works, so a dead worker is noticed within the heartbeat
    timeout while a long fetch or parse is not mistaken for one."""

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(HEARTBEAT_EVERY_SECONDS)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
