"""Conversations, their messages, leads, scores and escalations, as the workflow records them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from pydantic import ValidationError
from sqlalchemy import Table, case
from sqlalchemy import select as sa_select
from sqlalchemy import update as sa_update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.agent import LeadScore, ScoreComponent
from models.common import LeadQuality, Role, Stage
from models.conversation import SEEN_IDS_KEPT, TRANSCRIPT_TAIL, RecordTurnInput, ResumeState
from models.identity import ContactDetails, ContactIdError, contact_details
from models.messages import TranscriptEntry
from models.repo.sql import insert as upsert_insert
from models.repo.sql import table_of
from models.tables import Conversation, Escalation, Lead, LeadScoreRecord, Message, utcnow

# The tables the record step writes through Core (see `record_turn`).
_LEADS = table_of(Lead)
_CONVERSATIONS = table_of(Conversation)
_MESSAGES = table_of(Message)
_LEAD_SCORES = table_of(LeadScoreRecord)
_ESCALATIONS = table_of(Escalation)


class LeadWriteConflict(Exception):
    """The lead changed under `record_turn` on every attempt (other writers kept winning)."""


_ATTEMPTS = 3
"""Writes of one lead race only when two turns (or a turn and an API/CRM edit) of the same lead
overlap: a second attempt, reading the winner's lead, almost always succeeds."""


async def _write_lead(
    conn: AsyncConnection, record: RecordTurnInput, now: datetime
) -> tuple[bool | None, bool]:
    """Merge the turn into its lead: whether the lead changed (a new lead always has), or None
    when another transaction wrote the lead between our read and our write; and whether the
    conversation has open escalations (read in the same statement, so a turn that resolves none
    costs no UPDATE).

    The version bumps when the name, the fields (merged over the known ones), the score, the
    tags (when the turn sends them), do-not-contact (when the turn sets it) or the phone/e-mail
    the contact id gives (only where the lead has none) changed; a new lead starts at 1 and
    counts its first turn's changes the same way."""
    escalation = _ESCALATIONS.c
    # One row whether or not the lead exists: the open-escalations flag, LEFT JOIN the lead.
    flag = sa_select(
        sa_select(escalation.id)
        .where(
            escalation.conversation_id == record.conversation_id,
            escalation.resolved_at.is_(None),
        )
        .exists()
        .label("escalations_open")
    ).subquery("flag")
    row = (
        await conn.execute(
            sa_select(
                flag.c.escalations_open,
                _LEADS.c.id,
                _LEADS.c.name,
                _LEADS.c.email,
                _LEADS.c.phone,
                _LEADS.c.fields,
                _LEADS.c.score,
                _LEADS.c.quality,
                _LEADS.c.do_not_contact,
                _LEADS.c.version,
                _LEADS.c.tags,
            ).select_from(flag.outerjoin(_LEADS, _LEADS.c.id == record.lead_id))
        )
    ).one()
    escalations_open = bool(row[0])
    known = row[2:] if row[1] is not None else None
    fields: dict[str, Any]
    tags: list[str] | None
    if known is None:  # the defaults of a new Lead
        name, email, phone, fields, score, quality, do_not_contact, version, tags = (
            None,
            None,
            None,
            {},
            0,
            "COLD",
            False,
            1,
            [],
        )
    else:
        name, email, phone, fields, score, quality, do_not_contact, version, tags = known
    changes: dict[str, Any] = {}
    if record.contact_name and name != record.contact_name:
        changes["name"] = record.contact_name
    merged = {**fields, **record.fields}
    if merged != fields:
        changes["fields"] = merged
        if merged.get("email"):
            changes["email"] = str(merged["email"])
        if merged.get("phone"):
            changes["phone"] = str(merged["phone"])
    # The channel's own address fills what the lead lacks (a WhatsApp id is the phone): a lead
    # never has an unknown phone because nobody typed it. It never overwrites a known value.
    details = _contact_details(record) if not (phone and email) else ContactDetails()
    if details.phone and not phone and not changes.get("phone"):
        changes["phone"] = details.phone
    if details.email and not email and not changes.get("email"):
        changes["email"] = details.email
    if record.score is not None and (
        score != record.score.total or quality != record.score.quality.value
    ):
        changes["score"], changes["quality"] = record.score.total, record.score.quality.value
    if record.do_not_contact is not None and bool(do_not_contact) != record.do_not_contact:
        # An opt-out (or an operator's lift) is a change like any other: it bumps the version,
        # so the CRM sync carries it to every CRM.
        changes["do_not_contact"] = record.do_not_contact
    if record.tags is not None and list(tags or ()) != list(record.tags):
        # The workflow's tags (workflows/tags.py), sent only when they changed: a change bumps
        # the version like any other, so the CRM sync writes the new labels and tags.
        changes["tags"] = list(record.tags)

    if known is None:
        values = {
            "name": name,
            "email": email,
            "phone": phone,
            "fields": fields,
            "score": score,
            "quality": quality,
            "do_not_contact": do_not_contact,
            "tags": tags,
            **changes,
        }
        inserted = await conn.execute(
            upsert_insert(conn, _LEADS)
            .values(
                id=record.lead_id,
                tenant_id=record.tenant_id,
                channel=record.channel.value,
                address=record.contact,
                version=version + 1 if changes else version,
                created_at=now,
                updated_at=now,
                **values,
            )
            .on_conflict_do_nothing(index_elements=[_LEADS.c.id])
            .returning(_LEADS.c.id)
        )
        # RETURNING, not rowcount: the async psycopg adapter reports -1 for this statement.
        return (True if inserted.first() is not None else None), escalations_open
    if not changes:
        return False, escalations_open
    # Only the changed columns, as the ORM would: a column another writer set meanwhile (say
    # do_not_contact) is not overwritten with what we read. The version check makes the write
    # lose cleanly to a concurrent one (which then is re-read and merged) instead of undoing it.
    updated = await conn.execute(
        sa_update(_LEADS)
        .where(_LEADS.c.id == record.lead_id, _LEADS.c.version == version)
        .values(version=version + 1, updated_at=now, **changes)
        .returning(_LEADS.c.id)
    )
    return (True if updated.first() is not None else None), escalations_open


