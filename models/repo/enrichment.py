"""Enrichment jobs, records and the fetch cache. Shared by the API and the activities; runs on
SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.enrichment import (
    JobCost,
    JobCounts,
    JobStatus,
    JobView,
    RecordOutcome,
    RecordStatus,
    RecordView,
    SiteResearch,
)
from models.enrichment_tables import EnrichmentJob, EnrichmentRecord, FetchCacheEntry
from models.tables import utcnow

INSERT_BATCH = 500


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes even for UTC columns; PostgreSQL aware ones.
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=utcnow().tzinfo)


async def create_job(
    session: AsyncSession,
    *,
    job_id: str,
    tenant_id: str,
    filename: str,
    columns: Sequence[str],
    total: int,
    source: str,
    delimiter: str,
    concurrency: int,
    steps: Sequence[str],
    playbook: str | None,
) -> EnrichmentJob:
    job = EnrichmentJob(
        id=job_id,
        tenant_id=tenant_id,
        filename=filename[:255],
        status=JobStatus.RUNNING,
        total=total,
        columns=list(columns),
        delimiter=delimiter,
        source=source,
        concurrency=concurrency,
        steps=list(steps),
        playbook=playbook,
    )
    session.add(job)
    await session.commit()
    return job


async def get_job(session: AsyncSession, *, tenant_id: str, job_id: str) -> EnrichmentJob | None:
    """Scoped by tenant: another tenant's job id finds nothing."""
    job = await session.get(EnrichmentJob, job_id)
    if job is None or job.tenant_id != tenant_id:
        return None
    return job


async def list_jobs(
    session: AsyncSession, *, tenant_id: str, limit: int = 100
) -> list[EnrichmentJob]:
    query = (
        select(EnrichmentJob)
        .where(EnrichmentJob.tenant_id == tenant_id)
        .order_by(col(EnrichmentJob.created_at).desc(), col(EnrichmentJob.id))
        .limit(limit)
    )
    return list((await session.exec(query)).all())


async def set_job_status(
    session: AsyncSession,
    *,
    tenant_id: str,
    job_id: str,
    status: JobStatus,
    error: str | None = None,
) -> EnrichmentJob | None:
    job = await get_job(session, tenant_id=tenant_id, job_id=job_id)
    if job is None:
        return None
    now = utcnow()
    job.status = status
    job.updated_at = now
    if error is not None:
        job.error = error
    if status in (JobStatus.COMPLETED, JobStatus.CANCELLED, JobStatus.FAILED):
        job.finished_at = job.finished_at or now
    else:
        job.finished_at = None
    session.add(job)
    await session.commit()
    return job


async def store_records(
    session: AsyncSession,
    *,
    tenant_id: str,
    job_id: str,
    rows: Sequence[dict[str, str]],
) -> int:
    """Store the job's rows as records 1..n, once: rows already stored (an earlier attempt that
    died half-way) are skipped, and the CSV text is dropped from the job afterwards."""
    job = await get_job(session, tenant_id=tenant_id, job_id=job_id)
    if job is None:
        raise LookupError(f"job {job_id} of tenant {tenant_id} does not exist")
    if job.rows_stored:
        return 0
    stored_up_to = (
        await session.exec(
            select(func.coalesce(func.max(EnrichmentRecord.row_number), 0)).where(
                EnrichmentRecord.job_id == job_id
            )
        )
    ).one()
    inserted = 0
    for start in range(int(stored_up_to), len(rows), INSERT_BATCH):
        batch = rows[start : start + INSERT_BATCH]
        session.add_all(
            EnrichmentRecord(job_id=job_id, tenant_id=tenant_id, row_number=start + i + 1, data=row)
            for i, row in enumerate(batch)
        )
        # Commit per batch: a 100,000-row job never holds one huge transaction.
        await session.commit()
        inserted += len(batch)
    job.rows_stored = True
    job.source = None
    job.updated_at = utcnow()
    session.add(job)
    await session.commit()
    return inserted


