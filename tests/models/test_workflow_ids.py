"""Conversation workflow ids without contact details (models/workflow_ids.py): the keyed id rule,
the key in the database (created once, race-safely, by migrations and by processes), the
routes of legacy conversations and the resume of a lead across the change of id."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import SQLModel, select

from models import workflow_ids
from models.common import Channel, Role, Stage
from models.conversation import RecordTurnInput, conversation_workflow_id, lead_id_for
from models.db import Database, migrate
from models.identity import ContactIdError
from models.key_tables import DeploymentKey
from models.messages import TranscriptEntry
from models.repo import conversations as conversation_repo
from models.repo import deployment_keys
from models.table_modules import import_all
from models.tables import Conversation
from tests.conftest import make_tenant

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))
PHONE = "31612345678@c.us"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def ids() -> Iterator[None]:
    """This process's id state, restored after the test (other tests' databases share it)."""
    key, legacy = workflow_ids.held_key(), workflow_ids.legacy_routes()
    try:
        yield
    finally:
        workflow_ids._key = key
        workflow_ids.set_legacy_routes(legacy)


# ---- the rule ---------------------------------------------------------------------------------


def test_the_id_is_stable_keyed_and_holds_no_digit_of_the_contact(ids: None) -> None:
    first = workflow_ids.hashed_conversation_id("acme", Channel.WAHA, PHONE, KEY_A)
    assert first == workflow_ids.hashed_conversation_id("acme", "waha", PHONE, KEY_A)
    assert re.fullmatch(r"conv:acme:waha:[a-p]{24}", first), first
    assert not any(char.isdigit() for char in first)
    assert workflow_ids.hashed_conversation_id("acme", Channel.WAHA, PHONE, KEY_B) != first
    # Tenant, channel and contact all count.
    assert workflow_ids.hashed_conversation_id("acme2", Channel.WAHA, PHONE, KEY_A) != first
    assert (
        workflow_ids.hashed_conversation_id("acme", Channel.WHATSAPP, "31612345678", KEY_A) != first
    )
    other = workflow_ids.hashed_conversation_id("acme", Channel.WAHA, "31612345679@c.us", KEY_A)
    assert other != first
    email = workflow_ids.hashed_conversation_id("acme", Channel.EMAIL, "lia@example.com", KEY_A)
    assert "lia" not in email and "example" not in email and "@" not in email

    workflow_ids.set_key(KEY_A)
    assert conversation_workflow_id("acme", Channel.WAHA, PHONE) == first


def test_every_form_of_one_address_gives_one_id(ids: None) -> None:
    workflow_ids.set_key(KEY_A)
    waha = {
        conversation_workflow_id("acme", Channel.WAHA, form)
        for form in (
            PHONE,
            "31612345678@s.whatsapp.net",
            "31612345678:17@c.us",
            "+31 6 12345678",
            "0031612345678",
            f"  {PHONE} ",
        )
    }
    assert len(waha) == 1
    whatsapp = {
        conversation_workflow_id("acme", Channel.WHATSAPP, form)
        for form in ("31612345678", "+31 612-345-678")
    }
    assert len(whatsapp) == 1 and whatsapp != waha
    email = {
        conversation_workflow_id("acme", Channel.EMAIL, form)
        for form in ("Lia@Example.com", "lia@example.com")
    }
    assert len(email) == 1


def test_without_a_loaded_key_no_id_is_made(ids: None) -> None:
    workflow_ids._key = None
    with pytest.raises(workflow_ids.WorkflowIdKeyMissing, match="not loaded"):
        conversation_workflow_id("acme", Channel.WAHA, PHONE)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        workflow_ids.set_key(b"short")


def test_a_contact_that_is_no_address_is_refused(ids: None) -> None:
    workflow_ids.set_key(KEY_A)
    for bad in ("", "   ", "31612345678\n@c.us", "x" * 400):
        with pytest.raises(ContactIdError):
            conversation_workflow_id("acme", Channel.WAHA, bad)
    with pytest.raises(ValueError):
        conversation_workflow_id("acme", "carrier-pigeon", PHONE)


def test_a_running_legacy_conversation_keeps_its_id(ids: None) -> None:
    workflow_ids.set_key(KEY_A)
    legacy = workflow_ids.legacy_conversation_id("acme", Channel.WAHA, PHONE)
    assert legacy == f"conv:acme:waha:{PHONE}"
    workflow_ids.set_legacy_routes({("acme", "waha", PHONE): legacy})
    # Any form of the contact reaches it; another contact, tenant or channel does not.
    assert conversation_workflow_id("acme", Channel.WAHA, "+31 6 12345678") == legacy
    assert conversation_workflow_id("other", Channel.WAHA, PHONE) != legacy
    assert conversation_workflow_id("acme", Channel.WAHA, "31699999999@c.us").startswith(
        "conv:acme:waha:"
    )
    workflow_ids.set_legacy_routes({})
    assert conversation_workflow_id("acme", Channel.WAHA, PHONE) == (
        workflow_ids.hashed_conversation_id("acme", Channel.WAHA, PHONE, KEY_A)
    )


def test_the_contact_of_an_id_is_known_only_where_it_can_be(ids: None) -> None:
    workflow_ids.set_key(KEY_A)
    hashed = conversation_workflow_id("acme", Channel.WAHA, "+31 6 12345678")
    # Computed by this process: it remembers the (normalised) contact.
    assert workflow_ids.contact_of(hashed, "acme", Channel.WAHA) == PHONE
    assert workflow_ids.is_hashed(hashed, "acme", Channel.WAHA)
    # A legacy id names its contact.
    legacy = workflow_ids.legacy_conversation_id("acme", Channel.WAHA, "123@lid")
    assert workflow_ids.contact_of(legacy, "acme", Channel.WAHA) == "123@lid"
    assert not workflow_ids.is_hashed(legacy, "acme", Channel.WAHA)
    # Another tenant's id, or a hashed id this process never made (another key): unknown.
    assert workflow_ids.contact_of(hashed, "other", Channel.WAHA) is None
    foreign = workflow_ids.hashed_conversation_id("acme", Channel.WAHA, PHONE, KEY_B)
    assert workflow_ids.contact_of(foreign, "acme", Channel.WAHA) is None
    # A new key forgets what it computed under the old one.
    workflow_ids.set_key(KEY_B)
    assert workflow_ids.contact_of(hashed, "acme", Channel.WAHA) is None


# ---- the key in the database -----------------------------------------------------------------


async def _stored_keys(db: Database) -> list[str]:
    async with db.session() as session:
        return list((await session.exec(select(DeploymentKey.value))).all())


async def test_a_migrated_database_has_its_key_and_its_process_holds_it(
    ids: None, database_url: str
) -> None:
    workflow_ids._key = None
    migrate(database_url)
    held = workflow_ids.held_key()
    assert held is not None and len(held) == workflow_ids.KEY_BYTES
    db = Database(database_url)
    try:
        assert await _stored_keys(db) == [workflow_ids.encode_key(held)]
        # Migrating again and loading again change nothing.
        migrate(database_url)
        await deployment_keys.load(db)
        assert workflow_ids.held_key() == held
        assert await _stored_keys(db) == [workflow_ids.encode_key(held)]
    finally:
        await db.dispose()


async def test_the_stored_key_wins_over_the_one_a_process_holds(
    ids: None, database_url: str
) -> None:
    """A process that held another deployment's key (or none) takes the database's."""
    migrate(database_url)
    stored = workflow_ids.held_key()
    workflow_ids.set_key(KEY_B)
    db = Database(database_url)
    try:
        await deployment_keys.load(db)
        assert workflow_ids.held_key() == stored != KEY_B
    finally:
        await db.dispose()


async def test_a_schema_without_migrations_gets_one_key_from_racing_processes(
    ids: None, database_url: str
) -> None:
    """`create_all` schemas (no migration ran) get their key from the first process to ask;
    processes starting at once, each offering a random key, all end up with the one stored."""
    import_all()
    workflow_ids._key = None
    databases = [Database(database_url) for _ in range(6)]
    try:
        async with databases[0].engine.begin() as connection:
            await connection.run_sync(SQLModel.metadata.create_all)
        assert await _stored_keys(databases[0]) == []

        async def ensure(db: Database) -> bytes:
            async with db.engine.begin() as connection:
                return await connection.run_sync(deployment_keys.ensure_key)

        keys = await asyncio.gather(*(ensure(db) for db in databases))
        assert len(set(keys)) == 1 and len(keys[0]) == workflow_ids.KEY_BYTES
        assert await _stored_keys(databases[0]) == [workflow_ids.encode_key(keys[0])]
        await deployment_keys.load(databases[1])
        assert workflow_ids.held_key() == keys[0]
    finally:
        for db in databases:
            await db.dispose()


async def test_an_api_started_before_its_schema_loads_the_key_with_the_next_message(
    ids: None, sqlite_url: str
) -> None:
    """The API starts on a database that has no tables yet (or does not answer): logged, not
    fatal; the inbox's `ensure_loaded` fails (a 503) until the schema is there, then loads."""
    import_all()
    workflow_ids._key = None
    db = Database(sqlite_url)
    try:
        await deployment_keys.load_at_start(db)
        assert workflow_ids.held_key() is None
        with pytest.raises(SQLAlchemyError):
            await deployment_keys.ensure_loaded(db)
        async with db.engine.begin() as connection:
            await connection.run_sync(SQLModel.metadata.create_all)
        await deployment_keys.ensure_loaded(db)
        held = workflow_ids.held_key()
        assert held is not None and await _stored_keys(db) == [workflow_ids.encode_key(held)]
    finally:
        await db.dispose()


