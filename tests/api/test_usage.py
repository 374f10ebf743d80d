"""GET /api/v1/usage: the tenant's LLM calls grouped by day, model or step, with totals and
today's budget; tenant isolation; bad ranges are 422s in the project's error shape. Runs on
SQLite and PostgreSQL (the day grouping differs per database)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from api.app import create_app
from models.db import Database
from models.repo import usage as usage_repo
from models.settings import Settings
from models.usage import CallOutcome, LlmCallRecord
from tests.conftest import make_tenant

DAY = date(2026, 11, 20)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def call(tenant_id: str, when: datetime, cost: float, **overrides: Any) -> LlmCallRecord:
    values: dict[str, Any] = {
        "tenant_id": tenant_id,
        "step": "analysis",
        "provider": "anthropic",
        "model": "claude-haiku-4-5",
        "input_tokens": 1000,
        "output_tokens": 100,
        "cost_usd": cost,
        "latency_ms": 400,
        "outcome": CallOutcome.OK,
        "at": when,
    }
    values.update(overrides)
    return LlmCallRecord(**values)


async def record(db: Database, *calls: LlmCallRecord) -> None:
    async with db.session() as s:
        for c in calls:
            await usage_repo.record_call(s, call=c)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def client_factory(
    db: Database, database_url: str, settings_factory: Callable[..., Settings]
) -> AsyncIterator[Callable[..., Any]]:
    """The app on the test database (no Temporal needed: the usage API never starts work)."""
    stack: list[Any] = []

    async def make(**overrides: Any) -> httpx.AsyncClient:
        app = create_app(settings_factory(database_url, **overrides))
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


async def test_usage_grouped_with_totals_and_isolation(
    db: Database, client_factory: Callable[..., Any]
) -> None:
    api: httpx.AsyncClient = await client_factory()
    t1, key1 = await make_tenant(db)
    t2, key2 = await make_tenant(db)
    next_day = DAY + timedelta(days=1)
    await record(
        db,
        call(t1, at(DAY, 9), 0.01, cached_tokens=800),
        call(
            t1,
            at(DAY, 23, 59),
            0.05,
            step="reply",
            provider="openai",
            model="gpt-4.1",
            outcome=CallOutcome.REPAIRED,
        ),
        call(t1, at(next_day, 0, 1), 0.0, outcome=CallOutcome.ERROR, error="529 overloaded"),
        call(t1, at(next_day + timedelta(days=1), 0, 0), 7.0),  # outside [from, to)
        call(t2, at(DAY, 10), 3.0),  # another tenant's
    )
    window = {"from": "2026-11-20", "to": "2026-11-21"}  # a date as `to` includes that day

    by_day = await api.get("/api/v1/usage", params=window, headers=auth(key1))
    assert by_day.status_code == 200, by_day.text
    body = by_day.json()
    assert body["from"] == "2026-11-20T00:00:00Z"
    assert body["to"] == "2026-11-22T00:00:00Z"
    assert body["group_by"] == "day"
    assert [(g["key"], g["calls"], g["errors"]) for g in body["groups"]] == [
        ("2026-11-20", 2, 0),
        ("2026-11-21", 1, 1),
    ]
    assert body["groups"][0]["cost_usd"] == pytest.approx(0.06)
    assert body["groups"][0]["cached_tokens"] == 800
    totals = body["totals"]
    assert (totals["calls"], totals["input_tokens"], totals["output_tokens"]) == (3, 3000, 300)
    assert (totals["errors"], totals["avg_latency_ms"]) == (1, 400.0)
    assert totals["cost_usd"] == pytest.approx(0.06)

    by_model = (
        await api.get("/api/v1/usage", params={**window, "group_by": "model"}, headers=auth(key1))
    ).json()
    assert [(g["key"], g["calls"]) for g in by_model["groups"]] == [
        ("openai:gpt-4.1", 1),
        ("anthropic:claude-haiku-4-5", 2),
    ]
    by_step = (
        await api.get("/api/v1/usage", params={**window, "group_by": "step"}, headers=auth(key1))
    ).json()
    assert {g["key"]: g["calls"] for g in by_step["groups"]} == {"reply": 1, "analysis": 2}

    # The other tenant sees its own call only.
    other = (await api.get("/api/v1/usage", params=window, headers=auth(key2))).json()
    assert [(g["key"], g["cost_usd"]) for g in other["groups"]] == [("2026-11-20", 3.0)]
    assert other["totals"]["calls"] == 1
    assert t2 != t1

    # Datetimes with offsets are taken in UTC: 2026-11-21T01:00+02:00 is 23:00 UTC on the 20th.
    narrow = (
        await api.get(
            "/api/v1/usage",
            params={"from": "2026-11-20T09:00:00", "to": "2026-11-21T01:00:00+02:00"},
            headers=auth(key1),
        )
    ).json()
    assert narrow["to"] == "2026-11-20T23:00:00Z"
    assert narrow["totals"]["calls"] == 1

    # Default range: the last 30 days up to now (the 2026 calls above are in the past or future
    # of "now" depending on the clock, so only the range itself is checked).
    default = (await api.get("/api/v1/usage", headers=auth(key1))).json()
    start = datetime.fromisoformat(default["from"])
    end = datetime.fromisoformat(default["to"])
    assert end - start == timedelta(days=30)
    assert abs((end - datetime.now(UTC)).total_seconds()) < 60


async def test_budget_block(db: Database, client_factory: Callable[..., Any]) -> None:
    unlimited_api: httpx.AsyncClient = await client_factory()
    limited_api: httpx.AsyncClient = await client_factory(llm_daily_budget_usd=1.0)
    tid, key = await make_tenant(db)
    now = datetime.now(UTC)
    yesterday = now - timedelta(days=1)
    await record(db, call(tid, now, 0.25), call(tid, now, 0.5), call(tid, yesterday, 9.0))

    unlimited = (await unlimited_api.get("/api/v1/usage", headers=auth(key))).json()["budget"]
    assert unlimited["daily_usd"] is None and unlimited["remaining_today_usd"] is None
    assert unlimited["spent_today_usd"] == pytest.approx(0.75)  # yesterday's 9 USD not counted

    limited = (await limited_api.get("/api/v1/usage", headers=auth(key))).json()["budget"]
    assert limited["daily_usd"] == 1.0
    assert limited["spent_today_usd"] == pytest.approx(0.75)
    assert limited["remaining_today_usd"] == pytest.approx(0.25)

    await record(db, call(tid, datetime.now(UTC), 2.0))
    over = (await limited_api.get("/api/v1/usage", headers=auth(key))).json()["budget"]
    assert over["remaining_today_usd"] == 0.0  # never negative


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-01"}, "to"),
        ({"from": "2026-11-20T25:00:00"}, "from"),
        ({"from": "2026-11-21", "to": "2026-11-19"}, "to"),
        ({"from": "2025-01-01", "to": "2026-11-20"}, "to"),  # > 366 days
        ({"to": "0001-01-01"}, "to"),  # the default start would be before year 1
        ({"to": "9999-12-31"}, "to"),  # the day after it does not exist
        ({"from": "0001-01-01T00:00:00+05:00"}, "from"),
        ({"group_by": "week"}, "group_by"),
        ({"from": "2026-11-20" + "0" * 100}, "from"),
    ],
)
async def test_bad_parameters_are_422(
    db: Database,
    client_factory: Callable[..., Any],
    params: dict[str, str],
    where: str,
) -> None:
    api: httpx.AsyncClient = await client_factory()
    _, key = await make_tenant(db)
    response = await api.get("/api/v1/usage", params=params, headers=auth(key))
    assert response.status_code == 422, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}
    assert body["error"] == "invalid request"
    assert any(where in problem["loc"] for problem in body["detail"]), body


async def test_usage_needs_a_valid_key(db: Database, client_factory: Callable[..., Any]) -> None:
    api: httpx.AsyncClient = await client_factory()
    assert (await api.get("/api/v1/usage")).status_code == 401
    assert (await api.get("/api/v1/usage", headers=auth("lf_nope"))).status_code == 401