def _contact_details(record: RecordTurnInput) -> ContactDetails:
    try:
        return contact_details(record.channel, record.contact)
    except ContactIdError:
        # Refused at the boundary (webhook or API) before a conversation starts; a run started
        # before that check existed keeps recording, without the details.
        return ContactDetails()


async def _write_conversation(
    conn: AsyncConnection, record: RecordTurnInput, now: datetime
) -> None:
    """Create or update the conversation in one `INSERT … ON CONFLICT (id) DO UPDATE`: the stage
    and lead are the turn's, the thread is kept when the turn has none, the turn count never
    goes back, the score and last message time change only when the turn has them."""
    c = _CONVERSATIONS.c
    thread = record.thread or None
    last_message_at = max(e.at for e in record.entries) if record.entries else None
    statement = upsert_insert(conn, _CONVERSATIONS).values(
        id=record.conversation_id,
        tenant_id=record.tenant_id,
        channel=record.channel.value,
        contact=record.contact,
        lead_id=record.lead_id,
        stage=record.stage.value,
        score=record.score.total if record.score is not None else 0,
        quality=record.score.quality.value if record.score is not None else "COLD",
        thread=thread,
        turns=max(0, record.turns),
        last_message_at=last_message_at,
        created_at=now,
        updated_at=now,
    )
    new = statement.excluded
    # CASE rather than max()/greatest(): the two-argument maximum is spelt differently by SQLite
    # and PostgreSQL.
    changes: dict[str, Any] = {
        "lead_id": new.lead_id,
        "stage": new.stage,
        "thread": func.coalesce(new.thread, c.thread),
        "turns": case((new.turns > c.turns, new.turns), else_=c.turns),
        "updated_at": new.updated_at,
    }
    if record.score is not None:
        changes["score"], changes["quality"] = new.score, new.quality
    if last_message_at is not None:
        changes["last_message_at"] = new.last_message_at
    await conn.execute(statement.on_conflict_do_update(index_elements=[c.id], set_=changes))


