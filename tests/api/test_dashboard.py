"""GET /api/v1/dashboard: the response's shape (the console's contract), days in the tenant's
time zone, tenant isolation, bad periods as 422s that say what is wrong (nothing read), and one
run through the real stack: a WhatsApp message answered by the AI is counted.

The figures themselves are tested with their numbers in tests/models/test_dashboard.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from temporalio.client import Client

from api.app import create_app
from models.common import Channel, Role, Stage
from models.conversation import RecordTurnInput, conversation_workflow_id
from models.db import Database
from models.messages import TranscriptEntry
from models.repo import conversations as conversation_repo
from models.settings import Settings
from models.tenant import TenantSettings
from tests.conftest import make_tenant
from tests.stack import live_stack

WAHA_MESSAGE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "waha-message.json"
LEAD = "31612345678@c.us"  # the example's sender

TOP_LEVEL = {
    "period",
    "messages_per_day",
    "first_reply_seconds",
    "escalations",
    "lead_quality",
    "funnel",
    "meetings_booked",
    "test_drives_booked",
    "model_cost",
    "enrichment",
    "crm_sync",
}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def client_factory(
    db: Database, database_url: str, settings_factory: Callable[..., Settings]
) -> AsyncIterator[Callable[..., Any]]:
    """The app on the test database (no Temporal needed: the dashboard only reads)."""
    stack: list[Any] = []

    async def make() -> httpx.AsyncClient:
        app = create_app(settings_factory(database_url, temporal_address="127.0.0.1:1"))
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://leadflow.test"
        )
        stack.append((lifespan, http))
        return http

    yield make
    for lifespan, http in reversed(stack):
        await http.aclose()
        await lifespan.__aexit__(None, None, None)


async def lead_writes(db: Database, tenant_id: str, at: datetime, reply_after: float) -> None:
    """A lead's message and the AI's answer, through the record step."""
    contact = "31611111111"
    async with db.session() as session:
        await conversation_repo.record_turn(
            session,
            record=RecordTurnInput(
                conversation_id=conversation_workflow_id(tenant_id, "waha", contact),
                tenant_id=tenant_id,
                channel=Channel.WAHA,
                contact=contact,
                turn_key="turn-1",
                entries=(
                    TranscriptEntry(role=Role.LEAD, text="hi", at=at, provider_message_id="w-1"),
                    TranscriptEntry(
                        role=Role.AI, text="hello", at=at + timedelta(seconds=reply_after)
                    ),
                ),
                stage=Stage.QUALIFYING,
                lead_id=f"lead-{tenant_id}",
                turns=1,
            ),
        )


async def test_shape_days_in_the_tenants_zone_and_isolation(
    db: Database, client_factory: Callable[..., Any]
) -> None:
    api: httpx.AsyncClient = await client_factory()
    # New York: 2026-11-20 23:30 local is 04:30 UTC on the 21st.
    tenant, key = await make_tenant(db, settings=TenantSettings(timezone="America/New_York"))
    _other, other_key = await make_tenant(db)
    await lead_writes(db, tenant, datetime(2026, 11, 21, 4, 30, tzinfo=UTC), reply_after=42)

    window = {"since": "2026-11-19", "until": "2026-11-21"}
    response = await api.get("/api/v1/dashboard", params=window, headers=auth(key))
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == TOP_LEVEL
    assert body["period"] == {
        "since": "2026-11-19",
        "until": "2026-11-21",
        "days": 3,
        "timezone": "America/New_York",
        "start": "2026-11-19T05:00:00Z",
        "end": "2026-11-22T05:00:00Z",
    }
    assert body["messages_per_day"] == [
        {"day": "2026-11-19", "in": 0, "out": 0, "ai": 0, "person": 0},
        {"day": "2026-11-20", "in": 1, "out": 1, "ai": 1, "person": 0},
        {"day": "2026-11-21", "in": 0, "out": 0, "ai": 0, "person": 0},
    ]
    assert body["first_reply_seconds"] == {
        "median": 42.0,
        "p90": 42.0,
        "count": 1,
        "unanswered": 0,
    }
    assert body["escalations"] == {"rate": 0.0, "by_rule": {}, "count": 0, "conversations": 1}
    assert body["lead_quality"] == {"HOT": 0, "WARM": 0, "LUKEWARM": 0, "COLD": 1}
    assert body["funnel"][:3] == [
        {"stage": "initial_outreach", "count": 0},
        {"stage": "awaiting_response", "count": 0},
        {"stage": "qualifying", "count": 1},
    ]
    assert len(body["funnel"]) == 8
    assert (body["meetings_booked"], body["test_drives_booked"]) == (0, 0)
    assert set(body["model_cost"]) == {
        "per_message_usd",
        "total_usd",
        "conversation_usd",
        "messages",
        "per_day",
    }
    assert body["model_cost"]["per_day"][1] == {
        "day": "2026-11-20",
        "by_model": {},
        "total_usd": 0.0,
    }
    assert body["enrichment"]["per_day"][0] == {"day": "2026-11-19", "done": 0, "failed": 0}
    assert body["enrichment"]["failure_reasons"] == {}
    assert body["crm_sync"] == {
        "success_rate": 0.0,
        "runs": 0,
        "succeeded": 0,
        "failed": 0,
        "skipped": 0,
    }

    # `days`: the last N days up to today in the tenant's zone.
    week = (await api.get("/api/v1/dashboard", params={"days": 7}, headers=auth(key))).json()
    today = datetime.now(ZoneInfo("America/New_York")).date()
    assert week["period"]["until"] == today.isoformat()
    assert [d["day"] for d in week["messages_per_day"]] == [
        (today - timedelta(days=6 - n)).isoformat() for n in range(7)
    ]
    default = (await api.get("/api/v1/dashboard", headers=auth(key))).json()
    assert default["period"]["days"] == 30 and len(default["messages_per_day"]) == 30

    # Another tenant sees nothing of it; without a key, nothing at all.
    theirs = await api.get("/api/v1/dashboard", params=window, headers=auth(other_key))
    assert theirs.status_code == 200
    assert theirs.json()["period"]["timezone"] == "UTC"
    assert [d["in"] for d in theirs.json()["messages_per_day"]] == [0, 0, 0]
    assert theirs.json()["first_reply_seconds"]["count"] == 0
    anonymous = await api.get("/api/v1/dashboard", params=window)
    assert anonymous.status_code == 401


@pytest.mark.parametrize(
    ("params", "where", "message"),
    [
        ({"days": "0"}, "days", "greater than or equal to 1"),
        ({"days": "367"}, "days", "less than or equal to 366"),
        ({"days": "week"}, "days", "valid integer"),
        ({"days": "7", "since": "2026-11-01"}, "days", "not both"),
        ({"since": "2026-02-30"}, "since", "YYYY-MM-DD"),
        ({"since": "01/11/2026"}, "since", "should match pattern"),
        ({"until": "2026-11-01T00:00:00Z"}, "until", "should match pattern"),
        ({"since": "1970-01-01", "until": "1970-01-02"}, "since", "between 2000-01-01"),
        ({"since": "2026-11-02", "until": "2026-11-01"}, "since", "is after until"),
        ({"since": "2025-01-01", "until": "2026-11-01"}, "until", "670 days, more than 366"),
        ({"since": "x" * 40}, "since", "should match pattern"),
    ],
)
async def test_bad_periods_are_422s_that_say_what_is_wrong(
    db: Database,
    client_factory: Callable[..., Any],
    params: dict[str, str],
    where: str,
    message: str,
) -> None:
    api: httpx.AsyncClient = await client_factory()
    _tenant, key = await make_tenant(db)
    response = await api.get("/api/v1/dashboard", params=params, headers=auth(key))
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid request"
    problems = body["detail"]
    assert [p["loc"] for p in problems] == [["query", where]]
    assert message in problems[0]["msg"]


@pytest.mark.timeout(180)
async def test_an_answered_whatsapp_message_is_counted(
    temporal_client: Client, settings_factory: Callable[..., Settings], sqlite_url: str
) -> None:
    """The real stack: the lead writes through WAHA's webhook, the worker's turn answers (the
    offline provider), and the dashboard of today counts the message in, the answer out, its
    time to first reply and the conversation in the funnel."""
    async with live_stack(temporal_client, settings_factory(sqlite_url)) as stack:
        event = json.loads(WAHA_MESSAGE.read_text())
        sent = datetime.now(UTC).replace(microsecond=0)
        event["payload"]["timestamp"] = int(sent.timestamp())
        posted = await stack.http.post(f"/webhooks/waha/{stack.tenant_id}", json=event)
        assert posted.status_code in (200, 202), posted.text
        conv_id = conversation_workflow_id(stack.tenant_id, "waha", LEAD)

        async def answered() -> bool:
            r = await stack.http.get(f"/api/v1/conversations/{conv_id}", headers=stack.auth)
            return r.status_code == 200 and r.json()["turns"] >= 1

        await stack.wait_for(answered, what="the first turn")
        # The tenant's zone is UTC; the period ends tomorrow in case the test crosses midnight.
        window = {
            "since": sent.date().isoformat(),
            "until": (sent.date() + timedelta(days=1)).isoformat(),
        }
        response = await stack.http.get("/api/v1/dashboard", params=window, headers=stack.auth)
        assert response.status_code == 200, response.text
        body = response.json()
        first_day = body["messages_per_day"][0]
        assert first_day["in"] == 1
        assert first_day["out"] == first_day["ai"] >= 1
        assert sum(d["out"] for d in body["messages_per_day"]) == first_day["out"]
        reply = body["first_reply_seconds"]
        assert (reply["count"], reply["unanswered"]) == (1, 0)
        assert reply["median"] is not None and reply["median"] >= 0
        assert sum(step["count"] for step in body["funnel"]) == 1
        assert body["escalations"]["conversations"] == 1
        # The offline provider's calls are in the ledger (free: it costs nothing).
        assert body["model_cost"]["total_usd"] == 0.0
