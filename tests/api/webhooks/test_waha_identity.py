"""WAHA's @lid senders: mapped to the phone through WAHA's lids API (a fake WAHA over real HTTP),
cached, never failing the webhook; the @c.us/@lid twins of one message delivered once; bad
contact ids refused before anything is stored."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlmodel import select

from api.webhooks.waha_identity import LIDS, LidDirectory
from models.conversation import conversation_workflow_id
from models.db import Database
from models.identity_tables import InboundKey, WahaLid
from models.inbox_tables import InboxMessage
from models.tenant import TenantSettings, WahaSettings
from tests.api.webhooks.conftest import Harness
from tests.conftest import make_tenant
from tests.fakes.waha import FakeWaha

PHONE = "6281234567890@c.us"
LID = "176369157804064@lid"


@pytest.fixture(autouse=True)
def fresh_lid_cache() -> None:
    LIDS.clear()  # the process's cache: each test starts from the database and WAHA


async def stored_lids(db: Database) -> list[tuple[str, str, str]]:
    async with db.session() as session:
        rows = (await session.exec(select(WahaLid))).all()
    return [(r.tenant_id, r.lid, r.phone) for r in rows]


# ---- the lookup on its own -------------------------------------------------------------------


async def test_mapped_lid_is_asked_once_and_stored(db: Database, fake_waha: FakeWaha) -> None:
    tenant, _ = await make_tenant(db)
    fake_waha.map_lid(LID, PHONE)
    directory = LidDirectory()
    assert await directory.phone_for(db, tenant, fake_waha.settings(), LID) == PHONE
    assert await directory.phone_for(db, tenant, fake_waha.settings(), LID) == PHONE
    (lookup,) = fake_waha.lid_lookups()
    assert lookup.path == f"/api/default/lids/{LID}"
    assert lookup.headers["x-api-key"] == fake_waha.api_key
    assert await stored_lids(db) == [(tenant, LID, PHONE)]
    # Another API process (an empty cache) reads the table: WAHA is not asked again.
    assert await LidDirectory().phone_for(db, tenant, fake_waha.settings(), LID) == PHONE
    assert len(fake_waha.lid_lookups()) == 1


async def test_a_burst_from_a_new_lid_asks_waha_once(
    sqlite_db: Database, fake_waha: FakeWaha
) -> None:
    tenant, _ = await make_tenant(sqlite_db)
    fake_waha.map_lid(LID, PHONE)
    directory = LidDirectory()
    found = await asyncio.gather(
        *(directory.phone_for(sqlite_db, tenant, fake_waha.settings(), LID) for _ in range(8))
    )
    assert found == [PHONE] * 8
    assert len(fake_waha.lid_lookups()) == 1


async def test_unknown_phone_keeps_the_lid_and_is_not_stored(
    sqlite_db: Database, fake_waha: FakeWaha
) -> None:
    tenant, _ = await make_tenant(sqlite_db)
    directory = LidDirectory()
    assert await directory.phone_for(sqlite_db, tenant, fake_waha.settings(), LID) is None
    # WAHA answered `pn: null`: asked again only after a while, not on every message.
    assert await directory.phone_for(sqlite_db, tenant, fake_waha.settings(), LID) is None
    assert len(fake_waha.lid_lookups()) == 1
    assert await stored_lids(sqlite_db) == []


async def test_waha_failing_or_unconfigured_falls_back_to_the_lid(
    sqlite_db: Database, fake_waha: FakeWaha
) -> None:
    tenant, _ = await make_tenant(sqlite_db)
    fake_waha.map_lid(LID, PHONE)
    fake_waha.fail_next(status=500)
    assert await LidDirectory().phone_for(sqlite_db, tenant, fake_waha.settings(), LID) is None
    wrong_key = fake_waha.settings(api_key="not-the-key")  # 401
    assert await LidDirectory().phone_for(sqlite_db, tenant, wrong_key, LID) is None
    assert len(fake_waha.lid_lookups()) == 2
    # No WAHA, or one without an API key: nobody is asked.
    assert await LidDirectory().phone_for(sqlite_db, tenant, None, LID) is None
    no_key = WahaSettings(base_url=fake_waha.url)
    assert await LidDirectory().phone_for(sqlite_db, tenant, no_key, LID) is None
    assert len(fake_waha.lid_lookups()) == 2
    assert await stored_lids(sqlite_db) == []
    # WAHA well again: a fresh process maps it.
    assert await LidDirectory().phone_for(sqlite_db, tenant, fake_waha.settings(), LID) == PHONE


@pytest.fixture
async def silent_server() -> AsyncIterator[str]:
    """A WAHA that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    for writer in held:
        writer.close()
    server.close()