async def _write_turn_rows(conn: AsyncConnection, record: RecordTurnInput, now: datetime) -> None:
    """The turn's messages, score and escalation, each `ON CONFLICT DO NOTHING` on its
    (conversation, dedupe key): a replayed or concurrently retried turn adds nothing."""
    messages: dict[str, dict[str, Any]] = {}
    for index, entry in enumerate(record.entries):
        key = entry.provider_message_id or f"{record.turn_key}:{index}"
        messages.setdefault(
            key,
            {
                "conversation_id": record.conversation_id,
                "tenant_id": record.tenant_id,
                "role": entry.role.value,
                "text": entry.text,
                "at": entry.at,
                "provider_message_id": entry.provider_message_id,
                "dedupe_key": key,
                "knowledge_ids": list(entry.knowledge_ids),
            },
        )
    if messages:
        # One multi-row VALUES: the rows get their ids in transcript order.
        await _insert_once(conn, _MESSAGES, list(messages.values()))
    if record.score is not None:
        await _insert_once(
            conn,
            _LEAD_SCORES,
            dict(
                tenant_id=record.tenant_id,
                lead_id=record.lead_id,
                conversation_id=record.conversation_id,
                dedupe_key=record.turn_key,
                total=record.score.total,
                quality=record.score.quality.value,
                components=[c.model_dump() for c in record.score.components],
                at=now,
            ),
        )
    if record.escalation is not None:
        await _insert_once(
            conn,
            _ESCALATIONS,
            dict(
                tenant_id=record.tenant_id,
                conversation_id=record.conversation_id,
                dedupe_key=record.turn_key,
                rule=record.escalation.rule,
                reason=record.escalation.reason,
                notified=list(record.escalation.notified),
                created_at=now,
                resolved_at=None,
            ),
        )


async def _insert_once(
    conn: AsyncConnection, table: Table, rows: dict[str, Any] | list[dict[str, Any]]
) -> None:
    """Insert, or nothing where the (conversation, dedupe key) is already there."""
    await conn.execute(
        upsert_insert(conn, table)
        .values(rows)
        .on_conflict_do_nothing(index_elements=[table.c.conversation_id, table.c.dedupe_key])
    )


async def _resolve_open_escalations(
    conn: AsyncConnection, *, conversation_id: str, now: datetime
) -> None:
    table = _ESCALATIONS
    await conn.execute(
        sa_update(table)
        .where(table.c.conversation_id == conversation_id, table.c.resolved_at.is_(None))
        .values(resolved_at=now)
    )


async def record_turn(session: AsyncSession, *, record: RecordTurnInput) -> bool:
    """Write a turn in one transaction. Idempotent: replaying the same turn key changes nothing
    in the lead, messages, score or escalations (and returns False).

    The lead (merged, its version bumped when it changed), the conversation, the turn's messages,
    its score and escalation (once per turn key); unless the turn hands the conversation to a
    human, the conversation's open escalations are resolved. Returns whether the lead changed
    (so a CRM sync is worth requesting).

    Core statements with `ON CONFLICT` instead of the ORM's read-then-write: a plain turn is
    5 statements (6 when it resolves an escalation), not ~15 in two transactions, and
    statements are worker CPU (issue 8). They
    bypass the session's identity map: a Lead or Conversation loaded in `session` before the
    call is not refreshed. A concurrent retry of the same turn adds no rows (the conflicts) and,
    losing the lead's version check, re-reads the lead: it then finds nothing to change."""
    for _ in range(_ATTEMPTS):
        now = utcnow()
        conn = await session.connection()
        changed, escalations_open = await _write_lead(conn, record, now)
        if changed is None:
            await session.rollback()
            continue
        await _write_conversation(conn, record, now)
        await _write_turn_rows(conn, record, now)
        # Only when there is one to resolve (read with the lead; the turn's own counts too):
        # a plain turn saves the UPDATE.
        if record.stage != Stage.HUMAN_HANDOFF and (escalations_open or record.escalation):
            await _resolve_open_escalations(conn, conversation_id=record.conversation_id, now=now)
        await session.commit()
        return changed
    raise LeadWriteConflict(f"lead {record.lead_id!r} changed under every attempt to record a turn")


class LeadAtTurnStart(NamedTuple):
    """What a turn's context needs of its lead: do-not-contact and, when asked, its history."""

    do_not_contact: bool
    resume: ResumeState | None


# The lead's conversation, in the statement that reads the lead: the one last written among the
# lead's (by the index on conversations.lead_id). A lead has two when its conversation was
# started under a legacy id (the contact in clear) and a later one under its hashed id
# (models/workflow_ids.py): the run resumes from the latest, whichever its id.
_LATEST_CONVERSATION = _CONVERSATIONS.alias("latest")
_CONVERSATION_OF_LEAD = (
    sa_select(_LATEST_CONVERSATION.c.id)
    .where(_LATEST_CONVERSATION.c.lead_id == _LEADS.c.id)
    .order_by(_LATEST_CONVERSATION.c.updated_at.desc(), _LATEST_CONVERSATION.c.id.desc())
    .limit(1)
    .correlate(_LEADS)
    .scalar_subquery()
)


