"""Do-not-contact across runs and channels, on SQLite and PostgreSQL (the `db` fixture): the
one rule that refuses outreach (`do_not_contact_reason`) and an operator's explicit set or lift
(`set_do_not_contact`), which the next run's context and resume read."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from models.common import Channel, Role, Stage
from models.conversation import RecordTurnInput, conversation_workflow_id, lead_id_for
from models.db import Database
from models.identity import ContactIdError
from models.lead_service import do_not_contact_reason, set_do_not_contact
from models.messages import TranscriptEntry
from models.repo import conversations as conversation_repo
from models.repo import leads as lead_repo
from tests.conftest import make_tenant

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
CONTACT = "31612345678@c.us"


async def _opt_out(db: Database, tenant_id: str, *, email: str | None = None) -> str:
    record = RecordTurnInput(
        conversation_id=conversation_workflow_id(tenant_id, Channel.WAHA, CONTACT),
        tenant_id=tenant_id,
        channel=Channel.WAHA,
        contact=CONTACT,
        turn_key="turn-1",
        entries=(TranscriptEntry(role=Role.LEAD, text="Stop", at=T0, provider_message_id="w-1"),),
        stage=Stage.CLOSED,
        lead_id=lead_id_for(tenant_id, Channel.WAHA, CONTACT),
        fields={"email": email} if email else {},
        turns=1,
        do_not_contact=True,
    )
    async with db.session() as session:
        await conversation_repo.record_turn(session, record=record)
    return record.lead_id


async def _reason(db: Database, tenant_id: str, channel: Channel, contact: str) -> str | None:
    async with db.session() as session:
        return await do_not_contact_reason(
            session, tenant_id=tenant_id, channel=channel, contact=contact
        )


async def test_outreach_is_refused_to_the_same_person_on_any_channel(db: Database) -> None:
    tid, _ = await make_tenant(db)
    assert await _reason(db, tid, Channel.WAHA, CONTACT) is None  # nobody opted out yet
    lead_id = await _opt_out(db, tid, email="Ana@Example.com")

    same = await _reason(db, tid, Channel.WAHA, CONTACT)
    assert same is not None and same.startswith("this contact is do-not-contact")
    assert f"POST /api/v1/leads/{lead_id}/do-not-contact" in same
    # The contact as an API caller writes it: normalised to the same WhatsApp id.
    assert await _reason(db, tid, Channel.WAHA, "+31 6 12345678") == same
    assert await _reason(db, tid, Channel.WAHA, "31612345678@s.whatsapp.net") == same
    # The same phone through the Cloud API, the same address by e-mail: the same person.
    cloud = await _reason(db, tid, Channel.WHATSAPP, "31612345678")
    assert cloud is not None and f"the same person (waha {CONTACT})" in cloud
    mail = await _reason(db, tid, Channel.EMAIL, "ANA@example.com")
    assert mail is not None and lead_id in mail
    # Somebody else, or another tenant's lead with this number, is not refused.
    assert await _reason(db, tid, Channel.WAHA, "31687654321@c.us") is None
    assert await _reason(db, tid, Channel.EMAIL, "bo@example.com") is None
    other, _ = await make_tenant(db)
    assert await _reason(db, other, Channel.WAHA, CONTACT) is None
    # A contact id that is no address is refused before anything is looked up.
    with pytest.raises(ContactIdError):
        await _reason(db, tid, Channel.WAHA, "3161\n2345678@c.us")


async def test_an_operator_lift_is_recorded_and_the_next_run_sees_it(db: Database) -> None:
    tid, _ = await make_tenant(db)
    lead_id = await _opt_out(db, tid)
    async with db.session() as session:
        change = await set_do_not_contact(
            session,
            tenant_id=tid,
            lead_id=lead_id,
            do_not_contact=False,
            by="Sanne",
            reason="asked to be called back",
        )
    assert change is not None and change.changed
    assert (change.lead.do_not_contact, change.lead.version) == (False, 3)
    assert await _reason(db, tid, Channel.WAHA, CONTACT) is None

    async with db.session() as session:
        state = await conversation_repo.lead_at_turn_start(
            session, tenant_id=tid, lead_id=lead_id, resume=True
        )
    assert state.do_not_contact is False
    assert state.resume is not None and state.resume.do_not_contact is False
    assert [(e.role, e.text) for e in state.resume.transcript] == [
        (Role.LEAD, "Stop"),
        (Role.SYSTEM, "Do-not-contact lifted by Sanne: asked to be called back"),
    ]
    # The lifting entry is no lead message: not a redelivery id.
    assert state.resume.seen_message_ids == ("w-1",)

    # Unknown lead, another tenant's lead: None. Already so: nothing written.
    other, _ = await make_tenant(db)
    async with db.session() as session:
        for tenant, lead in ((tid, "nope"), (other, lead_id)):
            assert (
                await set_do_not_contact(
                    session,
                    tenant_id=tenant,
                    lead_id=lead,
                    do_not_contact=False,
                    by="x",
                    reason="y",
                )
                is None
            )
        same = await set_do_not_contact(
            session, tenant_id=tid, lead_id=lead_id, do_not_contact=False, by="x", reason="y"
        )
    assert same is not None and not same.changed and same.lead.version == 3


async def test_two_operators_setting_it_at_once_write_it_once(db: Database) -> None:
    tid, _ = await make_tenant(db)
    async with db.session() as session:
        lead = await lead_repo.create_lead(
            session, tenant_id=tid, channel="email", address="kim@example.com"
        )

    async def set_it(by: str) -> bool:
        async with db.session() as session:
            change = await set_do_not_contact(
                session,
                tenant_id=tid,
                lead_id=lead.id,
                do_not_contact=True,
                by=by,
                reason="complaint",
            )
        assert change is not None and change.lead.do_not_contact is True
        return change.changed

    results = await asyncio.gather(set_it("a"), set_it("b"))
    # Whether the second read it unset (its UPDATE's condition then finds it set) or set: one
    # change, one version.
    assert sorted(results) == [False, True]
    async with db.session() as session:
        stored = await lead_repo.get_lead(session, tenant_id=tid, lead_id=lead.id)
    assert stored is not None and stored.do_not_contact is True and stored.version == 2
    # A lead without a conversation: nothing to write the reason into, and no error.
    assert await _reason(db, tid, Channel.EMAIL, "Kim@Example.com") is not None