async def test_waha_that_does_not_answer_is_given_up_quickly(
    sqlite_db: Database, silent_server: str
) -> None:
    tenant, _ = await make_tenant(sqlite_db)
    waha = WahaSettings(base_url=silent_server, api_key="k")
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await LidDirectory(timeout=0.3).phone_for(sqlite_db, tenant, waha, LID) is None
    assert loop.time() - started < 2.0


async def test_down_waha_falls_back(sqlite_db: Database) -> None:
    tenant, _ = await make_tenant(sqlite_db)
    with FakeWaha() as gone:
        settings = gone.settings()
    assert await LidDirectory().phone_for(sqlite_db, tenant, settings, LID) is None


# ---- through the webhook ---------------------------------------------------------------------


async def post(
    harness: Harness, tenant: str, delivery: tuple[bytes, dict[str, str]]
) -> dict[str, Any]:
    raw, headers = delivery
    resp = await harness.http.post(f"/webhooks/waha/{tenant}", content=raw, headers=headers)
    assert resp.status_code in (200, 202), resp.text
    body: dict[str, Any] = resp.json()
    body["http_status"] = resp.status_code
    return body


async def test_lid_twin_first_is_mapped_and_the_phone_twin_is_a_duplicate(
    harness: Harness, fake_waha: FakeWaha
) -> None:
    tenant, _ = await harness.tenant(TenantSettings(waha=fake_waha.settings()))
    fake_waha.map_lid(LID, PHONE)
    as_phone, as_lid = fake_waha.twin_webhooks(phone=PHONE, lid=LID, body="Hi", key="3A8E1EBF")

    first = await post(harness, tenant, as_lid)
    second = await post(harness, tenant, as_phone)

    wid = conversation_workflow_id(tenant, "waha", PHONE)
    assert first["http_status"] == 202 and first["delivered"][0]["workflow_id"] == wid
    assert second["http_status"] == 200 and second["status"] == "ignored"
    assert second["ignored"] == [
        f"waha message false_3A8E1EBF from {PHONE}: duplicate of false_3A8E1EBF "
        f"already received for {wid}"
    ]
    ((name, (msg,)),) = await harness.signals(wid)
    assert (name, msg["contact"], msg["text"]) == ("inbound", PHONE, "Hi")
    await harness.assert_not_started(conversation_workflow_id(tenant, "waha", LID))
    # A later message from the lid alone goes to the same conversation, WAHA not asked again.
    later = fake_waha.message_webhook(from_=LID, body="Still there?")
    assert (await post(harness, tenant, later))["delivered"][0]["workflow_id"] == wid
    assert len(fake_waha.lid_lookups()) == 1


async def test_phone_twin_first_then_unmapped_lid_twin_is_one_message(
    harness: Harness, fake_waha: FakeWaha
) -> None:
    tenant, _ = await harness.tenant(TenantSettings(waha=fake_waha.settings()))
    as_phone, as_lid = fake_waha.twin_webhooks(phone=PHONE, lid=LID, body="Hi", key="ABCDEF01")
    first = await post(harness, tenant, as_phone)
    second = await post(harness, tenant, as_lid)  # WAHA knows no phone for it: pn null
    assert first["http_status"] == 202
    assert second["http_status"] == 200
    assert f"from {LID}: duplicate of false_ABCDEF01" in second["ignored"][0]
    phone_conversation = conversation_workflow_id(tenant, "waha", PHONE)
    assert len(await harness.signals(phone_conversation)) == 1
    await harness.assert_not_started(conversation_workflow_id(tenant, "waha", LID))
    # The twins named one person: the lid is mapped from now on, without WAHA.
    assert await stored_lids(harness.db) == [(tenant, LID, PHONE)]
    later = fake_waha.message_webhook(from_=LID, body="Still there?")
    assert (await post(harness, tenant, later))["delivered"][0]["workflow_id"] == phone_conversation
    assert len(fake_waha.lid_lookups()) == 1  # the one that answered pn null
    LIDS.clear()  # another API process: the table has it
    again = fake_waha.message_webhook(from_=LID, body="Hello?")
    assert (await post(harness, tenant, again))["delivered"][0]["workflow_id"] == phone_conversation
    assert len(fake_waha.lid_lookups()) == 1


async def test_unmapped_lid_first_then_phone_twin_maps_the_lid_for_later_messages(
    harness: Harness, fake_waha: FakeWaha
) -> None:
    tenant, _ = await harness.tenant(TenantSettings(waha=fake_waha.settings()))
    as_phone, as_lid = fake_waha.twin_webhooks(phone=PHONE, lid=LID, body="Hi", key="FEED01")
    first = await post(harness, tenant, as_lid)  # pn null: the lid's conversation
    second = await post(harness, tenant, as_phone)
    assert first["delivered"][0]["workflow_id"] == conversation_workflow_id(tenant, "waha", LID)
    assert second["status"] == "ignored"
    assert await stored_lids(harness.db) == [(tenant, LID, PHONE)]