async def get_record(
    session: AsyncSession, *, job_id: str, row_number: int
) -> EnrichmentRecord | None:
    query = select(EnrichmentRecord).where(
        EnrichmentRecord.job_id == job_id, EnrichmentRecord.row_number == row_number
    )
    return (await session.exec(query)).first()


async def start_record(
    session: AsyncSession, *, job_id: str, row_number: int
) -> EnrichmentRecord | None:
    record = await get_record(session, job_id=job_id, row_number=row_number)
    if record is None:
        return None
    if record.status in (RecordStatus.DONE, RecordStatus.FAILED):
        return record
    record.status = RecordStatus.RUNNING
    record.attempts += 1
    record.started_at = utcnow()
    session.add(record)
    await session.commit()
    return record


async def save_website(
    session: AsyncSession, *, job_id: str, row_number: int, website: str | None, source: str
) -> None:
    """Remember the website between attempts, so a retry does not search again."""
    await session.exec(
        update(EnrichmentRecord)
        .where(
            col(EnrichmentRecord.job_id) == job_id,
            col(EnrichmentRecord.row_number) == row_number,
        )
        .values(website=website, website_source=source)
    )
    await session.commit()


async def finish_record(
    session: AsyncSession,
    *,
    job_id: str,
    row_number: int,
    status: RecordStatus,
    outcome: RecordOutcome | None = None,
    error: str | None = None,
) -> None:
    """Write a record's final state. Tokens are set, not added: a retried record counts once."""
    values: dict[str, Any] = {"status": status, "error": error, "finished_at": utcnow()}
    if outcome is not None:
        facts = outcome.facts
        values.update(
            website=outcome.website,
            summary=facts.summary,
            emails=list(facts.emails),
            phones=list(facts.phones),
            social_links=list(facts.social_links),
            email_subject=outcome.email_subject,
            email_body=outcome.email_body,
            input_tokens=outcome.usage.input_tokens if outcome.usage else 0,
            output_tokens=outcome.usage.output_tokens if outcome.usage else 0,
            usd=outcome.usd,
        )
    await session.exec(
        update(EnrichmentRecord)
        .where(
            col(EnrichmentRecord.job_id) == job_id,
            col(EnrichmentRecord.row_number) == row_number,
        )
        .values(**values)
    )
    await session.commit()


async def reset_running(session: AsyncSession, *, job_id: str) -> int:
    """Records left `running` by a cancelled job go back to pending (they did not finish)."""
    result = await session.exec(
        update(EnrichmentRecord)
        .where(
            col(EnrichmentRecord.job_id) == job_id,
            col(EnrichmentRecord.status) == RecordStatus.RUNNING,
        )
        .values(status=RecordStatus.PENDING)
    )
    await session.commit()
    return int(result.rowcount)


async def job_counts(session: AsyncSession, *, job: EnrichmentJob) -> JobCounts:
    rows = (
        await session.exec(
            select(EnrichmentRecord.status, func.count())
            .where(EnrichmentRecord.job_id == job.id)
            .group_by(EnrichmentRecord.status)
        )
    ).all()
    by_status = {str(status): int(n) for status, n in rows}
    running = by_status.get(RecordStatus.RUNNING, 0)
    done = by_status.get(RecordStatus.DONE, 0)
    failed = by_status.get(RecordStatus.FAILED, 0)
    # Before the rows are stored, every row of the CSV is pending.
    pending = max(job.total - running - done - failed, 0)
    return JobCounts(pending=pending, running=running, done=done, failed=failed)


async def job_cost(session: AsyncSession, *, job_id: str) -> JobCost:
    row = (
        await session.exec(
            select(
                func.coalesce(func.sum(EnrichmentRecord.input_tokens), 0),
                func.coalesce(func.sum(EnrichmentRecord.output_tokens), 0),
                func.coalesce(func.sum(EnrichmentRecord.usd), 0.0),
            ).where(EnrichmentRecord.job_id == job_id)
        )
    ).one()
    return JobCost(input_tokens=int(row[0]), output_tokens=int(row[1]), usd=round(float(row[2]), 6))


