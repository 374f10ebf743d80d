"""The lead's tags and custom attributes in the database, on SQLite and PostgreSQL: the record
step writes the tags a turn sends (a change bumps the lead's version, so the CRM sync runs), a
record without tags leaves them, a fresh run resumes with them; the attributes are computed in
one place from what the lead and its conversations hold, and the CRM snapshot carries both."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from models.common import Channel, Role, Stage
from models.conversation import RecordTurnInput, conversation_workflow_id
from models.crm import DEFAULT_FIELD_MAPPINGS, CrmKind
from models.db import Database
from models.lead_attributes import lead_attributes
from models.messages import TranscriptEntry
from models.repo import conversations as repo
from models.repo import leads as lead_repo
from tests.conftest import make_tenant

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
CONTACT = "31612340000"


def _turn(tenant_id: str, key: str, **overrides: Any) -> RecordTurnInput:
    values: dict[str, Any] = {
        "conversation_id": conversation_workflow_id(tenant_id, "waha", CONTACT),
        "tenant_id": tenant_id,
        "channel": Channel.WAHA,
        "contact": CONTACT,
        "turn_key": key,
        "entries": (
            TranscriptEntry(role=Role.LEAD, text=f"msg {key}", at=T0, provider_message_id=key),
        ),
        "stage": Stage.QUALIFYING,
        "lead_id": f"lead-{tenant_id}",
        "fields": {"budget": 25000},
        "turns": 1,
    }
    values.update(overrides)
    return RecordTurnInput(**values)


async def _lead(db: Database, tenant_id: str) -> Any:
    async with db.session() as session:
        return await lead_repo.get_lead(session, tenant_id=tenant_id, lead_id=f"lead-{tenant_id}")


async def test_record_writes_changed_tags_and_leaves_them_otherwise(db: Database) -> None:
    tenant_id, _ = await make_tenant(db)
    async with db.session() as session:
        assert await repo.record_turn(
            session, record=_turn(tenant_id, "t1", tags=("budget-20k-30k", "stage-qualifying"))
        )
    lead = await _lead(db, tenant_id)
    assert lead.tags == ["budget-20k-30k", "stage-qualifying"]
    version = lead.version

    # None: unchanged (most records); the lead is not touched.
    async with db.session() as session:
        assert await repo.record_turn(session, record=_turn(tenant_id, "t2")) is False
    assert (await _lead(db, tenant_id)).version == version

    # The same tags again: no change either.
    async with db.session() as session:
        same = _turn(tenant_id, "t3", tags=("budget-20k-30k", "stage-qualifying"))
        assert await repo.record_turn(session, record=same) is False

    # Changed tags alone are a change of the lead: a new version (the CRM sync follows).
    async with db.session() as session:
        moved = _turn(tenant_id, "t4", tags=("budget-20k-30k", "stage-scheduling", "test-drive"))
        assert await repo.record_turn(session, record=moved) is True
    lead = await _lead(db, tenant_id)
    assert lead.tags == ["budget-20k-30k", "stage-scheduling", "test-drive"]
    assert lead.version == version + 1

    # A fresh run resumes with them (sticky tags stay from there).
    async with db.session() as session:
        state = await repo.lead_at_turn_start(
            session, tenant_id=tenant_id, lead_id=f"lead-{tenant_id}", resume=True
        )
    assert state.resume is not None
    assert state.resume.tags == ("budget-20k-30k", "stage-scheduling", "test-drive")


async def test_attributes_and_the_crm_snapshot(db: Database) -> None:
    tenant_id, _ = await make_tenant(db)
    async with db.session() as session:
        await repo.record_turn(
            session,
            record=_turn(
                tenant_id,
                "t1",
                fields={"budget": "€ 30.000", "budget_min": 20000, "trade_in": True},
                tags=("financing", "sentiment-negative", "test-drive", "urgent"),
                entries=(
                    TranscriptEntry(
                        role=Role.LEAD,
                        text="hi",
                        at=T0 + timedelta(days=2),
                        provider_message_id="m1",
                    ),
                    TranscriptEntry(role=Role.AI, text="hello", at=T0 + timedelta(days=3)),
                ),
            ),
        )
    async with db.session() as session:
        snapshot = await lead_repo.lead_snapshot(
            session, tenant_id=tenant_id, lead_id=f"lead-{tenant_id}"
        )
    assert snapshot is not None
    assert snapshot.tags == ("financing", "sentiment-negative", "test-drive", "urgent")
    attributes = snapshot.attributes
    assert attributes is not None
    assert attributes.budget_min == 20000 and attributes.budget_max == 30000
    assert attributes.urgency == "high"
    assert attributes.test_drive_requested and attributes.financing_needed
    assert attributes.trade_in  # from the field
    assert attributes.sentiment == "negative"
    assert attributes.source_channel == "waha"
    assert attributes.total_conversations == 1
    # the lead's own last message, not our later reply
    assert attributes.last_interest_date == (T0 + timedelta(days=2)).date()
    # The lead page's path reads no conversation row: the same attributes, counted by the
    # database or given the count its conversation list made.
    async with db.session() as session:
        lead = await lead_repo.get_lead(session, tenant_id=tenant_id, lead_id=f"lead-{tenant_id}")
        assert lead is not None
        assert await lead_repo.attributes_of(session, lead=lead) == attributes
        assert (
            await lead_repo.attributes_of(session, lead=lead, total_conversations=1) == attributes
        )

    # What the default mappings send: tags as one `;` string, the date in ISO, booleans as is.
    assert snapshot.value_of("tags") == "financing;sentiment-negative;test-drive;urgent"
    assert snapshot.value_of("last_interest_date") == (T0 + timedelta(days=2)).date().isoformat()
    assert snapshot.value_of("test_drive_requested") is True
    assert DEFAULT_FIELD_MAPPINGS[CrmKind.HUBSPOT]["tags"] == "leadflow_tags"
    assert DEFAULT_FIELD_MAPPINGS[CrmKind.SALESFORCE]["budget_max"] == "Leadflow_Budget_Max__c"
    assert DEFAULT_FIELD_MAPPINGS[CrmKind.CHATWOOT]["sentiment"] == "sentiment"
    assert "tags" not in DEFAULT_FIELD_MAPPINGS[CrmKind.CHATWOOT]  # labels there instead


@pytest.mark.parametrize(
    ("fields", "tags", "last", "expected"),
    [
        ({}, (), None, {"sentiment": None, "urgency": "normal", "budget_max": None}),
        ({}, (), T0, {"sentiment": "neutral"}),
        ({}, ("sentiment-positive",), T0, {"sentiment": "positive"}),
        ({"urgency": True}, (), None, {"urgency": "high"}),
        ({"budget": 18000}, (), None, {"budget_max": 18000, "budget_min": None}),
        ({"budget_max": 40000, "budget": 18000}, (), None, {"budget_max": 40000}),
        ({"budget": True}, (), None, {"budget_max": None}),
        ({}, ("meeting",), None, {"test_drive_requested": True}),
        ({"test_drive": True}, (), None, {"test_drive_requested": True}),
        ({"financing": False}, (), None, {"financing_needed": False}),
    ],
)
def test_attribute_rules(
    fields: dict[str, Any], tags: tuple[str, ...], last: datetime | None, expected: dict[str, Any]
) -> None:
    attributes = lead_attributes(
        fields=fields,
        tags=tags,
        score=40,
        quality="LUKEWARM",
        channel="email",
        total_conversations=1 if last else 0,
        last_lead_message_at=last,
    )
    for name, value in expected.items():
        assert getattr(attributes, name) == value, name
    assert attributes.lead_score == 40 and attributes.lead_quality == "LUKEWARM"
    if last is not None:
        assert attributes.last_interest_date == date(2026, 3, 1)
