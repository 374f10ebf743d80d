"""The operator console's reads of conversations (issue 14): the filtered inbox with one row per
conversation (its lead, last message and campaign joined in), what a conversation's page shows
(transcript, the outbox rows of its sends, lead, score, escalations, CRM links, model cost), and
what the live-events poller reads: the conversations changed since a watermark.

Core statements, read only. The rules that turn rows into answers (authors, delivery states,
CRM states, event kinds) live in models/inbox_view.py."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.campaign_tables import CampaignRecipient
from models.common import Stage
from models.crm_tables import CrmLink, Integration
from models.llm_tables import LlmCall
from models.repo.sql import table_of
from models.tables import Conversation, Escalation, Lead, LeadScoreRecord, Message, OutboxMessage

_C = table_of(Conversation)
_L = table_of(Lead)
_M = table_of(Message)
_O = table_of(OutboxMessage)
_R = table_of(CampaignRecipient)
_S = table_of(LeadScoreRecord)
_E = table_of(Escalation)
_I = table_of(Integration)
_K = table_of(CrmLink)
_U = table_of(LlmCall)

_T = TypeVar("_T")

LAST_MESSAGE_CHARS = 140
SEARCH_MAX_CHARS = 100
"""A search term longer than this is refused at the API (422): the LIKE scans stay bounded."""
CHUNK = 200
"""Parameters per OR-list (SQLite's limit is far above 2 x CHUNK)."""


def aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes (UTC); PostgreSQL aware ones."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _aware_or_none(value: datetime | None) -> datetime | None:
    return aware(value) if value is not None else None


# ---- the inbox ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InboxFilter:
    """What `GET /api/v1/conversations` filters on (and `GET /api/v1/leads/{id}`: `lead_id`);
    None means "any"."""

    stage: str | None = None
    quality: str | None = None
    channel: str | None = None
    needs_human: bool | None = None
    campaign_id: str | None = None
    search: str | None = None
    lead_id: str | None = None


@dataclass(frozen=True, slots=True)
class SummaryRow:
    id: str
    tenant_id: str
    channel: str
    contact: str
    stage: str
    score: int
    quality: str
    turns: int
    last_message_at: datetime | None
    updated_at: datetime
    lead_id: str | None
    lead_name: str | None
    last_role: str | None
    last_text: str | None
    last_at: datetime | None
    campaign_id: str | None


def escape_like(term: str) -> str:
    """`term` as a LIKE pattern's literal part: its wildcards and the escape character itself
    match only themselves (ESCAPE '\\')."""
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


_PHONE_CHARS = frozenset("0123456789+-() ./")


def _search(term: str) -> ColumnElement[bool]:
    """Case-insensitive substring of the lead's name, phone or e-mail, the contact id, or the
    text of any of the conversation's messages. A phone typed with spaces or dashes
    (`+31 6 1234`) is also looked for as its digits, as contact ids and phones hold them."""
    pattern = f"%{escape_like(term)}%"
    c, lead, m = _C.c, _L.c, _M.c
    matches: list[ColumnElement[bool]] = [
        lead.name.ilike(pattern, escape="\\"),
        lead.phone.ilike(pattern, escape="\\"),
        lead.email.ilike(pattern, escape="\\"),
        c.contact.ilike(pattern, escape="\\"),
        exists(select(m.id).where(m.conversation_id == c.id, m.text.ilike(pattern, escape="\\"))),
    ]
    digits = "".join(ch for ch in term if ch.isdigit())
    if len(digits) >= 3 and digits != term and set(term) <= _PHONE_CHARS:
        matches += [lead.phone.like(f"%{digits}%"), c.contact.like(f"%{digits}%")]
    return or_(*matches)


def _filtered(tenant_id: str, where: InboxFilter) -> list[ColumnElement[bool]]:
    c = _C.c
    clauses: list[ColumnElement[bool]] = [c.tenant_id == tenant_id]
    if where.stage:
        clauses.append(c.stage == where.stage)
    if where.quality:
        clauses.append(c.quality == where.quality)
    if where.channel:
        clauses.append(c.channel == where.channel)
    if where.needs_human is not None:
        handoff = Stage.HUMAN_HANDOFF.value
        clauses.append(c.stage == handoff if where.needs_human else c.stage != handoff)
    if where.campaign_id:
        r = _R.c
        clauses.append(
            exists(
                select(r.id).where(
                    r.conversation_id == c.id,
                    r.campaign_id == where.campaign_id,
                    r.tenant_id == tenant_id,
                )
            )
        )
    if where.search:
        clauses.append(_search(where.search))
    if where.lead_id:
        clauses.append(c.lead_id == where.lead_id)
    return clauses


def _summary_select() -> Select[Any]:
    c, lead, r = _C.c, _L.c, _R.c
    latest = _M.alias("latest")
    last = _M.alias("last_message")
    last_id = (
        select(func.max(latest.c.id))
        .where(latest.c.conversation_id == c.id)
        .correlate(_C)
        .scalar_subquery()
    )
    # The latest campaign that wrote to this conversation (a lead may be in several).
    campaign = (
        select(r.campaign_id)
        .where(r.conversation_id == c.id)
        .order_by(r.id.desc())
        .limit(1)
        .correlate(_C)
        .scalar_subquery()
    )
    return select(
        c.id,
        c.tenant_id,
        c.channel,
        c.contact,
        c.stage,
        c.score,
        c.quality,
        c.turns,
        c.last_message_at,
        c.updated_at,
        c.lead_id,
        lead.name,
        last.c.role,
        func.substr(last.c.text, 1, LAST_MESSAGE_CHARS),
        last.c.at,
        campaign,
    ).select_from(_C.outerjoin(_L, lead.id == c.lead_id).outerjoin(last, last.c.id == last_id))


def _summary(row: Sequence[Any]) -> SummaryRow:
    values = list(row)
    for index in (8, 9, 14):
        if values[index] is not None:
            values[index] = aware(values[index])
    return SummaryRow(*values)


async def list_inbox(
    session: AsyncSession,
    *,
    tenant_id: str,
    where: InboxFilter,
    limit: int,
    offset: int,
) -> tuple[list[SummaryRow], int]:
    """The tenant's conversations matching `where`, newest activity (`updated_at`: every
    recorded turn, handoff, release, close or system note) first, and how many match."""
    clauses = _filtered(tenant_id, where)
    c = _C.c
    counted = select(func.count()).select_from(_C.outerjoin(_L, _L.c.id == c.lead_id))
    total = (await session.execute(counted.where(*clauses))).scalar_one()
    rows = (
        await session.execute(
            _summary_select()
            .where(*clauses)
            .order_by(c.updated_at.desc(), c.id.desc())
            .limit(limit)
            .offset(offset)
        )
    ).all()
    return [_summary(row) for row in rows], int(total)


async def summary(
    session: AsyncSession, *, tenant_id: str, conversation_id: str
) -> SummaryRow | None:
    """One conversation's summary row; None when it is not the tenant's."""
    c = _C.c
    row = (
        await session.execute(
            _summary_select().where(c.id == conversation_id, c.tenant_id == tenant_id)
        )
    ).first()
    return _summary(row) if row is not None else None


# ---- a conversation's page -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageRow:
    id: int
    role: str
    text: str
    at: datetime
    provider_message_id: str | None
    dedupe_key: str


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    idempotency_key: str
    text: str
    status: str
    provider_message_id: str | None


async def transcript(
    session: AsyncSession, *, conversation_id: str, limit: int
) -> tuple[list[MessageRow], bool]:
    """The conversation's last `limit` messages, oldest first, and whether older ones exist."""
    m = _M.c
    rows = (
        await session.execute(
            select(m.id, m.role, m.text, m.at, m.provider_message_id, m.dedupe_key)
            .where(m.conversation_id == conversation_id)
            .order_by(m.id.desc())
            .limit(limit + 1)
        )
    ).all()
    more = len(rows) > limit
    kept = list(reversed(rows[:limit]))
    return [
        MessageRow(
            id=r[0], role=r[1], text=r[2], at=aware(r[3]), provider_message_id=r[4], dedupe_key=r[5]
        )
        for r in kept
    ], more


async def outbox_of(
    session: AsyncSession, *, tenant_id: str, conversation_id: str
) -> list[OutboxRow]:
    """The outbox rows of the conversation's sends, oldest first."""
    o = _O.c
    rows = (
        await session.execute(
            select(o.id, o.idempotency_key, o.text, o.status, o.provider_message_id)
            .where(o.conversation_id == conversation_id, o.tenant_id == tenant_id)
            .order_by(o.id)
        )
    ).all()
    return [OutboxRow(*row) for row in rows]


async def lead_of(session: AsyncSession, *, tenant_id: str, lead_id: str) -> Lead | None:
    lead = await session.get(Lead, lead_id)
    return lead if lead is not None and lead.tenant_id == tenant_id else None


async def latest_score(
    session: AsyncSession, *, conversation_id: str
) -> tuple[int, str, list[dict[str, Any]]] | None:
    s = _S.c
    row = (
        await session.execute(
            select(s.total, s.quality, s.components)
            .where(s.conversation_id == conversation_id)
            .order_by(s.id.desc())
            .limit(1)
        )
    ).first()
    return (int(row[0]), str(row[1]), list(row[2] or ())) if row is not None else None


@dataclass(frozen=True, slots=True)
class EscalationRow:
    rule: str
    reason: str
    notified: list[str]
    created_at: datetime
    resolved_at: datetime | None


async def escalations(session: AsyncSession, *, conversation_id: str) -> list[EscalationRow]:
    e = _E.c
    rows = (
        await session.execute(
            select(e.rule, e.reason, e.notified, e.created_at, e.resolved_at)
            .where(e.conversation_id == conversation_id)
            .order_by(e.id)
        )
    ).all()
    return [
        EscalationRow(
            rule=r[0],
            reason=r[1],
            notified=[str(n) for n in r[2] or ()],
            created_at=aware(r[3]),
            resolved_at=_aware_or_none(r[4]),
        )
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class CrmRow:
    """A CRM connection of the tenant and the lead's link in it (None: never synced there);
    for the built-in lead table (no connection row) `integration_id` is "builtin"."""

    integration_id: str
    kind: str
    name: str
    enabled: bool
    remote_id: str | None
    outcome: str | None
    reason: str | None
    last_version: int | None
    last_synced_at: datetime | None
    linked: bool


async def crm_of_lead(session: AsyncSession, *, tenant_id: str, lead_id: str) -> list[CrmRow]:
    """Every CRM connection of the tenant (in saga order) with the lead's link in it, then the
    lead's links to connections no longer listed (the built-in table)."""
    i, k = _I.c, _K.c
    connections = (
        await session.execute(
            select(
                i.id,
                i.kind,
                i.name,
                i.enabled,
                k.remote_id,
                k.outcome,
                k.reason,
                k.last_version,
                k.last_synced_at,
                k.id,
            )
            .select_from(_I.outerjoin(_K, and_(k.integration_id == i.id, k.lead_id == lead_id)))
            .where(i.tenant_id == tenant_id)
            .order_by(i.position, i.id)
        )
    ).all()
    found = [
        CrmRow(
            integration_id=r[0],
            kind=r[1],
            name=r[2],
            enabled=bool(r[3]),
            remote_id=r[4],
            outcome=r[5],
            reason=r[6],
            last_version=r[7],
            last_synced_at=_aware_or_none(r[8]),
            linked=r[9] is not None,
        )
        for r in connections
    ]
    listed = {row.integration_id for row in found}
    others = (
        await session.execute(
            select(
                k.integration_id, k.remote_id, k.outcome, k.reason, k.last_version, k.last_synced_at
            )
            .where(k.tenant_id == tenant_id, k.lead_id == lead_id)
            .order_by(k.id)
        )
    ).all()
    for r in others:
        if r[0] in listed:
            continue
        found.append(
            CrmRow(
                integration_id=r[0],
                kind=r[0],
                name=r[0],
                enabled=True,
                remote_id=r[1],
                outcome=r[2],
                reason=r[3],
                last_version=r[4],
                last_synced_at=_aware_or_none(r[5]),
                linked=True,
            )
        )
    return found


async def cost_by_model(
    session: AsyncSession, *, conversation_id: str
) -> list[tuple[str, int, float]]:
    """(model, calls, USD) of the conversation's model calls (the usage ledger)."""
    u = _U.c
    rows = (
        await session.execute(
            select(u.model, func.count(), func.coalesce(func.sum(u.cost_usd), 0))
            .where(u.conversation_id == conversation_id)
            .group_by(u.model)
            .order_by(u.model)
        )
    ).all()
    return [(str(r[0]), int(r[1]), float(r[2])) for r in rows]


# ---- what changed (the live events' poller) ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChangeRow:
    id: str
    tenant_id: str
    stage: str
    last_message_at: datetime | None
    updated_at: datetime
    last_message_id: int | None
    last_role: str | None


def _change_select() -> Select[Any]:
    c = _C.c
    latest = _M.alias("latest")
    last = _M.alias("last_message")
    last_id = (
        select(func.max(latest.c.id))
        .where(latest.c.conversation_id == c.id)
        .correlate(_C)
        .scalar_subquery()
    )
    return select(
        c.id, c.tenant_id, c.stage, c.last_message_at, c.updated_at, last.c.id, last.c.role
    ).select_from(_C.outerjoin(last, last.c.id == last_id))


def _change(row: Sequence[Any]) -> ChangeRow:
    return ChangeRow(
        id=row[0],
        tenant_id=row[1],
        stage=row[2],
        last_message_at=_aware_or_none(row[3]),
        updated_at=aware(row[4]),
        last_message_id=row[5],
        last_role=row[6],
    )


def _chunks(items: Sequence[_T], size: int = CHUNK) -> Iterable[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def latest_update(session: AsyncSession, *, tenant_id: str) -> datetime | None:
    """When the tenant's conversations last changed (None: it has none)."""
    value = (
        await session.execute(select(func.max(_C.c.updated_at)).where(_C.c.tenant_id == tenant_id))
    ).scalar_one_or_none()
    return aware(value) if value is not None else None


async def changed_since(
    session: AsyncSession, *, since: Mapping[str, datetime], limit: int
) -> list[ChangeRow]:
    """The conversations of these tenants whose `updated_at` is after the tenant's watermark,
    oldest change first: the `limit` latest when more changed (the older ones of a burst
    have been seen by earlier polls). One range of the (tenant_id, updated_at) index per
    tenant (migration 0017)."""
    c = _C.c
    found: list[ChangeRow] = []
    for group in _chunks(sorted(since.items())):
        rows = (
            await session.execute(
                _change_select()
                .where(or_(*(and_(c.tenant_id == t, c.updated_at > s) for t, s in group)))
                .order_by(c.updated_at.desc(), c.id.desc())
                .limit(limit)
            )
        ).all()
        found.extend(_change(row) for row in rows)
    found.sort(key=lambda row: (row.updated_at, row.id))
    return found[-limit:]


async def new_message_roles(
    session: AsyncSession, *, after: Mapping[str, int]
) -> dict[str, set[str]]:
    """The roles of each conversation's messages with an id above the given one."""
    m = _M.c
    roles: dict[str, set[str]] = {}
    for group in _chunks(sorted(after.items())):
        rows = (
            await session.execute(
                select(m.conversation_id, m.role)
                .where(or_(*(and_(m.conversation_id == cid, m.id > floor) for cid, floor in group)))
                .group_by(m.conversation_id, m.role)
            )
        ).all()
        for conversation_id, role in rows:
            roles.setdefault(conversation_id, set()).add(role)
    return roles


async def max_message_id(session: AsyncSession) -> int:
    """The highest message id (0: none yet); by the primary key, instant on both databases."""
    value = (await session.execute(select(func.max(_M.c.id)))).scalar_one_or_none()
    return int(value or 0)