async def lead_at_turn_start(
    session: AsyncSession, *, tenant_id: str, lead_id: str, resume: bool
) -> LeadAtTurnStart:
    """The lead's do-not-contact and, with `resume`, what the database holds of its earlier runs
    (`ResumeState`; None when the lead has no conversation yet).

    Without `resume` one statement (as the plain turn's context always took); with it, the same
    one statement for a lead without history (a new lead: the first turn of every conversation)
    and a second for a lead with one: its conversation's messages. The first reads the lead,
    its conversation (the latest of the lead's, by the lead id index) and its latest
    score (by the max id of the lead's indexed score rows) at once."""
    conn = await session.connection()
    lead = _LEADS.c
    owned = (lead.id == lead_id, lead.tenant_id == tenant_id)
    if not resume:
        row = (await conn.execute(sa_select(lead.do_not_contact).where(*owned))).first()
        return LeadAtTurnStart(do_not_contact=bool(row and row[0]), resume=None)
    conversation = _CONVERSATIONS.c
    score = _LEAD_SCORES.c
    scored = _LEAD_SCORES.alias("scored")
    latest_score = (
        sa_select(func.max(scored.c.id))
        .where(scored.c.lead_id == lead.id)
        .correlate(_LEADS)
        .scalar_subquery()
    )
    row = (
        await conn.execute(
            sa_select(
                lead.name,
                lead.fields,
                lead.score,
                lead.quality,
                lead.do_not_contact,
                lead.tags,
                conversation.id,
                conversation.stage,
                conversation.turns,
                score.total,
                score.quality,
                score.components,
            )
            .select_from(
                _LEADS.outerjoin(
                    _CONVERSATIONS, conversation.id == _CONVERSATION_OF_LEAD
                ).outerjoin(_LEAD_SCORES, score.id == latest_score)
            )
            .where(*owned)
        )
    ).first()
    if row is None:
        return LeadAtTurnStart(do_not_contact=False, resume=None)
    (
        name,
        fields,
        lead_total,
        lead_quality,
        do_not_contact,
        tags,
        conversation_id,
        stage,
        turns,
        scored_total,
        scored_quality,
        components,
    ) = row
    if conversation_id is None:
        return LeadAtTurnStart(do_not_contact=bool(do_not_contact), resume=None)
    transcript, seen = await _tail_and_seen_ids(conn, conversation_id=conversation_id)
    return LeadAtTurnStart(
        do_not_contact=bool(do_not_contact),
        resume=ResumeState(
            stage=_stage(stage),
            score=_score(lead_total, lead_quality, scored_total, scored_quality, components),
            fields={k: v for k, v in (fields or {}).items() if isinstance(v, str | int | float)},
            transcript=transcript,
            seen_message_ids=seen,
            turns=int(turns or 0),
            contact_name=name,
            do_not_contact=bool(do_not_contact),
            tags=tuple(str(t) for t in tags or ()),
        ),
    )


async def _tail_and_seen_ids(
    conn: AsyncConnection, *, conversation_id: str
) -> tuple[tuple[TranscriptEntry, ...], tuple[str, ...]]:
    """The last TRANSCRIPT_TAIL entries and the provider ids of the lead's messages among the
    last SEEN_IDS_KEPT, both oldest first, in one statement: the text only of the tail's rows
    (a window's row number), so the ids cost no transcript text."""
    m = _MESSAGES.c
    newest_first = func.row_number().over(order_by=m.id.desc())
    rows = (
        await conn.execute(
            sa_select(
                m.role,
                m.at,
                m.provider_message_id,
                m.knowledge_ids,
                case((newest_first <= TRANSCRIPT_TAIL, m.text), else_=None).label("text"),
            )
            .where(m.conversation_id == conversation_id)
            .order_by(m.id.desc())
            .limit(max(SEEN_IDS_KEPT, TRANSCRIPT_TAIL))
        )
    ).all()
    oldest_first = list(reversed(rows))
    tail = [
        TranscriptEntry(
            role=Role(role),
            text=text,
            at=at if at.tzinfo is not None else at.replace(tzinfo=UTC),  # SQLite: naive UTC
            provider_message_id=provider_id,
            knowledge_ids=tuple(knowledge_ids or ()),
        )
        for role, at, provider_id, knowledge_ids, text in oldest_first
        if text is not None
    ]
    seen = [
        provider_id
        for role, _at, provider_id, _ids, _text in oldest_first
        if role == Role.LEAD.value and provider_id
    ]
    return tuple(tail[-TRANSCRIPT_TAIL:]), tuple(seen[-SEEN_IDS_KEPT:])


def _stage(value: str) -> Stage:
    try:
        return Stage(value)
    except ValueError:
        return Stage.AWAITING_RESPONSE


