"""The dashboard's queries (models/dashboard.py holds the rules): one tenant's rows in a period
[start, end) of UTC instants, grouped in SQL.

Days: each statement that counts per day groups by a 15-minute UTC slot (`SLOT_SECONDS`) and
models/dashboard.py maps the slots to the tenant's local days. SQLite has no time zones, and
PostgreSQL's `timezone()` would be a second rule: one slot expression per database (only the
epoch's spelling differs) keeps one rule, exact for every UTC offset in use (multiples of 15
minutes), and bounds what a statement returns (96 rows a day per group), not the table's rows.

Indexes: `llm_calls` has (tenant_id, at). The others are reached by `tenant_id` (messages,
escalations, crm_sync_runs) and filtered by time there; enrichment records through their jobs
(`enrichment_jobs.tenant_id`, then `(job_id, status)`). A (tenant_id, at) index on `messages`
and (tenant_id, created_at) on `escalations` and `crm_sync_runs` would make large tenants'
periods cheaper (a migration: not added here)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Integer, cast, distinct, extract, func, or_
from sqlalchemy import select as sa_select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.common import Role
from models.crm_tables import CrmSyncRun
from models.enrichment import RecordStatus
from models.enrichment_tables import EnrichmentJob, EnrichmentRecord
from models.llm_tables import LlmCall
from models.repo.sql import table_of
from models.tables import Conversation, Escalation, Lead, Message

SLOT_SECONDS = 15 * 60
"""The width of the UTC slots statements group by: every UTC offset in use since 2000 is a
multiple of 15 minutes, so no local midnight falls inside a slot."""

FINISHED_LATE = timedelta(days=1)
"""A record may be written shortly after its job's `finished_at` (a cancelled job's record
whose activity was already finishing): jobs that ended this long before the period still
count."""

_MESSAGES = table_of(Message)
_CONVERSATIONS = table_of(Conversation)
_LEADS = table_of(Lead)
_ESCALATIONS = table_of(Escalation)
_CALLS = table_of(LlmCall)
_JOBS = table_of(EnrichmentJob)
_RECORDS = table_of(EnrichmentRecord)
_RUNS = table_of(CrmSyncRun)
_REPLY_ROLES = (Role.AI.value, Role.HUMAN.value)


def _slot(session: AsyncSession, column: Any) -> ColumnElement[Any]:
    """The 15-minute UTC slot of a timestamp: its epoch seconds // SLOT_SECONDS. SQLite stores
    UTC text (`strftime('%s')` reads it as UTC); PostgreSQL stores timestamptz."""
    epoch: ColumnElement[int]
    if session.sync_session.get_bind().dialect.name == "postgresql":
        epoch = cast(func.floor(extract("epoch", column)), BigInteger)
    else:
        epoch = cast(func.strftime("%s", column), Integer)
    return epoch // SLOT_SECONDS  # integer division: both are integers


async def _rows(session: AsyncSession, statement: Any) -> list[Any]:
    return list((await session.execute(statement)).all())


def _messages_in(tenant_id: str, start: datetime, end: datetime) -> list[ColumnElement[bool]]:
    m = _MESSAGES.c
    return [m.tenant_id == tenant_id, m.at >= start, m.at < end]


async def message_slots(
    session: AsyncSession, *, tenant_id: str, start: datetime, end: datetime
) -> list[tuple[int, str, int]]:
    """(slot, role, messages) of the tenant's messages in the period."""
    m = _MESSAGES.c
    slot = _slot(session, m.at).label("slot")
    statement = (
        sa_select(slot, m.role, func.count())
        .where(*_messages_in(tenant_id, start, end))
        .group_by(slot, m.role)
    )
    return [(int(s), str(role), int(n)) for s, role, n in await _rows(session, statement)]


async def first_replies(
    session: AsyncSession, *, tenant_id: str, start: datetime, end: datetime
) -> list[tuple[datetime, datetime | None]]:
    """(first lead message, first AI/person message at or after it) of each conversation whose
    first lead message ever is in the period. The candidates are the conversations with a lead
    message in the period; their earlier messages are read through the conversation index."""
    m = _MESSAGES.c
    candidates = sa_select(m.conversation_id).where(
        *_messages_in(tenant_id, start, end), m.role == Role.LEAD.value
    )
    first_at = func.min(m.at)
    first = (
        sa_select(m.conversation_id, first_at.label("first_at"))
        .where(m.role == Role.LEAD.value, m.conversation_id.in_(candidates))
        .group_by(m.conversation_id)
        .having(first_at >= start)
        .subquery("first")
    )
    reply = _MESSAGES.alias("reply")
    reply_at = (
        sa_select(func.min(reply.c.at))
        .where(
            reply.c.conversation_id == first.c.conversation_id,
            reply.c.role.in_(_REPLY_ROLES),
            reply.c.at >= first.c.first_at,
        )
        .scalar_subquery()
    )
    statement = sa_select(first.c.first_at, reply_at.label("reply_at"))
    return [(asked, answered) for asked, answered in await _rows(session, statement)]


def _active_conversation_ids(tenant_id: str, start: datetime, end: datetime) -> Any:
    return sa_select(_MESSAGES.c.conversation_id).where(*_messages_in(tenant_id, start, end))


