"""Turn metrics are counted by the activities' shared steps (activities/turn_steps.py), never by
workflow code: a recorded escalation counts once by rule and as an escalated or failed turn; a
turn recorded without our reply is silent; a reply that went out is a replied turn, timed from
the lead's first message of the turn."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from activities import turn_steps
from models.common import Channel, Role, Stage
from models.conversation import EscalationRecord, RecordTurnInput
from models.db import Database
from models.messages import TranscriptEntry
from tests.conftest import make_tenant

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def entry(role: Role, text: str, at: datetime) -> TranscriptEntry:
    return TranscriptEntry(role=role, text=text, at=at, provider_message_id=uuid.uuid4().hex)


def record(
    tenant_id: str,
    *entries: TranscriptEntry,
    channel: Channel = Channel.WAHA,
    turns: int = 1,
    escalation: EscalationRecord | None = None,
) -> RecordTurnInput:
    contact = f"{uuid.uuid4().int % 10**11}@c.us"
    return RecordTurnInput(
        conversation_id=f"conv:{tenant_id}:{channel.value}:{contact}",
        tenant_id=tenant_id,
        channel=channel,
        contact=contact,
        turn_key=f"turn:{turns}",
        entries=entries,
        stage=Stage.HUMAN_HANDOFF if escalation else Stage.QUALIFYING,
        lead_id=uuid.uuid4().hex,
        escalation=escalation,
        turns=turns,
    )


@pytest.fixture
async def tenant(sqlite_db: Database) -> str:
    tenant_id, _ = await make_tenant(sqlite_db)
    return tenant_id


async def test_an_escalation_is_counted_by_rule_when_its_turn_is_recorded(
    sqlite_db: Database, tenant: str
) -> None:
    rule = f"complex_financing_{uuid.uuid4().hex[:6]}"
    turns_before = sample("leadflow_turns_total", channel="waha", outcome="escalated")
    escalated = record(
        tenant,
        entry(Role.LEAD, "Can I lease it with a balloon payment?", T0),
        entry(Role.AI, "A colleague will get back to you.", T0),
        escalation=EscalationRecord(rule=rule, reason="financing"),
    )
    await turn_steps.record_turn(sqlite_db, escalated)
    assert sample("leadflow_escalations_total", rule=rule) == 1
    assert sample("leadflow_turns_total", channel="waha", outcome="escalated") == turns_before + 1


async def test_a_hand_over_after_a_failure_is_a_failed_turn(
    sqlite_db: Database, tenant: str
) -> None:
    failed_before = sample("leadflow_turns_total", channel="email", outcome="failed")
    rule_before = sample("leadflow_escalations_total", rule="ai_unavailable")
    handed = record(
        tenant,
        entry(Role.LEAD, "hello?", T0),
        channel=Channel.EMAIL,
        escalation=EscalationRecord(rule="ai_unavailable", reason="the AI failed"),
    )
    await turn_steps.record_turn(sqlite_db, handed)
    assert sample("leadflow_turns_total", channel="email", outcome="failed") == failed_before + 1
    assert sample("leadflow_escalations_total", rule="ai_unavailable") == rule_before + 1


async def test_lead_messages_recorded_without_a_reply_are_a_silent_turn(
    sqlite_db: Database, tenant: str
) -> None:
    silent_before = sample("leadflow_turns_total", channel="messenger", outcome="silent")
    await turn_steps.record_turn(
        sqlite_db, record(tenant, entry(Role.LEAD, "stop", T0), channel=Channel.MESSENGER)
    )
    assert sample("leadflow_turns_total", channel="messenger", outcome="silent") == (
        silent_before + 1
    )
    # A record that carries our reply (the send step's) counts nothing: the send counted it.
    replied_before = sample("leadflow_turns_total", channel="messenger", outcome="replied")
    await turn_steps.record_turn(
        sqlite_db,
        record(
            tenant,
            entry(Role.LEAD, "hi", T0),
            entry(Role.AI, "hello", T0),
            channel=Channel.MESSENGER,
        ),
    )
    assert sample("leadflow_turns_total", channel="messenger", outcome="silent") == (
        silent_before + 1
    )
    assert sample("leadflow_turns_total", channel="messenger", outcome="replied") == replied_before


def test_a_reply_is_timed_from_the_first_message_of_its_turn() -> None:
    labels_first = {"channel": "whatsapp", "first": "true"}
    labels_later = {"channel": "whatsapp", "first": "false"}
    count_first = sample("leadflow_turn_seconds_count", **labels_first)
    sum_first = sample("leadflow_turn_seconds_sum", **labels_first)
    count_later = sample("leadflow_turn_seconds_count", **labels_later)
    replied = sample("leadflow_turns_total", channel="whatsapp", outcome="replied")

    first_turn = record(
        "t",
        entry(Role.LEAD, "Hi", T0),
        entry(Role.LEAD, "Is the Golf still there?", T0 + timedelta(seconds=2)),
        channel=Channel.WHATSAPP,
        turns=1,
    )
    turn_steps.count_replied_turn(first_turn, now=T0 + timedelta(seconds=7))
    assert sample("leadflow_turn_seconds_count", **labels_first) == count_first + 1
    assert sample("leadflow_turn_seconds_sum", **labels_first) == pytest.approx(sum_first + 7)

    # A later turn, and a provider clock ahead of ours (a wait of 0, never negative).
    later = record(
        "t",
        entry(Role.LEAD, "Saturday?", T0 + timedelta(seconds=30)),
        channel=Channel.WHATSAPP,
        turns=3,
    )
    sum_later = sample("leadflow_turn_seconds_sum", **labels_later)
    turn_steps.count_replied_turn(later, now=T0)
    assert sample("leadflow_turn_seconds_count", **labels_later) == count_later + 1
    assert sample("leadflow_turn_seconds_sum", **labels_later) == sum_later
    assert sample("leadflow_turns_total", channel="whatsapp", outcome="replied") == replied + 2


def test_an_outreach_counts_as_replied_without_a_wait() -> None:
    labels = {"channel": "chatwoot", "first": "true"}
    count = sample("leadflow_turn_seconds_count", **labels)
    replied = sample("leadflow_turns_total", channel="chatwoot", outcome="replied")
    turn_steps.count_replied_turn(record("t", channel=Channel.CHATWOOT), now=T0)
    assert sample("leadflow_turns_total", channel="chatwoot", outcome="replied") == replied + 1
    assert sample("leadflow_turn_seconds_count", **labels) == count  # nobody waited for it
