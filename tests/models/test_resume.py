"""Resume, not restart: what `load_turn_context` answers a run's first turn from the database,
on SQLite and PostgreSQL (the `db` fixture), and what it costs in statements."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event

from activities import turn_steps
from models.agent import LeadScore, ScoreComponent
from models.common import Channel, LeadQuality, Role, Stage
from models.conversation import (
    SEEN_IDS_KEPT,
    TRANSCRIPT_TAIL,
    RecordTurnInput,
    TurnContextInput,
    conversation_workflow_id,
    lead_id_for,
)
from models.db import Database
from models.messages import TranscriptEntry
from models.playbook_service import PlaybookResolver
from models.repo import conversations as repo
from models.repo import leads as lead_repo
from models.tables import Lead
from tests.conftest import TEST_SECRET, make_tenant

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
CONTACT = "31612345678@c.us"
COMPONENTS = (
    ScoreComponent(name="intent", points=30, max_points=40, reason="asks for a test drive"),
    ScoreComponent(name="budget", points=25, max_points=30, reason="budget stated"),
)


@contextmanager
def counted(db: Database) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)


def _turn(tenant_id: str, n: int, **overrides: Any) -> RecordTurnInput:
    """Turn n: the lead's message (provider id wamid-n) and the AI's reply, a minute apart."""
    at = T0 + timedelta(minutes=2 * n)
    values: dict[str, Any] = {
        "conversation_id": conversation_workflow_id(tenant_id, Channel.WAHA, CONTACT),
        "tenant_id": tenant_id,
        "channel": Channel.WAHA,
        "contact": CONTACT,
        "contact_name": "Jan de Vries",
        "turn_key": f"turn-{n}",
        "entries": (
            TranscriptEntry(role=Role.LEAD, text=f"lead {n}", at=at, provider_message_id=f"w-{n}"),
            TranscriptEntry(
                role=Role.AI, text=f"ai {n}", at=at + timedelta(minutes=1), knowledge_ids=("k1",)
            ),
        ),
        "stage": Stage.QUALIFYING,
        "lead_id": lead_id_for(tenant_id, Channel.WAHA, CONTACT),
        "turns": n,
    }
    values.update(overrides)
    return RecordTurnInput(**values)


async def _record(db: Database, *turns: RecordTurnInput) -> None:
    for turn in turns:
        async with db.session() as session:
            await repo.record_turn(session, record=turn)


async def _context(db: Database, tenant_id: str, *, resume: bool = True) -> Any:
    return await turn_steps.load_turn_context(
        db,
        PlaybookResolver(db, TEST_SECRET),
        TurnContextInput(
            tenant_id=tenant_id,
            lead_id=lead_id_for(tenant_id, Channel.WAHA, CONTACT),
            query="",
            resume=resume,
        ),
    )


async def test_a_lead_without_history_resumes_nothing_in_one_statement(db: Database) -> None:
    tid, _ = await make_tenant(db)
    lead_id = lead_id_for(tid, Channel.WAHA, CONTACT)
    context = await _context(db, tid)
    assert (context.resume, context.do_not_contact) == (None, False)
    with counted(db) as statements:
        async with db.session() as session:
            state = await repo.lead_at_turn_start(
                session, tenant_id=tid, lead_id=lead_id, resume=True
            )
    assert state == repo.LeadAtTurnStart(do_not_contact=False, resume=None)
    # The first turn of every new conversation asks: it costs what the plain context did.
    assert len(statements) == 1, statements

    # A lead the API or a CRM created, with no conversation yet, has no history to resume;
    # its do-not-contact still reaches the turn.
    async with db.session() as session:
        lead = await lead_repo.create_lead(
            session, tenant_id=tid, channel="waha", address=CONTACT, lead_id=lead_id, name="Jan"
        )
        await lead_repo.update_lead(session, lead=lead, changes={"do_not_contact": True})
    context = await _context(db, tid)
    assert (context.resume, context.do_not_contact) == (None, True)


async def test_after_a_closed_conversation_the_new_run_resumes_what_was_known(
    db: Database,
) -> None:
    tid, _ = await make_tenant(db)
    score = LeadScore(total=55, quality=LeadQuality.WARM, components=COMPONENTS)
    await _record(
        db,
        _turn(tid, 1, fields={"budget": 25000, "model": "Golf"}),
        _turn(tid, 2, score=score, stage=Stage.SCHEDULING),
        # The opt-out closes the conversation.
        _turn(tid, 3, stage=Stage.CLOSED, do_not_contact=True),
    )
    # A CRM wrote a list into the fields: not a field value a run holds, so it is left out.
    async with db.session() as session:
        lead = await session.get(Lead, lead_id_for(tid, Channel.WAHA, CONTACT))
        assert lead is not None
        lead.fields = {**lead.fields, "tags": ["a", "b"]}
        session.add(lead)
        await session.commit()

    context = await _context(db, tid)
    resume = context.resume
    assert resume is not None and context.do_not_contact is True
    assert (resume.stage, resume.turns, resume.contact_name, resume.do_not_contact) == (
        Stage.CLOSED,
        3,
        "Jan de Vries",
        True,
    )
    assert resume.fields == {"budget": 25000, "model": "Golf"}
    assert resume.score == score  # total, quality and the components of the scoring turn
    assert [(e.role, e.text) for e in resume.transcript] == [
        (Role.LEAD, "lead 1"),
        (Role.AI, "ai 1"),
        (Role.LEAD, "lead 2"),
        (Role.AI, "ai 2"),
        (Role.LEAD, "lead 3"),
        (Role.AI, "ai 3"),
    ]
    first = resume.transcript[0]
    assert (first.at, first.provider_message_id) == (T0 + timedelta(minutes=2), "w-1")
    assert resume.transcript[1].knowledge_ids == ("k1",)
    assert resume.seen_message_ids == ("w-1", "w-2", "w-3")

    # Asked without resume (every later turn): no history, one statement.
    assert (await _context(db, tid, resume=False)).resume is None
    # Another tenant naming this lead id finds nothing.
    other, _ = await make_tenant(db)
    async with db.session() as session:
        foreign = await repo.lead_at_turn_start(
            session, tenant_id=other, lead_id=lead_id_for(tid, Channel.WAHA, CONTACT), resume=True
        )
    assert foreign == repo.LeadAtTurnStart(do_not_contact=False, resume=None)


async def test_the_tail_and_the_seen_ids_are_bounded_and_cost_two_statements(
    db: Database,
) -> None:
    tid, _ = await make_tenant(db)
    lead_messages = SEEN_IDS_KEPT + 20
    entries = (
        *(
            TranscriptEntry(
                role=Role.LEAD,
                text=f"m{i}",
                at=T0 + timedelta(seconds=i),
                provider_message_id=f"w-{i}",
            )
            for i in range(lead_messages)
        ),
        TranscriptEntry(role=Role.SYSTEM, text="closed", at=T0 + timedelta(hours=1)),
    )
    # A score row written for an older verdict than the lead's: the lead's verdict, no parts.
    await _record(
        db,
        _turn(
            tid,
            1,
            entries=entries,
            score=LeadScore(total=20, quality=LeadQuality.COLD, components=COMPONENTS),
        ),
    )
    async with db.session() as session:
        lead = await session.get(Lead, lead_id_for(tid, Channel.WAHA, CONTACT))
        assert lead is not None
        lead.score, lead.quality = 80, "HOT"
        session.add(lead)
        await session.commit()
    with counted(db) as statements:
        async with db.session() as session:
            state = await repo.lead_at_turn_start(
                session,
                tenant_id=tid,
                lead_id=lead_id_for(tid, Channel.WAHA, CONTACT),
                resume=True,
            )
    assert len(statements) == 2, statements
    resume = state.resume
    assert resume is not None
    assert len(resume.transcript) == TRANSCRIPT_TAIL
    assert resume.transcript[-1].text == "closed"
    assert resume.transcript[0].text == f"m{lead_messages - TRANSCRIPT_TAIL + 1}"
    # The ids of the lead's messages among the last SEEN_IDS_KEPT, oldest first.
    assert resume.seen_message_ids == tuple(
        f"w-{i}" for i in range(lead_messages - SEEN_IDS_KEPT + 1, lead_messages)
    )
    assert resume.score == LeadScore(total=80, quality=LeadQuality.HOT)