# ---- legacy conversations in the database ----------------------------------------------------


async def test_the_open_legacy_conversations_are_routed(ids: None, db: Database) -> None:
    tid, _ = await make_tenant(db)
    legacy_open = workflow_ids.legacy_conversation_id(tid, Channel.WAHA, PHONE)
    legacy_closed = workflow_ids.legacy_conversation_id(tid, Channel.EMAIL, "lia@example.com")
    hashed = conversation_workflow_id(tid, Channel.WAHA, "31600000001@c.us")
    async with db.session() as session:
        for conversation_id, channel, contact, stage in (
            (legacy_open, "waha", PHONE, Stage.QUALIFYING),
            (legacy_closed, "email", "lia@example.com", Stage.CLOSED),
            (hashed, "waha", "31600000001@c.us", Stage.QUALIFYING),
        ):
            session.add(
                Conversation(
                    id=conversation_id,
                    tenant_id=tid,
                    channel=channel,
                    contact=contact,
                    stage=stage.value,
                )
            )
        await session.commit()
    await deployment_keys.load(db)
    routes = workflow_ids.legacy_routes()
    assert {k: v for k, v in routes.items() if k[0] == tid} == {(tid, "waha", PHONE): legacy_open}
    assert conversation_workflow_id(tid, Channel.WAHA, PHONE) == legacy_open
    # Closed: the contact's next conversation gets its hashed id.
    email = conversation_workflow_id(tid, Channel.EMAIL, "Lia@example.com")
    assert email != legacy_closed and workflow_ids.is_hashed(email, tid, Channel.EMAIL)