async def job_view(
    session: AsyncSession, *, job: EnrichmentJob, now: datetime | None = None
) -> JobView:
    counts = await job_counts(session, job=job)
    cost = await job_cost(session, job_id=job.id)
    finished = counts.done + counts.failed
    created = _aware(job.created_at) or utcnow()
    end = _aware(job.finished_at) or (now or utcnow())
    if job.finished_at is not None and finished:
        last = (
            await session.exec(
                select(func.max(EnrichmentRecord.finished_at)).where(
                    EnrichmentRecord.job_id == job.id
                )
            )
        ).one()
        end = _aware(last) or end
    elapsed = max((end - created).total_seconds(), 1e-3)
    throughput = finished / elapsed if finished else 0.0
    remaining = counts.pending + counts.running
    eta: float | None
    if job.status in (JobStatus.COMPLETED, JobStatus.CANCELLED, JobStatus.FAILED):
        eta = 0.0 if job.status == JobStatus.COMPLETED else None
    else:
        eta = round(remaining / throughput, 1) if throughput > 0 else None
    return JobView(
        id=job.id,
        status=JobStatus(job.status),
        filename=job.filename,
        created_at=created,
        finished_at=_aware(job.finished_at),
        total=job.total,
        counts=counts,
        throughput_per_s=round(throughput, 3),
        eta_seconds=eta,
        cost=cost,
    )


async def list_records(
    session: AsyncSession,
    *,
    job_id: str,
    status: RecordStatus | None = None,
    after_row: int = 0,
    limit: int = 500,
) -> list[EnrichmentRecord]:
    """Records in row order, paged by row number (stable under concurrent updates)."""
    query = select(EnrichmentRecord).where(
        EnrichmentRecord.job_id == job_id, EnrichmentRecord.row_number > after_row
    )
    if status is not None:
        query = query.where(EnrichmentRecord.status == status)
    query = query.order_by(col(EnrichmentRecord.row_number)).limit(limit)
    return list((await session.exec(query)).all())


def record_view(record: EnrichmentRecord) -> RecordView:
    return RecordView(
        row_number=record.row_number,
        status=RecordStatus(record.status),
        error=record.error,
        input={str(k): str(v) for k, v in record.data.items()},
    )


async def get_cached_research(
    session: AsyncSession, *, tenant_id: str, site_key: str, now: datetime | None = None
) -> SiteResearch | None:
    entry = (
        await session.exec(
            select(FetchCacheEntry).where(
                FetchCacheEntry.tenant_id == tenant_id, FetchCacheEntry.site_key == site_key
            )
        )
    ).first()
    if entry is None:
        return None
    expires = _aware(entry.expires_at)
    if expires is None or expires <= (now or utcnow()):
        return None
    return SiteResearch.model_validate(entry.research)


async def put_cached_research(
    session: AsyncSession,
    *,
    tenant_id: str,
    site_key: str,
    research: SiteResearch,
    ttl: timedelta,
) -> None:
    now = utcnow()
    payload = research.model_dump(mode="json")
    for _ in range(2):
        entry = (
            await session.exec(
                select(FetchCacheEntry).where(
                    FetchCacheEntry.tenant_id == tenant_id, FetchCacheEntry.site_key == site_key
                )
            )
        ).first()
        if entry is None:
            entry = FetchCacheEntry(tenant_id=tenant_id, site_key=site_key, expires_at=now + ttl)
        entry.research = payload
        entry.fetched_at = now
        entry.expires_at = now + ttl
        session.add(entry)
        try:
            await session.commit()
            return
        except IntegrityError:
            # Another worker cached the same site a moment ago: update its row instead.
            await session.rollback()
