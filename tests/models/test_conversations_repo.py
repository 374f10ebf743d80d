"""The conversation repository as the workflow's record step uses it, on SQLite and PostgreSQL:
one turn writes the lead, conversation, messages, score and escalation; a replayed turn (an
activity retry) changes nothing; the list filters and counts; the transcript keeps its order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import func, select

from models.agent import LeadScore, ScoreComponent
from models.common import Channel, LeadQuality, Role, Stage
from models.conversation import EscalationRecord, RecordTurnInput, conversation_workflow_id
from models.db import Database
from models.messages import TranscriptEntry
from models.repo import conversations as repo
from models.tables import Escalation, Lead, LeadScoreRecord, Message
from tests.conftest import make_tenant

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def _score(total: int, quality: LeadQuality) -> LeadScore:
    return LeadScore(
        total=total,
        quality=quality,
        components=(
            ScoreComponent(name="intent", points=total, max_points=100, reason="asked for a test"),
        ),
    )


def _turn(tenant_id: str, contact: str = "31612345678", **overrides: Any) -> RecordTurnInput:
    conversation_id = conversation_workflow_id(tenant_id, "waha", contact)
    values: dict[str, Any] = {
        "conversation_id": conversation_id,
        "tenant_id": tenant_id,
        "channel": Channel.WAHA,
        "contact": contact,
        "contact_name": "Jan",
        "turn_key": "turn-1",
        "entries": (
            TranscriptEntry(
                role=Role.LEAD, text="Ik zoek een Golf", at=T0, provider_message_id="wamid-1"
            ),
            TranscriptEntry(
                role=Role.AI,
                text="Welkom Jan! Wanneer wilt u langskomen?",
                at=T0 + timedelta(seconds=3),
                knowledge_ids=("doc-1",),
            ),
        ),
        "stage": Stage.QUALIFYING,
        "lead_id": f"lead-{tenant_id}-{contact}",
        "score": _score(55, LeadQuality.WARM),
        "fields": {"budget": 25000, "email": "jan@example.nl"},
        "turns": 1,
    }
    values.update(overrides)
    return RecordTurnInput(**values)


async def _count(db: Database, model: Any, **where: Any) -> int:
    async with db.session() as session:
        query = select(func.count()).select_from(model)
        for name, value in where.items():
            query = query.where(getattr(model, name) == value)
        return int((await session.exec(query)).one())


async def test_record_turn_writes_everything_once(db: Database) -> None:
    tid, _ = await make_tenant(db)
    # An escalating turn hands off (a turn that does not resolves the open escalations).
    turn = _turn(
        tid,
        stage=Stage.HUMAN_HANDOFF,
        escalation=EscalationRecord(rule="financing", reason="asks", notified=("Sanne",)),
    )
    async with db.session() as session:
        assert await repo.record_turn(session, record=turn) is True

    async with db.session() as session:
        conv = await repo.get_conversation(
            session, tenant_id=tid, conversation_id=turn.conversation_id
        )
        assert conv is not None
        assert (conv.stage, conv.score, conv.quality, conv.turns) == (
            "human_handoff",
            55,
            "WARM",
            1,
        )
        assert conv.lead_id == turn.lead_id
        assert conv.last_message_at is not None
        assert conv.last_message_at.replace(tzinfo=UTC) == T0 + timedelta(seconds=3)
        lead = await session.get(Lead, turn.lead_id)
        assert lead is not None
        assert (lead.name, lead.email, lead.score, lead.quality) == (
            "Jan",
            "jan@example.nl",
            55,
            "WARM",
        )
        assert lead.fields == {"budget": 25000, "email": "jan@example.nl"}
        messages = await repo.transcript(session, conversation_id=turn.conversation_id)
        assert [(m.role, m.text) for m in messages] == [
            ("lead", "Ik zoek een Golf"),
            ("ai", "Welkom Jan! Wanneer wilt u langskomen?"),
        ]
        assert messages[1].knowledge_ids == ["doc-1"]
        score = await repo.latest_score(session, conversation_id=turn.conversation_id)
        assert score is not None and (score.total, score.quality) == (55, "WARM")
        assert score.components[0]["reason"] == "asked for a test"
        escalations = await repo.escalations(session, conversation_id=turn.conversation_id)
        assert [(e.rule, e.notified, e.resolved_at) for e in escalations] == [
            ("financing", ["Sanne"], None)
        ]
        version = lead.version

    # An activity retry replays the very same turn: nothing new, and the lead did not change.
    async with db.session() as session:
        assert await repo.record_turn(session, record=turn) is False
    assert await _count(db, Message, conversation_id=turn.conversation_id) == 2
    assert await _count(db, Escalation, conversation_id=turn.conversation_id) == 1
    assert await _count(db, LeadScoreRecord, conversation_id=turn.conversation_id) == 1
    async with db.session() as session:
        lead = await session.get(Lead, turn.lead_id)
        assert lead is not None and lead.version == version


async def test_changed_score_bumps_the_lead_version(db: Database) -> None:
    tid, _ = await make_tenant(db)
    first = _turn(tid)
    async with db.session() as session:
        await repo.record_turn(session, record=first)
        lead = await session.get(Lead, first.lead_id)
        assert lead is not None
        version = lead.version

    # The next turn: a new message, the same score and fields → the lead did not change.
    same = _turn(
        tid,
        turn_key="turn-2",
        entries=(TranscriptEntry(role=Role.LEAD, text="ok", at=T0 + timedelta(minutes=1)),),
        turns=2,
    )
    async with db.session() as session:
        assert await repo.record_turn(session, record=same) is False
        lead = await session.get(Lead, first.lead_id)
        assert lead is not None and lead.version == version

    hotter = _turn(
        tid,
        turn_key="turn-3",
        entries=(
            TranscriptEntry(role=Role.LEAD, text="Morgen om 10?", at=T0 + timedelta(minutes=2)),
        ),
        score=_score(85, LeadQuality.HOT),
        stage=Stage.SCHEDULING,
        turns=3,
    )
    async with db.session() as session:
        assert await repo.record_turn(session, record=hotter) is True
    async with db.session() as session:
        lead = await session.get(Lead, first.lead_id)
        assert lead is not None
        assert (lead.version, lead.score, lead.quality) == (version + 1, 85, "HOT")
        conv = await repo.get_conversation(
            session, tenant_id=tid, conversation_id=first.conversation_id
        )
        assert conv is not None
        assert (conv.stage, conv.score, conv.quality, conv.turns) == ("scheduling", 85, "HOT", 3)
        latest = await repo.latest_score(session, conversation_id=first.conversation_id)
        assert latest is not None and latest.total == 85

    # New extracted fields also change the lead, and merge with what was known.
    with_phone = _turn(
        tid, turn_key="turn-4", entries=(), score=None, fields={"phone": "+31612345678"}, turns=4
    )
    async with db.session() as session:
        assert await repo.record_turn(session, record=with_phone) is True
        lead = await session.get(Lead, first.lead_id)
        assert lead is not None
        assert lead.version == version + 2
        assert lead.phone == "+31612345678" and lead.email == "jan@example.nl"
        assert lead.fields["budget"] == 25000


async def test_list_filters_by_stage_and_quality_and_counts(db: Database) -> None:
    tid, _ = await make_tenant(db)
    other, _ = await make_tenant(db)
    async with db.session() as session:
        for i, (stage, total, quality) in enumerate(
            [
                (Stage.QUALIFYING, 55, LeadQuality.WARM),
                (Stage.QUALIFYING, 85, LeadQuality.HOT),
                (Stage.SCHEDULING, 90, LeadQuality.HOT),
                (Stage.NURTURE, 10, LeadQuality.COLD),
            ]
        ):
            await repo.record_turn(
                session,
                record=_turn(
                    tid, contact=f"3160000000{i}", stage=stage, score=_score(total, quality)
                ),
            )
        await repo.record_turn(session, record=_turn(other, stage=Stage.QUALIFYING))

    async with db.session() as session:
        rows, total = await repo.list_conversations(session, tenant_id=tid)
        assert total == 4 and len(rows) == 4
        assert all(r.tenant_id == tid for r in rows)

        rows, total = await repo.list_conversations(session, tenant_id=tid, stage="qualifying")
        assert total == 2
        assert sorted(r.score for r in rows) == [55, 85]

        rows, total = await repo.list_conversations(session, tenant_id=tid, quality="HOT")
        assert total == 2
        assert {r.stage for r in rows} == {"qualifying", "scheduling"}

        rows, total = await repo.list_conversations(
            session, tenant_id=tid, stage="qualifying", quality="HOT"
        )
        assert (total, [r.score for r in rows]) == (1, [85])

        # The total counts every match, not just the page.
        rows, total = await repo.list_conversations(session, tenant_id=tid, limit=1, offset=1)
        assert (total, len(rows)) == (4, 1)

        rows, total = await repo.list_conversations(session, tenant_id=tid, stage="closed")
        assert (total, list(rows)) == (0, [])

        # Another tenant's conversation is not found under this tenant.
        other_conv = conversation_workflow_id(other, "waha", "31612345678")
        assert (
            await repo.get_conversation(session, tenant_id=tid, conversation_id=other_conv)
        ) is None


async def test_transcript_is_in_recording_order(db: Database) -> None:
    """A message recorded later is shown later, even when its timestamp is earlier (a
    delayed delivery): the transcript is the order the workflow saw things in."""
    tid, _ = await make_tenant(db)
    texts = []
    async with db.session() as session:
        for turn in range(3):
            entries = tuple(
                TranscriptEntry(
                    role=Role.LEAD if i == 0 else Role.AI,
                    text=f"turn {turn} line {i}",
                    at=T0 + timedelta(minutes=10 - 3 * turn - i),
                )
                for i in range(2)
            )
            texts += [e.text for e in entries]
            await repo.record_turn(
                session, record=_turn(tid, turn_key=f"turn-{turn}", entries=entries, turns=turn)
            )
    async with db.session() as session:
        messages = await repo.transcript(
            session, conversation_id=conversation_workflow_id(tid, "waha", "31612345678")
        )
    assert [m.text for m in messages] == texts