def _score(
    total: int,
    quality: str,
    scored_total: int | None,
    scored_quality: str | None,
    components: list[dict[str, Any]] | None,
) -> LeadScore | None:
    """The lead's score (its own columns are the latest verdict) with the components of its
    latest score row when that row is this verdict; None when the lead was never scored."""
    if scored_total is None and total == 0 and quality == LeadQuality.COLD.value:
        return None
    parts: tuple[ScoreComponent, ...] = ()
    if scored_total == total and scored_quality == quality:
        try:
            parts = tuple(ScoreComponent.model_validate(c) for c in components or ())
        except ValidationError:
            parts = ()  # written by an older shape: the total and quality still hold
    try:
        return LeadScore(total=total, quality=LeadQuality(quality), components=parts)
    except (ValidationError, ValueError):
        return None


async def add_system_entry(
    session: AsyncSession,
    *,
    tenant_id: str,
    conversation_ids: Sequence[str],
    text: str,
    dedupe_key: str,
    at: datetime,
) -> None:
    """A system entry (an operator's decision, for the record) in each of these conversations'
    transcripts, once per `dedupe_key`. Not committed: the caller commits with its change.

    The conversations' `updated_at` moves to `at` too: the note is activity, so they move up
    the inbox and the live events (api/event_stream.py, which polls `updated_at`) announce it."""
    if not conversation_ids:
        return
    conn = await session.connection()
    await conn.execute(
        sa_update(_CONVERSATIONS)
        .where(_CONVERSATIONS.c.id.in_(list(conversation_ids)))
        .values(updated_at=at)
    )
    await _insert_once(
        conn,
        _MESSAGES,
        [
            {
                "conversation_id": conversation_id,
                "tenant_id": tenant_id,
                "role": Role.SYSTEM.value,
                "text": text,
                "at": at,
                "provider_message_id": None,
                "dedupe_key": dedupe_key,
                "knowledge_ids": [],
            }
            for conversation_id in conversation_ids
        ],
    )


async def list_conversations(
    session: AsyncSession,
    *,
    tenant_id: str,
    stage: str | None = None,
    quality: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[Sequence[Conversation], int]:
    query = select(Conversation).where(Conversation.tenant_id == tenant_id)
    if stage:
        query = query.where(Conversation.stage == stage)
    if quality:
        query = query.where(Conversation.quality == quality)
    total = (await session.exec(select(func.count()).select_from(query.subquery()))).one()
    rows = (
        await session.exec(
            query.order_by(col(Conversation.updated_at).desc()).limit(limit).offset(offset)
        )
    ).all()
    return rows, int(total)


async def get_conversation(
    session: AsyncSession, *, tenant_id: str, conversation_id: str
) -> Conversation | None:
    conv = await session.get(Conversation, conversation_id)
    if conv is None or conv.tenant_id != tenant_id:
        return None
    return conv


async def transcript(session: AsyncSession, *, conversation_id: str) -> Sequence[Message]:
    return (
        await session.exec(
            select(Message)
            .where(Message.conversation_id == conversation_id)
            .order_by(col(Message.id))
        )
    ).all()


async def latest_score(session: AsyncSession, *, conversation_id: str) -> LeadScoreRecord | None:
    return (
        await session.exec(
            select(LeadScoreRecord)
            .where(LeadScoreRecord.conversation_id == conversation_id)
            .order_by(col(LeadScoreRecord.id).desc())
            .limit(1)
        )
    ).first()


async def escalations(session: AsyncSession, *, conversation_id: str) -> Sequence[Escalation]:
    return (
        await session.exec(
            select(Escalation)
            .where(Escalation.conversation_id == conversation_id)
            .order_by(col(Escalation.id))
        )
    ).all()


async def recent_messages(
    session: AsyncSession, *, conversation_id: str, limit: int = 30
) -> list[Message]:
    """The conversation's last `limit` messages, oldest first (the model's context)."""
    rows = await session.exec(
        select(Message)
        .where(Message.conversation_id == conversation_id)
        .order_by(col(Message.id).desc())
        .limit(limit)
    )
    return list(reversed(rows.all()))


async def lead_fields(session: AsyncSession, *, conversation_id: str) -> dict[str, Any]:
    """What is known about the conversation's lead, as of its last recorded turn."""
    row = (
        await session.exec(
            select(Lead.fields)
            .join(Conversation, col(Conversation.lead_id) == col(Lead.id))
            .where(Conversation.id == conversation_id)
        )
    ).first()
    return dict(row) if row else {}