def _turn(tid: str, conversation_id: str, n: int, stage: Stage) -> RecordTurnInput:
    at = T0 + timedelta(minutes=2 * n)
    return RecordTurnInput(
        conversation_id=conversation_id,
        tenant_id=tid,
        channel=Channel.WAHA,
        contact=PHONE,
        turn_key=f"turn-{n}",
        entries=(
            TranscriptEntry(role=Role.LEAD, text=f"lead {n}", at=at, provider_message_id=f"w-{n}"),
            TranscriptEntry(role=Role.AI, text=f"ai {n}", at=at + timedelta(minutes=1)),
        ),
        stage=stage,
        lead_id=lead_id_for(tid, Channel.WAHA, PHONE),
        turns=n,
    )


async def test_a_lead_resumes_its_legacy_conversation_then_its_latest(
    ids: None, db: Database
) -> None:
    """A run under the hashed id finds what the lead's legacy conversation left (its first
    turn), and once it recorded turns of its own, those."""
    tid, _ = await make_tenant(db)
    lead_id = lead_id_for(tid, Channel.WAHA, PHONE)
    legacy = workflow_ids.legacy_conversation_id(tid, Channel.WAHA, PHONE)
    async with db.session() as session:
        await conversation_repo.record_turn(session, record=_turn(tid, legacy, 1, Stage.CLOSED))

    async def resumed() -> conversation_repo.LeadAtTurnStart:
        async with db.session() as session:
            return await conversation_repo.lead_at_turn_start(
                session, tenant_id=tid, lead_id=lead_id, resume=True
            )

    state = await resumed()
    assert state.resume is not None
    assert (state.resume.turns, state.resume.stage) == (1, Stage.CLOSED)
    assert [e.text for e in state.resume.transcript] == ["lead 1", "ai 1"]

    hashed = conversation_workflow_id(tid, Channel.WAHA, PHONE)
    assert hashed != legacy
    async with db.session() as session:
        await conversation_repo.record_turn(session, record=_turn(tid, hashed, 2, Stage.QUALIFYING))
    state = await resumed()
    assert state.resume is not None
    assert (state.resume.turns, state.resume.stage) == (2, Stage.QUALIFYING)
    assert [e.text for e in state.resume.transcript] == ["lead 2", "ai 2"]
