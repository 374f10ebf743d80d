"""The record step and the outbox as Core statements with ON CONFLICT, on SQLite and PostgreSQL
(the `db` fixture): what they write, their idempotency under replays and concurrent retries, and
how many statements they cost, counted so that a regression fails here (statements are worker
CPU, issue 8)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event
from sqlmodel import func, select

from models.agent import LeadScore, ScoreComponent
from models.common import Channel, LeadQuality, Role, Stage
from models.conversation import EscalationRecord, RecordTurnInput, conversation_workflow_id
from models.db import Database
from models.messages import OutboundMessage, TranscriptEntry
from models.repo import conversations as repo
from models.repo import outbox as outbox_repo
from models.tables import Conversation, Escalation, Lead, LeadScoreRecord, Message
from tests.conftest import make_tenant

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)

# Measured: a fresh turn with messages and a score is SELECT lead (with whether escalations
# are open), INSERT lead, upsert conversation, INSERT messages, INSERT score; its replay skips
# the lead write. UPDATE escalations only when one is open (or the turn adds one). A claim is
# one INSERT ... RETURNING, a mark one UPDATE ... RETURNING.
FRESH_TURN_STATEMENTS = 5
REPLAYED_TURN_STATEMENTS = 4
RESOLVING_TURN_STATEMENTS = 6
CLAIM_AND_MARK_STATEMENTS = 2


@contextmanager
def counted(db: Database) -> Iterator[list[str]]:
    """The SQL statements the engine sends while the block runs."""
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)


def _score(total: int, quality: LeadQuality) -> LeadScore:
    return LeadScore(
        total=total,
        quality=quality,
        components=(ScoreComponent(name="intent", points=total, max_points=100, reason="r"),),
    )


def _turn(tenant_id: str, **overrides: Any) -> RecordTurnInput:
    values: dict[str, Any] = {
        "conversation_id": conversation_workflow_id(tenant_id, "waha", "31600000001"),
        "tenant_id": tenant_id,
        "channel": Channel.WAHA,
        "contact": "31600000001",
        "contact_name": "Jan",
        "thread": "thread-1",
        "turn_key": "turn-1",
        "entries": (
            TranscriptEntry(role=Role.LEAD, text="Hallo", at=T0, provider_message_id="wamid-1"),
            TranscriptEntry(role=Role.AI, text="Welkom!", at=T0 + timedelta(seconds=2)),
        ),
        "stage": Stage.QUALIFYING,
        "lead_id": f"lead-{tenant_id}",
        "score": _score(40, LeadQuality.WARM),
        "fields": {"budget": 20000},
        "turns": 1,
    }
    values.update(overrides)
    return RecordTurnInput(**values)


async def _record(db: Database, record: RecordTurnInput) -> bool:
    async with db.session() as session:
        return await repo.record_turn(session, record=record)


async def _count(db: Database, model: Any, conversation_id: str) -> int:
    async with db.session() as session:
        query = (
            select(func.count()).select_from(model).where(model.conversation_id == conversation_id)
        )
        return int((await session.exec(query)).one())


async def _lead(db: Database, lead_id: str) -> Lead:
    async with db.session() as session:
        lead = await session.get(Lead, lead_id)
    assert lead is not None
    return lead


async def _conversation(db: Database, conversation_id: str) -> Conversation:
    async with db.session() as session:
        conv = await session.get(Conversation, conversation_id)
    assert conv is not None
    return conv


# -- record_turn ------------------------------------------------------------------------------


async def test_turns_merge_the_lead_and_keep_the_conversation_monotonic(db: Database) -> None:
    tid, _ = await make_tenant(db)
    first = _turn(tid)
    assert await _record(db, first) is True
    lead = await _lead(db, first.lead_id)
    # A new lead counts its first turn's changes (name, fields, score) as one version.
    assert (lead.version, lead.name, lead.fields, lead.score, lead.quality) == (
        2,
        "Jan",
        {"budget": 20000},
        40,
        "WARM",
    )
    assert lead.created_at.tzinfo is not None and lead.updated_at >= lead.created_at
    conv = await _conversation(db, first.conversation_id)
    assert (conv.lead_id, conv.stage, conv.thread, conv.turns, conv.score, conv.quality) == (
        first.lead_id,
        "qualifying",
        "thread-1",
        1,
        40,
        "WARM",
    )
    assert conv.last_message_at == T0 + timedelta(seconds=2)

    # Replayed (an activity retry): nothing changes, the lead is not reported as changed.
    assert await _record(db, first) is False
    assert (await _lead(db, first.lead_id)).version == 2
    assert await _count(db, Message, first.conversation_id) == 2
    assert await _count(db, LeadScoreRecord, first.conversation_id) == 1

    # A turn without thread, score or messages, with a lower turn count (an event in handoff):
    # the conversation keeps its thread, score, last message time and turn count.
    event_turn = _turn(
        tid,
        turn_key="event-1",
        thread=None,
        entries=(),
        score=None,
        fields={},
        contact_name=None,
        turns=0,
        stage=Stage.NURTURE,
    )
    assert await _record(db, event_turn) is False
    conv = await _conversation(db, first.conversation_id)
    assert (conv.stage, conv.thread, conv.turns, conv.score, conv.quality) == (
        "nurture",
        "thread-1",
        1,
        40,
        "WARM",
    )
    assert conv.last_message_at == T0 + timedelta(seconds=2)

    # New fields merge over the known ones and bump the version once; e-mail and phone follow.
    richer = _turn(
        tid,
        turn_key="turn-2",
        entries=(TranscriptEntry(role=Role.LEAD, text="mail", at=T0 + timedelta(minutes=1)),),
        fields={"email": "jan@example.nl", "phone": "+31600000001"},
        score=_score(70, LeadQuality.HOT),
        turns=2,
    )
    assert await _record(db, richer) is True
    lead = await _lead(db, first.lead_id)
    assert (lead.version, lead.email, lead.phone, lead.score, lead.quality) == (
        3,
        "jan@example.nl",
        "+31600000001",
        70,
        "HOT",
    )
    assert lead.fields == {
        "budget": 20000,
        "email": "jan@example.nl",
        "phone": "+31600000001",
    }
    conv = await _conversation(db, first.conversation_id)
    assert (conv.turns, conv.score, conv.quality) == (2, 70, "HOT")
    assert conv.last_message_at == T0 + timedelta(minutes=1)
    assert await _count(db, Message, first.conversation_id) == 3
    assert await _count(db, LeadScoreRecord, first.conversation_id) == 2


async def test_an_escalation_stays_open_until_a_turn_that_does_not_hand_off(db: Database) -> None:
    tid, _ = await make_tenant(db)
    escalating = _turn(
        tid,
        stage=Stage.HUMAN_HANDOFF,
        escalation=EscalationRecord(rule="financing", reason="asks", notified=("Sanne",)),
    )
    assert await _record(db, escalating) is True
    assert await _record(db, escalating) is False  # replayed: one escalation
    # Another handoff turn (the lead writes while a human handles it) leaves it open.
    assert await _record(db, _turn(tid, turn_key="turn-2", stage=Stage.HUMAN_HANDOFF)) is False
    async with db.session() as session:
        (esc,) = await repo.escalations(session, conversation_id=escalating.conversation_id)
    assert (esc.rule, esc.notified, esc.resolved_at) == ("financing", ["Sanne"], None)

    # The AI takes over again: the open escalation is resolved in the turn's transaction.
    back = _turn(tid, turn_key="turn-3", stage=Stage.QUALIFYING, entries=())
    assert await _record(db, back) is False
    async with db.session() as session:
        (esc,) = await repo.escalations(session, conversation_id=escalating.conversation_id)
    assert esc.resolved_at is not None and esc.resolved_at.tzinfo is not None
    resolved_at = esc.resolved_at

    # Later turns do not touch a resolved escalation.
    assert await _record(db, _turn(tid, turn_key="turn-4", entries=())) is False
    async with db.session() as session:
        (esc,) = await repo.escalations(session, conversation_id=escalating.conversation_id)
    assert esc.resolved_at == resolved_at


async def test_concurrent_retries_of_one_turn_write_it_once(db: Database) -> None:
    """Two attempts of the same turn at once (a retry overlapping a slow first attempt): the
    lead is created once, the rows once, and only one attempt reports the lead changed."""
    tid, _ = await make_tenant(db)
    turn = _turn(
        tid,
        stage=Stage.HUMAN_HANDOFF,
        escalation=EscalationRecord(rule="r", reason="x", notified=()),
    )
    results = await asyncio.gather(*(_record(db, turn) for _ in range(2)))
    assert sorted(results) == [False, True]
    assert (await _lead(db, turn.lead_id)).version == 2
    assert await _count(db, Message, turn.conversation_id) == 2
    assert await _count(db, LeadScoreRecord, turn.conversation_id) == 1
    assert await _count(db, Escalation, turn.conversation_id) == 1

    # The same on an existing lead whose turn changes it: one version bump, not two.
    hotter = _turn(
        tid,
        turn_key="turn-2",
        entries=(TranscriptEntry(role=Role.LEAD, text="nu", at=T0 + timedelta(minutes=1)),),
        score=_score(90, LeadQuality.HOT),
        turns=2,
    )
    results = await asyncio.gather(*(_record(db, hotter) for _ in range(2)))
    assert sorted(results) == [False, True]
    lead = await _lead(db, turn.lead_id)
    assert (lead.version, lead.score) == (3, 90)
    assert await _count(db, Message, turn.conversation_id) == 3
    assert await _count(db, LeadScoreRecord, turn.conversation_id) == 2


async def test_a_turn_sets_and_lifts_do_not_contact(db: Database) -> None:
    """An opt-out is written with the turn and reported as a change (so the CRMs get it); a
    turn that says nothing about it leaves it alone; a lift is a change too."""
    tid, _ = await make_tenant(db)
    opted_out = _turn(tid, do_not_contact=True)
    assert await _record(db, opted_out) is True
    lead = await _lead(db, opted_out.lead_id)
    assert (lead.do_not_contact, lead.version) == (True, 2)
    assert await _record(db, opted_out) is False  # replayed: no second bump

    # Later messages are recorded with do_not_contact None: the opt-out stays.
    quiet = _turn(tid, turn_key="turn-2", score=None, fields={}, do_not_contact=None)
    assert await _record(db, quiet) is False
    assert (await _lead(db, opted_out.lead_id)).do_not_contact is True
    # Saying it again changes nothing.
    again = _turn(tid, turn_key="turn-3", score=None, fields={}, do_not_contact=True)
    assert await _record(db, again) is False
    assert (await _lead(db, opted_out.lead_id)).version == 2

    # The lift alone is a change: a new version for the CRM sync.
    lifted = _turn(tid, turn_key="turn-4", score=None, fields={}, do_not_contact=False)
    assert await _record(db, lifted) is True
    lead = await _lead(db, opted_out.lead_id)
    assert (lead.do_not_contact, lead.version) == (False, 3)

    # An opt-out on an existing lead whose turn changes nothing else is still a change.
    stop = _turn(tid, turn_key="turn-5", score=None, fields={}, do_not_contact=True)
    assert await _record(db, stop) is True
    assert (await _lead(db, opted_out.lead_id)).version == 4


@pytest.mark.parametrize(
    ("channel", "contact", "phone", "email"),
    [
        (Channel.WAHA, "31612345678@c.us", "+31612345678", None),
        (Channel.WAHA, "31612345678@s.whatsapp.net", "+31612345678", None),
        (Channel.WAHA, "123456789012345@lid", None, None),  # not a phone until mapped
        (Channel.WHATSAPP, "4915112345678", "+4915112345678", None),
        (Channel.EMAIL, "Jan.Jansen@Example.NL", None, "jan.jansen@example.nl"),
        (Channel.MESSENGER, "6789012345678901", None, None),
    ],
)
async def test_the_contact_id_gives_the_lead_its_phone_or_email(
    db: Database, channel: Channel, contact: str, phone: str | None, email: str | None
) -> None:
    tid, _ = await make_tenant(db)
    turn = _turn(
        tid,
        channel=channel,
        contact=contact,
        conversation_id=conversation_workflow_id(tid, channel, contact),
        fields={},
    )
    assert await _record(db, turn) is True
    lead = await _lead(db, turn.lead_id)
    assert (lead.phone, lead.email) == (phone, email)


async def test_the_contact_id_never_overwrites_a_known_phone_or_email(db: Database) -> None:
    tid, _ = await make_tenant(db)
    # The lead wrote another number: that one is the lead's, the WhatsApp id does not replace it.
    typed = _turn(tid, contact="31612345678@c.us", fields={"phone": "+31 6 87654321"})
    assert await _record(db, typed) is True
    assert (await _lead(db, typed.lead_id)).phone == "+31 6 87654321"
    later = _turn(tid, contact="31612345678@c.us", turn_key="turn-2", fields={}, score=None)
    assert await _record(db, later) is False
    assert (await _lead(db, typed.lead_id)).phone == "+31 6 87654321"

    # An existing lead without a phone (recorded before the contact gave one) gets it once.
    async with db.session() as session:
        lead = await session.get(Lead, typed.lead_id)
        assert lead is not None
        lead.phone = None
        session.add(lead)
        await session.commit()
    version = (await _lead(db, typed.lead_id)).version
    filled = _turn(tid, contact="31612345678@c.us", turn_key="turn-3", fields={}, score=None)
    assert await _record(db, filled) is True
    lead = await _lead(db, typed.lead_id)
    assert (lead.phone, lead.version) == ("+31612345678", version + 1)


async def test_a_turn_costs_few_statements(db: Database) -> None:
    tid, _ = await make_tenant(db)
    turn = _turn(tid)
    with counted(db) as statements:
        assert await _record(db, turn) is True
    assert len(statements) <= FRESH_TURN_STATEMENTS, statements
    with counted(db) as statements:
        assert await _record(db, turn) is False
    assert len(statements) <= REPLAYED_TURN_STATEMENTS, statements
    assert not any("UPDATE escalations" in sql for sql in statements), statements

    # A handoff turn, then the turn that takes the conversation back resolves its escalation.
    handoff = _turn(
        tid,
        turn_key="turn-2",
        stage=Stage.HUMAN_HANDOFF,
        escalation=EscalationRecord(rule="r", reason="x", notified=()),
    )
    with counted(db) as statements:
        await _record(db, handoff)
    assert not any("UPDATE escalations" in sql for sql in statements), statements
    back = _turn(tid, turn_key="turn-3", stage=Stage.QUALIFYING, score=None)
    with counted(db) as statements:
        await _record(db, back)
    assert len(statements) <= RESOLVING_TURN_STATEMENTS, statements
    assert sum("UPDATE escalations" in sql for sql in statements) == 1, statements
    with counted(db) as statements:
        await _record(db, _turn(tid, turn_key="turn-4", stage=Stage.QUALIFYING, score=None))
    assert not any("UPDATE escalations" in sql for sql in statements), statements


# -- outbox -----------------------------------------------------------------------------------


def _message(tenant_id: str, key: str = "out-1") -> OutboundMessage:
    return OutboundMessage(
        tenant_id=tenant_id,
        channel=Channel.WAHA,
        to="31600000001",
        text="Welkom!",
        idempotency_key=key,
        thread="thread-1",
        conversation_id=conversation_workflow_id(tenant_id, "waha", "31600000001"),
    )


async def test_outbox_claim_mark_duplicate_and_foreign_key(db: Database) -> None:
    tid, _ = await make_tenant(db)
    other, _ = await make_tenant(db)
    message = _message(tid)
    async with db.session() as session:
        claimed = await outbox_repo.claim(session, message=message)
    assert (claimed.status, claimed.tenant_id, claimed.thread, claimed.sent_at) == (
        "pending",
        tid,
        "thread-1",
        None,
    )
    async with db.session() as session:
        stored = await outbox_repo.get_outbox_message(session, idempotency_key="out-1")
    # The row a claim returns is the row a select reads (ids, aware datetimes and all).
    assert stored is not None and stored.model_dump() == claimed.model_dump()
    assert claimed.id is not None and claimed.created_at.tzinfo is not None

    async with db.session() as session:
        again = await outbox_repo.claim(session, message=message)
    assert (again.id, again.status) == (claimed.id, "pending")

    async with db.session() as session:
        sent = await outbox_repo.mark_sent(
            session, idempotency_key="out-1", delivered_via="waha", provider_message_id="wamid-9"
        )
    assert (sent.id, sent.status, sent.delivered_via, sent.provider_message_id) == (
        claimed.id,
        "sent",
        "waha",
        "wamid-9",
    )
    assert sent.sent_at is not None and sent.sent_at.tzinfo is not None
    async with db.session() as session:
        duplicate = await outbox_repo.claim(session, message=message)
    assert duplicate.model_dump() == sent.model_dump()

    # The key belongs to the first tenant: another tenant neither gets nor changes its row.
    async with db.session() as session:
        with pytest.raises(outbox_repo.OutboxKeyConflict):
            await outbox_repo.claim(session, message=_message(other))
    async with db.session() as session:
        assert (await outbox_repo.list_outbox(session, tenant_id=other)) == []

    async with db.session() as session:
        failed = await outbox_repo.mark_failed(session, idempotency_key="out-1")
        assert (failed.status, failed.delivered_via, failed.sent_at) == ("failed", None, None)
        stored_row = await outbox_repo.mark_stored(session, idempotency_key="out-1")
        assert (stored_row.status, stored_row.delivered_via) == ("stored", "outbox")
        with pytest.raises(outbox_repo.OutboxMessageNotFound):
            await outbox_repo.mark_sent(
                session, idempotency_key="missing", delivered_via="waha", provider_message_id=None
            )


async def test_a_claim_and_its_mark_are_two_statements(db: Database) -> None:
    tid, _ = await make_tenant(db)
    with counted(db) as statements:
        async with db.session() as session:
            await outbox_repo.claim(session, message=_message(tid))
            await outbox_repo.mark_sent(
                session, idempotency_key="out-1", delivered_via="waha", provider_message_id="w"
            )
    assert len(statements) <= CLAIM_AND_MARK_STATEMENTS, statements
