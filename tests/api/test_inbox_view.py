"""The console's inbox through the API, on SQLite and PostgreSQL: the list's filters and search
(wildcards in the search are literal), its richer summaries, and a conversation's page built
from rows written the way a turn writes them (the record step, the outbox's claim and mark, the
usage ledger, the CRM sync's record) — who wrote each line, how each sent line was delivered,
the score's components, escalations and who was told, the lead's state per CRM, the cost.
Another tenant sees none of it; bad parameters are 422."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from api.app import create_app
from models.agent import LeadScore, ScoreComponent
from models.campaign_tables import Campaign, CampaignRecipient
from models.common import Channel, LeadQuality, Role, Stage
from models.conversation import EscalationRecord, RecordTurnInput, conversation_workflow_id
from models.crm import CrmKind, SagaStepOutcome, StepStatus, SyncOutcome, SyncStatus
from models.db import Database
from models.inbox_view import deliveries
from models.messages import OutboundMessage, TranscriptEntry
from models.repo import conversations as conversation_repo
from models.repo import crm as crm_repo
from models.repo import outbox as outbox_repo
from models.repo import usage as usage_repo
from models.repo.inbox_view import MessageRow, OutboxRow
from models.settings import Settings
from models.tables import Lead
from models.usage import CallOutcome, LlmCallRecord
from tests.conftest import TEST_SECRET, make_tenant

pytestmark = pytest.mark.timeout(120)

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
ANNELIES = "31611111111@c.us"
PIET = "piet@example.nl"
KEES = "31633333333@c.us"
LONG_REPLY = "Goedemorgen Annelies! " + "De Superb combi staat klaar voor een proefrit. " * 6


@pytest.fixture
async def api(
    db: Database, database_url: str, settings_factory: Callable[..., Settings]
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings_factory(database_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://leadflow.test") as http:
            yield http


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _score(total: int, quality: LeadQuality) -> LeadScore:
    return LeadScore(
        total=total,
        quality=quality,
        components=(
            ScoreComponent(name="intent", points=total - 5, max_points=60, reason="test drive"),
            ScoreComponent(name="budget", points=5, max_points=20, reason="budget named"),
        ),
    )


def _turn(tenant_id: str, channel: Channel, contact: str, **values: Any) -> RecordTurnInput:
    return RecordTurnInput(
        conversation_id=conversation_workflow_id(tenant_id, channel.value, contact),
        tenant_id=tenant_id,
        channel=channel,
        contact=contact,
        lead_id=f"lead-{tenant_id}-{contact}",
        **values,
    )


async def _record(db: Database, turn: RecordTurnInput) -> None:
    async with db.session() as session:
        await conversation_repo.record_turn(session, record=turn)


async def _send(
    db: Database,
    turn: RecordTurnInput,
    key: str,
    text: str,
    *,
    status: str,
    provider_id: str | None = None,
) -> None:
    """An outbox row as the send activity leaves it: claimed, then marked."""
    message = OutboundMessage(
        tenant_id=turn.tenant_id,
        channel=turn.channel,
        to=turn.contact,
        text=text,
        idempotency_key=f"{turn.conversation_id}:{key}",
        conversation_id=turn.conversation_id,
    )
    async with db.session() as session:
        await outbox_repo.claim_send(session, message=message)
        if status == "sent":
            await outbox_repo.mark_sent(
                session,
                idempotency_key=message.idempotency_key,
                delivered_via="waha",
                provider_message_id=provider_id,
            )
        elif status == "stored":
            await outbox_repo.mark_stored(session, idempotency_key=message.idempotency_key)
        elif status == "failed":
            await outbox_repo.mark_failed(session, idempotency_key=message.idempotency_key)


async def _inbox(db: Database, tenant_id: str) -> dict[str, str]:
    """Three conversations of a tenant, written in this order (the last is the newest)."""
    annelies = _turn(
        tenant_id,
        Channel.WAHA,
        ANNELIES,
        contact_name="Annelies de Vries",
        turn_key="turn-1",
        entries=(
            TranscriptEntry(
                role=Role.LEAD, text="Ik zoek een Skoda Superb", at=T0, provider_message_id="in-1"
            ),
            TranscriptEntry(role=Role.AI, text=LONG_REPLY, at=T0 + timedelta(seconds=4)),
        ),
        stage=Stage.QUALIFYING,
        score=_score(45, LeadQuality.WARM),
        fields={"email": "annelies@voorbeeld.nl"},
        turns=1,
    )
    await _send(db, annelies, "turn-1", LONG_REPLY, status="stored")
    await _record(db, annelies)
    piet = _turn(
        tenant_id,
        Channel.EMAIL,
        PIET,
        contact_name="Piet",
        turn_key="turn-1",
        entries=(
            TranscriptEntry(
                role=Role.LEAD,
                text="Krijg ik 100%_korting op de Kodiaq?",
                at=T0 + timedelta(minutes=1),
                provider_message_id="<m1@example.nl>",
            ),
        ),
        stage=Stage.HUMAN_HANDOFF,
        score=_score(80, LeadQuality.HOT),
        escalation=EscalationRecord(rule="discount", reason="asks for a discount", notified=()),
        turns=1,
    )
    await _record(db, piet)
    kees = _turn(
        tenant_id,
        Channel.WAHA,
        KEES,
        contact_name="Kees",
        turn_key="outreach",
        entries=(TranscriptEntry(role=Role.AI, text="Hallo Kees, nog interesse?", at=T0),),
        stage=Stage.CLOSED,
        turns=0,
    )
    await _record(db, kees)
    async with db.session() as session:
        session.add(Campaign(id=f"camp-{tenant_id}", tenant_id=tenant_id, channel="waha"))
        await session.commit()
        session.add(
            CampaignRecipient(
                campaign_id=f"camp-{tenant_id}",
                tenant_id=tenant_id,
                position=1,
                lead_id=kees.lead_id,
                status="sent",
                conversation_id=kees.conversation_id,
            )
        )
        await session.commit()
    return {
        "annelies": annelies.conversation_id,
        "piet": piet.conversation_id,
        "kees": kees.conversation_id,
    }


async def _ids(api: httpx.AsyncClient, key: str, **params: Any) -> list[str]:
    response = await api.get("/api/v1/conversations", params=params, headers=auth(key))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] >= len(body["conversations"])
    return [c["id"] for c in body["conversations"]]


async def test_the_inbox_filters_searches_and_summarises(
    api: httpx.AsyncClient, db: Database
) -> None:
    a, a_key = await make_tenant(db)
    b, b_key = await make_tenant(db)
    ids = await _inbox(db, a)
    b_ids = await _inbox(db, b)  # the same names and words in another tenant
    annelies, piet, kees = ids["annelies"], ids["piet"], ids["kees"]

    listed = await api.get("/api/v1/conversations", headers=auth(a_key))
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["total"] == 3
    # Newest activity first: written Annelies, Piet, Kees.
    assert [c["id"] for c in body["conversations"]] == [kees, piet, annelies]
    first = {c["id"]: c for c in body["conversations"]}
    row = first[annelies]
    assert row["lead_name"] == "Annelies de Vries"
    assert row["lead_id"] == f"lead-{a}-{ANNELIES}"
    assert row["needs_human"] is False and row["campaign_id"] is None
    assert row["last_message"]["role"] == "ai"
    assert row["last_message"]["text"] == LONG_REPLY[:140] and len(LONG_REPLY) > 140
    assert row["last_message"]["at"].startswith("2026-03-01T09:00:04")
    # The fields it always had are all still there.
    assert (row["channel"], row["contact"], row["stage"], row["quality"], row["turns"]) == (
        "waha",
        ANNELIES,
        "qualifying",
        "WARM",
        1,
    )
    assert row["score"] == 45 and row["updated_at"] and row["last_message_at"]
    assert first[piet]["needs_human"] is True
    assert first[piet]["last_message"]["role"] == "lead"
    assert first[kees]["campaign_id"] == f"camp-{a}"

    assert await _ids(api, a_key, needs_human="true") == [piet]
    assert await _ids(api, a_key, needs_human="false") == [kees, annelies]
    assert await _ids(api, a_key, stage="closed") == [kees]
    assert await _ids(api, a_key, quality="HOT") == [piet]
    assert await _ids(api, a_key, channel="email") == [piet]
    assert await _ids(api, a_key, channel="waha") == [kees, annelies]
    assert await _ids(api, a_key, campaign_id=f"camp-{a}") == [kees]
    assert await _ids(api, a_key, campaign_id=f"camp-{b}") == []  # B's campaign: nothing of A

    # Search: name, message text (case-insensitive), contact, phone as typed, e-mail.
    assert await _ids(api, a_key, q="ANNELIES") == [annelies]
    assert await _ids(api, a_key, q="superb") == [annelies]
    assert await _ids(api, a_key, q="kodiaq") == [piet]
    assert await _ids(api, a_key, q="31633") == [kees]
    assert await _ids(api, a_key, q="+31 6 1111") == [annelies]
    assert await _ids(api, a_key, q="annelies@voorbeeld") == [annelies]
    assert await _ids(api, a_key, q="piet@example") == [piet]
    assert await _ids(api, a_key, q="  superb  ") == [annelies]  # trimmed
    assert await _ids(api, a_key, q="") == [kees, piet, annelies]  # blank: no search
    # LIKE's wildcards are literal: only Piet's message has a % and an _.
    assert await _ids(api, a_key, q="%") == [piet]
    assert await _ids(api, a_key, q="_") == [piet]
    assert await _ids(api, a_key, q="100%_k") == [piet]
    assert await _ids(api, a_key, q="\\") == []
    assert await _ids(api, a_key, q="nobody-here") == []
    # Filters combine.
    assert await _ids(api, a_key, q="superb", stage="closed") == []
    assert await _ids(api, a_key, q="a", needs_human="false", channel="waha") == [
        kees,
        annelies,
    ]
    # Pages: total counts every match.
    page = await api.get(
        "/api/v1/conversations", params={"limit": 1, "offset": 1}, headers=auth(a_key)
    )
    assert page.json()["total"] == 3
    assert [c["id"] for c in page.json()["conversations"]] == [piet]
    counted = await api.get("/api/v1/conversations", params={"q": "a"}, headers=auth(a_key))
    assert counted.json()["total"] == len(counted.json()["conversations"])

    # B's inbox: its own three, none of A's, whatever it searches.
    assert sorted(await _ids(api, b_key)) == sorted(b_ids.values())
    assert set(await _ids(api, b_key, q="Annelies")) == {b_ids["annelies"]}


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"needs_human": "perhaps"}, ["query", "needs_human"]),
        ({"channel": "pigeon"}, ["query", "channel"]),
        ({"stage": "bogus"}, ["query", "stage"]),
        ({"q": "x" * 101}, ["query", "q"]),
        ({"campaign_id": ""}, ["query", "campaign_id"]),
        ({"offset": "-1"}, ["query", "offset"]),
    ],
    ids=["needs_human", "channel", "stage", "q-too-long", "campaign-empty", "offset"],
)
async def test_bad_inbox_parameters_are_422(
    api: httpx.AsyncClient, db: Database, params: dict[str, str], loc: list[str]
) -> None:
    _, key = await make_tenant(db)
    response = await api.get("/api/v1/conversations", params=params, headers=auth(key))
    assert response.status_code == 422, response.text
    assert [p["loc"] for p in response.json()["detail"]] == [loc]


async def _conversation_page(db: Database, tenant_id: str) -> RecordTurnInput:
    """A conversation as the workflow leaves it after: a turn answered through WAHA (sent), a
    turn answered into the outbox (stored), an escalation telling Sanne and Joost, an
    operator's message (sent), an agent's reply in Chatwoot (not sent by leadflow), a system
    note; its model calls; its lead synced to HubSpot (and a second CRM never synced)."""
    first = _turn(
        tenant_id,
        Channel.WAHA,
        ANNELIES,
        contact_name="Annelies",
        turn_key="turn-1",
        entries=(
            TranscriptEntry(
                role=Role.LEAD, text="Hoi, de Superb?", at=T0, provider_message_id="in-1"
            ),
        ),
        stage=Stage.QUALIFYING,
        score=_score(40, LeadQuality.WARM),
        fields={"budget": 30000},
        turns=1,
    )
    # send_and_record: the send (WAHA took it: its id), then the turn with the reply's line.
    await _send(db, first, "turn-1", "Ja, hij staat er!", status="sent", provider_id="out-1")
    await _record(
        db,
        first.model_copy(
            update={
                "entries": (
                    *first.entries,
                    TranscriptEntry(
                        role=Role.AI,
                        text="Ja, hij staat er!",
                        at=T0 + timedelta(seconds=3),
                        provider_message_id="out-1",
                    ),
                )
            }
        ),
    )
    second = first.model_copy(
        update={
            "turn_key": "turn-2",
            "entries": (
                TranscriptEntry(
                    role=Role.LEAD,
                    text="Mag ik financieren?",
                    at=T0 + timedelta(minutes=1),
                    provider_message_id="in-2",
                ),
                TranscriptEntry(
                    role=Role.AI, text="Een collega belt u.", at=T0 + timedelta(minutes=1)
                ),
            ),
            "stage": Stage.HUMAN_HANDOFF,
            "score": _score(75, LeadQuality.HOT),
            "escalation": EscalationRecord(
                rule="financing", reason="asks about financing", notified=("Sanne", "Joost")
            ),
            "turns": 2,
        }
    )
    await _send(db, second, "turn-2", "Een collega belt u.", status="stored")
    await _record(db, second)
    operator_key = "operator:message:op-1"
    await _send(
        db, first, operator_key, "Sanne hier, ik bel zo.", status="sent", provider_id="out-2"
    )
    await _record(
        db,
        second.model_copy(
            update={
                "turn_key": operator_key,
                "entries": (
                    TranscriptEntry(
                        role=Role.HUMAN,
                        text="Sanne hier, ik bel zo.",
                        at=T0 + timedelta(minutes=2),
                        provider_message_id="out-2",
                    ),
                ),
                "escalation": None,
                "score": None,
            }
        ),
    )
    await _record(
        db,
        second.model_copy(
            update={
                "turn_key": "human:cw-9",
                "entries": (
                    TranscriptEntry(
                        role=Role.HUMAN,
                        text="(Joost via Chatwoot) Afspraak staat.",
                        at=T0 + timedelta(minutes=3),
                        provider_message_id="cw-9",
                    ),
                    TranscriptEntry(
                        role=Role.SYSTEM,
                        text="the follow_up message failed",
                        at=T0 + timedelta(minutes=4),
                    ),
                ),
                "escalation": None,
                "score": None,
            }
        ),
    )
    async with db.session() as session:
        await usage_repo.record_calls(
            session,
            calls=[
                LlmCallRecord(
                    tenant_id=tenant_id,
                    conversation_id=first.conversation_id,
                    step=step,
                    provider="anthropic",
                    model=model,
                    cost_usd=cost,
                    outcome=CallOutcome.OK,
                )
                for step, model, cost in (
                    ("analysis", "claude-haiku", 0.0012),
                    ("reply", "claude-sonnet", 0.0105),
                    ("analysis", "claude-haiku", 0.0008),
                )
            ],
        )
        hubspot = await crm_repo.create_integration(
            session,
            tenant_id=tenant_id,
            kind=CrmKind.HUBSPOT,
            name="HubSpot",
            credentials={"access_token": "pat"},
            secret_key=TEST_SECRET,
            base_url="https://api.hubapi.com",
        )
        await crm_repo.create_integration(
            session,
            tenant_id=tenant_id,
            kind=CrmKind.PIPEDRIVE,
            name="Pipedrive",
            credentials={"api_token": "tok"},
            secret_key=TEST_SECRET,
            base_url="https://api.pipedrive.com",
        )
        lead = await session.get(Lead, first.lead_id)
        assert lead is not None
        version = lead.version
        await crm_repo.record_sync_run(
            session,
            run_key=f"crm:{first.lead_id}:v{version}",
            outcome=SyncOutcome(
                tenant_id=tenant_id,
                lead_id=first.lead_id,
                version=version,
                status=SyncStatus.SUCCEEDED,
                steps=(
                    SagaStepOutcome(
                        integration_id=hubspot.id,
                        kind=CrmKind.HUBSPOT,
                        name="HubSpot",
                        status=StepStatus.SUCCEEDED,
                        remote_id="hs-501",
                        created=True,
                    ),
                ),
            ),
        )
    return first


async def test_the_conversation_page_shows_what_the_turns_recorded(
    api: httpx.AsyncClient, db: Database
) -> None:
    a, a_key = await make_tenant(db)
    _, b_key = await make_tenant(db)
    turn = await _conversation_page(db, a)
    url = f"/api/v1/conversations/{turn.conversation_id}/view"

    response = await api.get(url, headers=auth(a_key))
    assert response.status_code == 200, response.text
    view = response.json()
    assert [(t["author"], t["text"], t["delivery"]) for t in view["transcript"]] == [
        ("lead", "Hoi, de Superb?", None),
        ("ai", "Ja, hij staat er!", "sent"),
        ("lead", "Mag ik financieren?", None),
        ("ai", "Een collega belt u.", "stored"),
        ("person", "Sanne hier, ik bel zo.", "sent"),
        ("person", "(Joost via Chatwoot) Afspraak staat.", None),
        ("system", "the follow_up message failed", None),
    ]
    assert view["transcript_truncated"] is False
    ids = [t["id"] for t in view["transcript"]]
    assert ids == sorted(ids)

    summary = view["conversation"]
    assert (summary["id"], summary["stage"], summary["needs_human"]) == (
        turn.conversation_id,
        "human_handoff",
        True,
    )
    assert summary["last_message"]["role"] == "system"
    lead = view["lead"]
    assert (lead["id"], lead["name"], lead["quality"], lead["score"]) == (
        turn.lead_id,
        "Annelies",
        "HOT",
        75,
    )
    assert lead["phone"] == "+31611111111" and lead["fields"] == {"budget": 30000}
    assert lead["do_not_contact"] is False and lead["tags"] == []
    assert view["score"]["total"] == 75 and view["score"]["quality"] == "HOT"
    assert [c["name"] for c in view["score"]["components"]] == ["intent", "budget"]
    assert view["score"]["components"][0]["reason"] == "test drive"
    (escalation,) = view["escalations"]
    assert escalation["rule"] == "financing" and escalation["notified"] == ["Sanne", "Joost"]
    assert escalation["resolved_at"] is None
    assert view["cost"]["calls"] == 3
    assert view["cost"]["usd"] == pytest.approx(0.0125)
    assert view["cost"]["by_model"] == {
        "claude-haiku": pytest.approx(0.002),
        "claude-sonnet": pytest.approx(0.0105),
    }
    crm = {c["integration"]: c for c in view["crm"]}
    assert set(crm) == {"HubSpot", "Pipedrive"}
    hub = crm["HubSpot"]
    assert (hub["kind"], hub["state"], hub["external_id"], hub["error"]) == (
        "hubspot",
        "synced",
        "hs-501",
        None,
    )
    assert hub["last_synced_at"] and hub["url"] is None
    assert (crm["Pipedrive"]["state"], crm["Pipedrive"]["external_id"]) == ("not_synced", None)
    assert [c["integration"] for c in view["crm"]] == ["HubSpot", "Pipedrive"]  # saga order
    assert hub["integration_id"] != "HubSpot"  # the connection's id

    # A later turn changes the lead (its score): HubSpot is a version behind until synced.
    await _record(
        db,
        turn.model_copy(
            update={"turn_key": "turn-3", "score": _score(90, LeadQuality.HOT), "turns": 3}
        ),
    )
    later = (await api.get(url, headers=auth(a_key))).json()
    assert [c["state"] for c in later["crm"]] == ["pending", "not_synced"]
    assert later["score"]["total"] == 90

    # The latest lines only, when asked for fewer.
    short = await api.get(url, params={"limit": 2}, headers=auth(a_key))
    assert [t["author"] for t in short.json()["transcript"]] == ["person", "system"]
    assert short.json()["transcript_truncated"] is True

    # Another tenant: 404 like an id that does not exist, nothing of A's in the answer.
    other = await api.get(url, headers=auth(b_key))
    assert other.status_code == 404, other.text
    assert "Superb" not in other.text and "Annelies" not in other.text
    missing = await api.get("/api/v1/conversations/conv:nope/view", headers=auth(a_key))
    assert missing.status_code == 404
    for bad in ("0", "2001", "many"):
        refused = await api.get(url, params={"limit": bad}, headers=auth(a_key))
        assert refused.status_code == 422, bad
        assert refused.json()["detail"][0]["loc"] == ["query", "limit"]
    assert (await api.get(url)).status_code == 401


def test_sent_lines_find_their_outbox_rows() -> None:
    """The matching rule alone: provider id first, then the turn's key with the same text,
    then the same text; every row serves one line; a pending or failed send says so."""
    conv = "conv:t:waha:x"

    def line(id_: int, role: str, text: str, key: str, provider: str | None = None) -> MessageRow:
        return MessageRow(id_, role, text, T0, provider, key)

    messages = [
        line(1, "lead", "hi", "in-1", "in-1"),
        line(2, "ai", "hello", "turn-1:1"),
        line(3, "ai", "hello", "turn-2:1"),  # the same text, the next turn
        line(4, "ai", "still there?", "follow-up:1:0"),  # sent under a key of its own
        line(5, "human", "by phone", "human:p-1", "p-1"),  # not sent by leadflow
        line(6, "ai", "via waha", "out-9", "out-9"),
    ]
    outbox = [
        OutboxRow(10, f"{conv}:turn-2", "hello", "failed", None),
        OutboxRow(11, f"{conv}:turn-1", "hello", "pending", None),
        OutboxRow(12, f"{conv}:follow_up:1", "still there?", "stored", None),
        OutboxRow(13, f"{conv}:turn-3", "via waha", "sent", "out-9"),
    ]
    assert deliveries(conv, messages, outbox) == {
        1: None,
        2: "pending",
        3: "failed",
        4: "stored",
        5: None,
        6: "sent",
    }