async def active_stage_counts(
    session: AsyncSession, *, tenant_id: str, start: datetime, end: datetime
) -> dict[str, int]:
    """Conversations with a message (in or out) in the period, by current stage."""
    c = _CONVERSATIONS.c
    statement = (
        sa_select(c.stage, func.count())
        .where(
            c.tenant_id == tenant_id,
            c.id.in_(_active_conversation_ids(tenant_id, start, end)),
        )
        .group_by(c.stage)
    )
    return {str(stage): int(n) for stage, n in await _rows(session, statement)}


async def active_leads(
    session: AsyncSession, *, tenant_id: str, start: datetime, end: datetime
) -> list[tuple[str, dict[str, Any], list[str]]]:
    """(quality, fields, tags) of each lead with a conversation active in the period: as many
    rows as such leads, which the period's messages bound."""
    c = _CONVERSATIONS.c
    lead_ids = sa_select(c.lead_id).where(
        c.tenant_id == tenant_id,
        c.lead_id.is_not(None),
        c.id.in_(_active_conversation_ids(tenant_id, start, end)),
    )
    lead = _LEADS.c
    statement = sa_select(lead.quality, lead.fields, lead.tags).where(
        lead.tenant_id == tenant_id, lead.id.in_(lead_ids)
    )
    return [
        (str(quality), dict(fields or {}), [str(t) for t in tags or ()])
        for quality, fields, tags in await _rows(session, statement)
    ]


async def conversations_with_lead_message(
    session: AsyncSession, *, tenant_id: str, start: datetime, end: datetime
) -> int:
    m = _MESSAGES.c
    statement = sa_select(func.count(distinct(m.conversation_id))).where(
        *_messages_in(tenant_id, start, end), m.role == Role.LEAD.value
    )
    return int((await session.execute(statement)).scalar_one())


async def escalations_by_rule(
    session: AsyncSession, *, tenant_id: str, start: datetime, end: datetime
) -> dict[str, int]:
    e = _ESCALATIONS.c
    statement = (
        sa_select(e.rule, func.count())
        .where(e.tenant_id == tenant_id, e.created_at >= start, e.created_at < end)
        .group_by(e.rule)
    )
    return {str(rule): int(n) for rule, n in await _rows(session, statement)}


async def cost_slots(
    session: AsyncSession, *, tenant_id: str, start: datetime, end: datetime
) -> list[tuple[int, str, str, float]]:
    """(slot, provider, model, USD) of the tenant's model calls in the period."""
    call = _CALLS.c
    slot = _slot(session, call.at).label("slot")
    statement = (
        sa_select(slot, call.provider, call.model, func.coalesce(func.sum(call.cost_usd), 0))
        .where(call.tenant_id == tenant_id, call.at >= start, call.at < end)
        .group_by(slot, call.provider, call.model)
    )
    return [
        (int(s), str(provider), str(model), float(usd))
        for s, provider, model, usd in await _rows(session, statement)
    ]


async def conversation_cost(
    session: AsyncSession, *, tenant_id: str, start: datetime, end: datetime
) -> float:
    """USD of the model calls made for conversations in the period."""
    call = _CALLS.c
    statement = sa_select(func.coalesce(func.sum(call.cost_usd), 0)).where(
        call.tenant_id == tenant_id,
        call.at >= start,
        call.at < end,
        call.conversation_id.is_not(None),
    )
    return float((await session.execute(statement)).scalar_one())


def _finished_records(tenant_id: str, start: datetime, end: datetime) -> list[Any]:
    job = _JOBS.c
    record = _RECORDS.c
    jobs = sa_select(job.id).where(
        job.tenant_id == tenant_id,
        or_(job.finished_at.is_(None), job.finished_at >= start - FINISHED_LATE),
    )
    return [
        record.job_id.in_(jobs),
        record.tenant_id == tenant_id,
        record.status.in_((RecordStatus.DONE.value, RecordStatus.FAILED.value)),
        record.finished_at >= start,
        record.finished_at < end,
    ]


async def enrichment_slots(
    session: AsyncSession, *, tenant_id: str, start: datetime, end: datetime
) -> list[tuple[int, str, int]]:
    """(slot, status, records) of the enrichment records finished (done or failed) in the
    period."""
    record = _RECORDS.c
    slot = _slot(session, record.finished_at).label("slot")
    statement = (
        sa_select(slot, record.status, func.count())
        .where(*_finished_records(tenant_id, start, end))
        .group_by(slot, record.status)
    )
    return [(int(s), str(status), int(n)) for s, status, n in await _rows(session, statement)]


async def enrichment_errors(
    session: AsyncSession, *, tenant_id: str, start: datetime, end: datetime
) -> list[tuple[str | None, int]]:
    """(error, records) of the records that failed in the period."""
    record = _RECORDS.c
    statement = (
        sa_select(record.error, func.count())
        .where(
            *_finished_records(tenant_id, start, end),
            record.status == RecordStatus.FAILED.value,
        )
        .group_by(record.error)
    )
    return [(error, int(n)) for error, n in await _rows(session, statement)]


async def crm_run_statuses(
    session: AsyncSession, *, tenant_id: str, start: datetime, end: datetime
) -> dict[str, int]:
    run = _RUNS.c
    statement = (
        sa_select(run.status, func.count())
        .where(run.tenant_id == tenant_id, run.created_at >= start, run.created_at < end)
        .group_by(run.status)
    )
    return {str(status): int(n) for status, n in await _rows(session, statement)}
