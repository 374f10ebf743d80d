"""Enrichment activities: store a job's rows, process one record end to end (website -> fetch ->
extract -> e-mail -> store), keep job status in the database.

Built once per worker with its clients injected. A record's business failures (no website, 404,
not HTML, refused address, robots.txt) are stored as a failed record and returned, not raised:
retrying cannot fix them. Transient failures (timeouts, 5xx, rate limits) raise a retryable
ApplicationError so Temporal retries the record; the workflow marks it failed when it gives up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.llm.agent import Agent
from activities.web.extract import contact_page, extract_facts, merge_facts
from activities.web.fetch import Fetcher, FetchError
from activities.web.search import SearchError, SearchProvider, SearchProviderFactory
from activities.web.website import find_website, normalise_website, site_key
from models import lead_service
from models.agent import CompanyFacts, WriteEmailInput
from models.crm import (
    request_crm_sync,
)
from models.csv_intake import identifying_columns, parse_text
from models.db import Database
from models.enrichment import (
    EnrichmentStep,
    JobStatus,
    JobStatusUpdate,
    MarkRecordFailedInput,
    ProcessRecordInput,
    ProcessRecordResult,
    RecordOutcome,
    RecordStatus,
    SiteResearch,
    StoreRowsInput,
    StoreRowsResult,
    WebsiteFound,
)
from models.enrichment_tables import EnrichmentRecord
from models.metrics import ENRICHMENT_RECORD_SECONDS, ENRICHMENT_RECORDS
from models.policy import PlaybookRef
from models.repo import enrichment as repo
from models.settings import Settings

LLM_TIMEOUT_SECONDS = 90.0
SEARCH_RETRY_DELAY_SECONDS = 30.0


class RecordFailure(Exception):
    """This record cannot be enriched; the message is the reason the user reads. `outcome`
    holds what was learnt before the failure (e.g. the website that answered 404)."""

    def __init__(self, reason: str, outcome: RecordOutcome) -> None:
        super().__init__(reason)
        self.outcome = outcome


def _retryable(message: str, kind: str, *, delay: float | None = None) -> ApplicationError:
    return ApplicationError(
        message,
        type=kind,
        non_retryable=False,
        next_retry_delay=timedelta(seconds=delay) if delay else None,
    )


class EnrichmentActivities:
    def __init__(
        self,
        *,
        db: Database,
        settings: Settings,
        http: httpx.AsyncClient,
        agent: Agent,
        search_providers: Mapping[str, SearchProviderFactory] | None = None,
        fetcher: Fetcher | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.http = http
        self.agent = agent
        self.search_providers = dict(search_providers or {})
        self.fetcher = fetcher or Fetcher.from_settings(http, settings)
        self._search: SearchProvider | None = None
        # One fetch per site at a time in this process: records of the same company that are in
        # flight together share it (the database cache covers the ones that come later).
        self._research_in_flight: dict[tuple[str, str, bool], asyncio.Task[SiteResearch]] = {}

    # -- job level -------------------------------------------------------------------------

    @activity.defn(name="enrichment_store_rows")
    async def store_rows(self, request: StoreRowsInput) -> StoreRowsResult:
        async with self.db.session() as session:
            job = await repo.get_job(session, tenant_id=request.tenant_id, job_id=request.job_id)
            if job is None:
                raise ApplicationError(
                    f"job {request.job_id} does not exist", type="JobNotFound", non_retryable=True
                )
            if job.rows_stored:
                return StoreRowsResult(stored=0)
            parsed = parse_text(job.source or "", delimiter=job.delimiter)
            stored = await repo.store_records(
                session, tenant_id=request.tenant_id, job_id=request.job_id, rows=parsed.rows
            )
        return StoreRowsResult(stored=stored)

    @activity.defn(name="enrichment_set_job_status")
    async def set_job_status(self, update: JobStatusUpdate) -> None:
        async with self.db.session() as session:
            if update.status in (JobStatus.CANCELLED, JobStatus.FAILED):
                await repo.reset_running(session, job_id=update.job_id)
            await repo.set_job_status(
                session,
                tenant_id=update.tenant_id,
                job_id=update.job_id,
                status=update.status,
                error=update.error,
            )

    @activity.defn(name="enrichment_mark_record_failed")
    async def mark_record_failed(self, request: MarkRecordFailedInput) -> None:
        async with self.db.session() as session:
            record = await repo.get_record(
                session, job_id=request.job_id, row_number=request.row_number
            )
            if record is None or record.status == RecordStatus.DONE:
                return  # a late success wins over the give-up
            await repo.finish_record(
                session,
                job_id=request.job_id,
                row_number=request.row_number,
                status=RecordStatus.FAILED,
                error=request.error,
            )
        if record.status != RecordStatus.FAILED:  # counted once, not per retry of this step
            ENRICHMENT_RECORDS.labels(outcome="gave_up").inc()

    # -- one record ------------------------------------------------------------------------

    @activity.defn(name="enrichment_process_record")
    async def process_record(self, request: ProcessRecordInput) -> ProcessRecordResult:
        started = time.monotonic()
        async with self._heartbeats():
            async with self.db.session() as session:
                record = await repo.start_record(
                    session, job_id=request.job_id, row_number=request.row_number
                )
            if record is None or record.tenant_id != request.tenant_id:
                raise ApplicationError(
                    f"record {request.row_number} of job {request.job_id} does not exist",
                    type="RecordNotFound",
                    non_retryable=True,
                )
            if record.status in (RecordStatus.DONE, RecordStatus.FAILED):
                # Already finished by an attempt whose completion was lost (a worker died).
                return ProcessRecordResult(
                    row_number=record.row_number,
                    status=RecordStatus(record.status),
                    error=record.error,
                )
            outcome = RecordOutcome()
            try:
                outcome = await self._enrich(request, record, outcome)
            except RecordFailure as failure:
                return await self._finish(
                    request, RecordStatus.FAILED, failure.outcome, str(failure), started=started
                )
            except FetchError as exc:
                if exc.retryable:
                    raise _retryable(f"fetching {exc.url}: {exc.reason}", "FetchError") from exc
                return await self._finish(
                    request,
                    RecordStatus.FAILED,
                    outcome,
                    f"fetching {exc.url}: {exc.reason}",
                    started=started,
                )
            except SearchError as exc:
                if exc.retryable:
                    raise _retryable(
                        str(exc), "SearchError", delay=exc.retry_after or SEARCH_RETRY_DELAY_SECONDS
                    ) from exc
                return await self._finish(
                    request, RecordStatus.FAILED, outcome, str(exc), started=started
                )
            # Before the record is marked done: a retry after a crash repeats this, harmlessly.
            await self._lead_from_row(request, record, outcome)
            return await self._finish(request, RecordStatus.DONE, outcome, None, started=started)

    async def _lead_from_row(
        self, request: ProcessRecordInput, record: EnrichmentRecord, outcome: RecordOutcome
    ) -> None:
        """The enriched row becomes, or enriches, a lead of the tenant (models/lead_service.py
        says which), and a change goes to the tenant's CRMs like any other lead change."""
        row = {str(k): str(v) for k, v in record.data.items()}
        async with self.db.session() as session:
            result = await lead_service.lead_from_enriched_row(
                session,
                tenant_id=request.tenant_id,
                job_id=request.job_id,
                row=row,
                website=outcome.website,
                facts=outcome.facts,
            )
        # A retry may follow an attempt that wrote the lead and died before asking for the
        # sync: it asks again (the lead's sync workflow coalesces requests of one version).
        retried = activity.info().attempt > 1
        if result is not None and (result.needs_crm_sync or retried):
            await request_crm_sync(
                activity.client(),
                tenant_id=request.tenant_id,
                lead_id=result.lead_id,
                reason=f"enrichment job {request.job_id}",
                version=result.version,
            )

    async def _finish(
        self,
        request: ProcessRecordInput,
        status: RecordStatus,
        outcome: RecordOutcome | None,
        error: str | None,
        *,
        started: float,
    ) -> ProcessRecordResult:
        async with self.db.session() as session:
            await repo.finish_record(
                session,
                job_id=request.job_id,
                row_number=request.row_number,
                status=status,
                outcome=outcome,
                error=error,
            )
        label = "enriched" if status == RecordStatus.DONE else "failed"
        ENRICHMENT_RECORDS.labels(outcome=label).inc()
        ENRICHMENT_RECORD_SECONDS.labels(outcome=label).observe(time.monotonic() - started)
        website = urlsplit(outcome.website).hostname if outcome and outcome.website else None
        return ProcessRecordResult(
            row_number=request.row_number, status=status, error=error, website=website
        )

    async def _enrich(
        self, request: ProcessRecordInput, record: EnrichmentRecord, outcome: RecordOutcome
    ) -> RecordOutcome:
        steps = set(request.options.steps)
        row = {str(k): str(v) for k, v in record.data.items()}
        columns = identifying_columns(list(row))
        company = row.get(columns.company or "", "").strip() or None

        website = await self._website(request, record, row, find=EnrichmentStep.WEBSITE in steps)
        outcome = outcome.model_copy(update={"website": website})
        facts = CompanyFacts(company=company, website=website)
        if EnrichmentStep.FETCH in steps:
            if website is None:
                raise RecordFailure("no website to fetch", outcome)
            try:
                research = await self._research(
                    request.tenant_id,
                    website,
                    extract=EnrichmentStep.EXTRACT in steps,
                    respect_robots=request.options.respect_robots,
                )
            except FetchError as exc:
                if exc.retryable:
                    raise
                raise RecordFailure(f"fetching {exc.url}: {exc.reason}", outcome) from exc
            facts = research.facts.model_copy(update={"company": company or research.facts.company})
            outcome = outcome.model_copy(update={"facts": facts})
        if EnrichmentStep.EMAIL in steps:
            outcome = await self._write_email(request, row, facts, outcome)
        return outcome

    async def _website(
        self,
        request: ProcessRecordInput,
        record: EnrichmentRecord,
        row: dict[str, str],
        *,
        find: bool,
    ) -> str | None:
        if record.website_source:
            return record.website  # found by an earlier attempt: do not search again
        if find:
            found = await find_website(row, self._search_provider())
        else:
            columns = identifying_columns(list(row))
            given = normalise_website(row.get(columns.website or "", ""))
            found = WebsiteFound(url=given, source="column" if given else "none")
        if found.source == "search":
            # Remember what a search cost to find; a column or e-mail domain is free to re-derive,
            # and skipping the write matters at thousands of records (SQLite has one writer).
            async with self.db.session() as session:
                await repo.save_website(
                    session,
                    job_id=request.job_id,
                    row_number=request.row_number,
                    website=found.url,
                    source=found.source,
                )
        if found.url is None and find:
            raise RecordFailure(found.detail or "no website found", RecordOutcome())
        return found.url

    async def _research(
        self, tenant_id: str, url: str, *, extract: bool, respect_robots: bool
    ) -> SiteResearch:
        key = (tenant_id, site_key(url), respect_robots)
        task = self._research_in_flight.get(key)
        if task is None:
            task = asyncio.create_task(self._research_once(tenant_id, url, extract, respect_robots))
            self._research_in_flight[key] = task
            task.add_done_callback(lambda _t: self._research_in_flight.pop(key, None))
        # shield: one record's cancellation must not cancel the fetch another record awaits.
        return await asyncio.shield(task)

    async def _research_once(
        self, tenant_id: str, url: str, extract: bool, respect_robots: bool
    ) -> SiteResearch:
        key = site_key(url)
        if extract:
            async with self.db.session() as session:
                cached = await repo.get_cached_research(session, tenant_id=tenant_id, site_key=key)
            if cached is not None:
                return cached
        page = await self.fetcher.fetch(url, check_robots=respect_robots)
        if not extract:
            return SiteResearch(url=url, final_url=page.final_url, facts=CompanyFacts(website=url))
        # Parsing is CPU work: a thread keeps heartbeats and other records' I/O going meanwhile.
        facts, tree = await asyncio.to_thread(
            extract_facts, page.body, url=page.final_url, charset=page.charset
        )
        if not facts.emails:
            contact = contact_page(tree, page.final_url)
            if contact and contact.rstrip("/") != page.final_url.rstrip("/"):
                with contextlib.suppress(FetchError):
                    extra = await self.fetcher.fetch(contact, check_robots=respect_robots)
                    more, _ = await asyncio.to_thread(
                        extract_facts, extra.body, url=extra.final_url, charset=extra.charset
                    )
                    facts = merge_facts(facts, more)
        research = SiteResearch(
            url=url,
            final_url=page.final_url,
            facts=facts.model_copy(update={"website": url, "company": None}),
            truncated=page.truncated,
        )
        async with self.db.session() as session:
            await repo.put_cached_research(
                session,
                tenant_id=tenant_id,
                site_key=key,
                research=research,
                ttl=timedelta(seconds=self.settings.fetch_cache_ttl_seconds),
            )
        return research

    async def _write_email(
        self,
        request: ProcessRecordInput,
        row: dict[str, str],
        facts: CompanyFacts,
        outcome: RecordOutcome,
    ) -> RecordOutcome:
        # The same agent, providers, ledger and budget as the conversations.
        async with asyncio.timeout(LLM_TIMEOUT_SECONDS):
            written = await self.agent.write_email(
                WriteEmailInput(
                    tenant_id=request.tenant_id,
                    playbook=PlaybookRef(
                        tenant_id=request.tenant_id, builtin=request.options.playbook
                    ),
                    job_id=request.job_id,
                    lead=row,
                    facts=facts,
                )
            )
        return outcome.model_copy(
            update={
                "email_subject": written.subject,
                "email_body": written.body,
                "usage": written.usage,
                "usd": written.usage.cost_usd,
            }
        )

    # -- dependencies ----------------------------------------------------------------------

    def _search_provider(self) -> SearchProvider | None:
        if self._search is None:
            factory = self.search_providers.get(self.settings.search_provider)
            if factory is None:
                return None
            self._search = factory(self.settings, self.http)
        return self._search

    @contextlib.asynccontextmanager
    async def _heartbeats(self) -> AsyncIterator[None]:
        """Heartbeat while a record runs: a dead worker is noticed within the heartbeat timeout,
        and a cancelled job's records are cancelled (cancellation arrives with heartbeats)."""
        timeout = activity.info().heartbeat_timeout
        if not timeout:
            yield
            return

        async def beat() -> None:
            interval = max(timeout.total_seconds() / 4, 0.2)
            while True:
                activity.heartbeat()
                await asyncio.sleep(interval)

        beater = asyncio.create_task(beat())
        try:
            yield
        finally:
            beater.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beater