async def test_twins_of_other_forms_teach_nothing(harness: Harness, fake_waha: FakeWaha) -> None:
    """A redelivery (same id form) or a group message maps no lid."""
    tenant, _ = await harness.tenant(TenantSettings(waha=fake_waha.settings()))
    lid_message = fake_waha.message_webhook(from_=LID, body="Hi", message_id=f"false_{LID}_R1")
    await post(harness, tenant, lid_message)
    assert (await post(harness, tenant, lid_message))["status"] == "ignored"
    assert await stored_lids(harness.db) == []


async def test_lid_twin_with_alt_id_in_data_needs_no_lookup(
    harness: Harness, fake_waha: FakeWaha
) -> None:
    tenant, _ = await harness.tenant(TenantSettings(waha=fake_waha.settings()))
    data = {"key": {"remoteJid": LID, "remoteJidAlt": "6281234567890:4@s.whatsapp.net"}}
    as_phone, as_lid = fake_waha.twin_webhooks(
        phone=PHONE, lid=LID, body="Hi", key="0A0B0C", data=data
    )
    first = await post(harness, tenant, as_lid)
    second = await post(harness, tenant, as_phone)
    assert first["delivered"][0]["workflow_id"] == conversation_workflow_id(tenant, "waha", PHONE)
    assert second["status"] == "ignored"
    assert fake_waha.lid_lookups() == []


async def test_lids_api_down_never_fails_the_webhook(harness: Harness, fake_waha: FakeWaha) -> None:
    tenant, _ = await harness.tenant(TenantSettings(waha=fake_waha.settings()))
    fake_waha.map_lid(LID, PHONE)
    fake_waha.fail_next(status=503)
    as_phone, as_lid = fake_waha.twin_webhooks(phone=PHONE, lid=LID, body="Hi", key="D0D0")
    first = await post(harness, tenant, as_lid)
    second = await post(harness, tenant, as_phone)
    # Unmapped: the conversation is the lid's, and the twin still is one message.
    assert first["http_status"] == 202
    assert first["delivered"][0]["workflow_id"] == conversation_workflow_id(tenant, "waha", LID)
    assert second["http_status"] == 200 and "duplicate of false_D0D0" in second["ignored"][0]
    await harness.assert_not_started(conversation_workflow_id(tenant, "waha", PHONE))


@pytest.mark.parametrize(
    "sender", ["6281234\x00567890@c.us", "62812345\n67890@c.us", "6" * 500 + "@c.us"]
)
async def test_bad_contact_id_is_422_and_nothing_is_stored(
    harness: Harness, fake_waha: FakeWaha, sender: str
) -> None:
    tenant, _ = await harness.tenant(TenantSettings(waha=fake_waha.settings()))
    raw, headers = fake_waha.message_webhook(from_=sender, body="hi")
    resp = await harness.http.post(f"/webhooks/waha/{tenant}", content=raw, headers=headers)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"] == "invalid contact id: " + json.loads(resp.text)["detail"][
        0
    ].removeprefix("contact: ")
    async with harness.db.session() as session:
        assert (await session.exec(select(InboxMessage))).all() == []
        assert (await session.exec(select(InboundKey))).all() == []
    await harness.assert_no_conversation(tenant)


def test_the_fake_lids_api_answers_as_documented(fake_waha: FakeWaha) -> None:
    """The fake's side of wire/waha_lids_and_identity.md §2, which the tests above rely on."""
    fake_waha.map_lid(LID, PHONE)
    fake_waha.map_lid("111@lid", "3111@c.us")
    auth = {"X-Api-Key": fake_waha.api_key}
    with httpx.Client(base_url=f"{fake_waha.url}/api/default", headers=auth) as waha:
        assert waha.get("/lids/176369157804064%40lid").json() == {"lid": LID, "pn": PHONE}
        assert waha.get("/lids/176369157804064").json() == {"lid": LID, "pn": PHONE}
        assert waha.get("/lids/999%40lid").json() == {"lid": "999@lid", "pn": None}
        assert waha.get("/lids/999%40c.us").status_code == 422
        assert waha.get("/lids/pn/6281234567890").json() == {"lid": LID, "pn": PHONE}
        assert waha.get("/lids/pn/5%40c.us").json() == {"lid": None, "pn": "5@c.us"}
        assert waha.get("/lids/pn/5%40lid").json() == {"lid": "5@lid", "pn": None}
        assert waha.get("/lids").json() == [
            {"lid": "111@lid", "pn": "3111@c.us"},
            {"lid": LID, "pn": PHONE},
        ]
        assert waha.get("/lids", params={"limit": 1, "offset": 1}).json() == [
            {"lid": LID, "pn": PHONE}
        ]
        assert waha.get("/lids/count").json() == {"count": 2}
        assert waha.get("/lids", headers={"X-Api-Key": "wrong"}).status_code == 401
    assert len(fake_waha.lid_lookups()) == 4
