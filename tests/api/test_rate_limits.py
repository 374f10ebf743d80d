"""Rate limits (api/rate_limits.py) through the real app over HTTP: per API key on /api/v1/, per
tenant on /webhooks/ (against the session's Temporal dev server), per client address for failed
authentications; and the settings that configure them.

The limiter's clock is a fake one the tests move (`limits` and the middleware read
`time.time()`), so "after the window" needs no sleep and no test straddles a window by chance."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import limits.storage.memory
import limits.strategies
import pytest
from fastapi import FastAPI
from pydantic import ValidationError
from sqlmodel import select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

import api.rate_limits
from api.app import create_app
from api.rate_limits import LoopMemoryStorage, RateLimits
from models.conversation import conversation_workflow_id
from models.db import Database
from models.identity_tables import InboundKey
from models.inbox_tables import InboxMessage
from models.repo import tenants as tenant_repo
from models.settings import Settings
from models.tenant import TenantSettings, WahaSettings
from tests.api.webhooks.conftest import Harness, payload, waha_sign
from tests.conftest import make_tenant

pytestmark = pytest.mark.timeout(120)

# 0.5 s into a minute (and into a second): nothing here crosses a window unless a test says so.
START = 1_800_000_000.5
LEAD = "11111111111@c.us"
SECRET = "waha-hmac-key"


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now
        self.mono = 1_000.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.mono += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The clock of `limits`' memory storage and strategies, and of the middleware."""
    fake = FakeClock(START)
    for module in (limits.storage.memory, limits.strategies, api.rate_limits):
        monkeypatch.setattr(module, "time", fake)
    return fake


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@asynccontextmanager
async def clients(app: FastAPI, *addresses: str) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One HTTP client per client address, all to the same running app."""
    async with app.router.lifespan_context(app):
        opened = [
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app, client=(address, 40000)),
                base_url="http://leadflow.test",
            )
            for address in addresses
        ]
        try:
            yield opened
        finally:
            for client in opened:
                await client.aclose()


def assert_throttled(resp: httpx.Response, error: str) -> int:
    """A 429 in the API's error shape with a whole-seconds Retry-After; returns it."""
    assert resp.status_code == 429, resp.text
    body = resp.json()
    assert set(body) == {"error", "detail"}
    assert body["error"] == error
    assert isinstance(body["detail"], str) and body["detail"]
    retry_after = int(resp.headers["Retry-After"])
    assert retry_after >= 1
    assert resp.headers["RateLimit-Remaining"] == "0"
    assert resp.headers["RateLimit-Reset"] == str(retry_after)
    return retry_after


# --- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("rate_limit_api", "lots", "couldn't parse rate limit string 'lots'"),
        ("rate_limit_webhooks", "100/fortnight", "no granularity matched for fortnight"),
        ("rate_limit_webhooks", "100/second;", "couldn't parse rate limit string"),
        ("rate_limit_auth_failures", "0/minute", "a limit of 0 refuses everything"),
    ],
)
def test_a_bad_rate_limit_setting_is_a_startup_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, field: str, value: str, reason: str
) -> None:
    monkeypatch.setenv(f"LEADFLOW_{field.upper()}", value)
    with pytest.raises(ValidationError) as info:
        Settings()
    message = str(info.value)
    assert field in message
    assert reason in message
    assert "e.g. '1200/minute'" in message or "leave it empty" in message


def test_rate_limit_settings_read_limits_notation_and_empty_is_no_limit() -> None:
    settings = Settings(
        rate_limit_api="20 per second, 1200 per minute",
        rate_limit_webhooks="",
        rate_limit_auth_failures="10/2 minutes",
    )
    limits_ = RateLimits.from_settings(settings)
    assert [(i.amount, i.get_expiry()) for i in limits_.api] == [(20, 1), (1200, 60)]
    assert limits_.webhooks == ()
    assert [(i.amount, i.get_expiry()) for i in limits_.auth_failures] == [(10, 120)]
    defaults = RateLimits.from_settings(Settings())
    # The benchmark sends up to 200 webhooks/s to one tenant, and 100/s for a minute.
    assert [(i.amount, i.get_expiry()) for i in defaults.webhooks] == [(400, 1), (12000, 60)]


# --- the limiter ------------------------------------------------------------------------------


def test_counting_starts_no_thread_and_forgets_windows_that_passed(clock: FakeClock) -> None:
    limiter = RateLimits(api="", webhooks="5/second;100/minute", auth_failures="")
    storage = limiter.limiter.storage
    assert isinstance(storage, LoopMemoryStorage)
    storage.timer.join()  # the one MemoryStorage starts when it is made
    threads = threading.active_count()
    for _ in range(3):
        limiter.hit(limiter.webhooks, "webhook", "old")
        clock.advance(0.3)
    assert threading.active_count() == threads
    assert any("/old/" in key for key in storage.storage)

    clock.advance(180)  # both windows of "old" are long over
    limiter.hit(limiter.webhooks, "webhook", "new")
    assert not any("/old/" in key for key in storage.storage)
    assert any("/new/" in key for key in storage.storage)
    assert threading.active_count() == threads


# --- per API key ------------------------------------------------------------------------------


@pytest.fixture
def api_app(
    sqlite_db: Database, sqlite_url: str, settings_factory: Callable[..., Settings]
) -> FastAPI:
    # Outbox reads need no Temporal: an unreachable address keeps these tests off the dev server.
    return create_app(
        settings_factory(
            sqlite_url,
            temporal_address="127.0.0.1:1",
            rate_limit_api="3/minute",
            rate_limit_auth_failures="3/minute",
        )
    )


async def test_an_api_key_over_its_limit_gets_429_and_other_keys_do_not(
    api_app: FastAPI, sqlite_db: Database, clock: FakeClock
) -> None:
    tenant_a, key_a = await make_tenant(sqlite_db)
    _, key_b = await make_tenant(sqlite_db)
    async with sqlite_db.session() as session:
        key_a2 = await tenant_repo.create_api_key(session, tenant_id=tenant_a)

    async with clients(api_app, "198.51.100.1") as (http,):
        for remaining in ("2", "1", "0"):
            ok = await http.get("/api/v1/outbox", headers=auth(key_a))
            assert ok.status_code == 200, ok.text
            assert ok.headers["RateLimit-Limit"] == "3"
            assert ok.headers["RateLimit-Remaining"] == remaining

        throttled = await http.get("/api/v1/outbox", headers=auth(key_a))
        retry_after = assert_throttled(throttled, "rate limit exceeded")
        assert retry_after == 60  # the minute's counter ends in 59.5 s
        assert "more than 3 requests per minute with API key" in throttled.json()["detail"]
        # Refused before the route: a POST is not even read (a body that is no JSON at all).
        post = await http.post(
            "/api/v1/knowledge",
            headers={**auth(key_a), "content-type": "application/json"},
            content=b"{not json",
        )
        assert post.status_code == 429

        # Another tenant's key, and another key of the same tenant, have their own budgets.
        assert (await http.get("/api/v1/outbox", headers=auth(key_b))).status_code == 200
        other = await http.get("/api/v1/outbox", headers=auth(key_a2))
        assert (other.status_code, other.headers["RateLimit-Remaining"]) == (200, "2")
        # Not limited at all: health.
        health = await http.get("/health")
        assert health.status_code == 200
        assert "RateLimit-Limit" not in health.headers

        clock.advance(retry_after)
        again = await http.get("/api/v1/outbox", headers=auth(key_a))
        assert again.status_code == 200, again.text


async def test_failed_authentications_count_per_address_and_never_against_a_key(
    api_app: FastAPI, sqlite_db: Database, clock: FakeClock
) -> None:
    _, key = await make_tenant(sqlite_db)
    _, unseen_key = await make_tenant(sqlite_db)
    async with clients(api_app, "203.0.113.7", "198.51.100.2") as (guesser, user):
        ok = await user.get("/api/v1/outbox", headers=auth(key))
        assert ok.headers["RateLimit-Remaining"] == "2"

        wrong = auth("lf_" + "x" * 43)
        for _ in range(3):
            assert (await guesser.get("/api/v1/outbox", headers=wrong)).status_code == 401
        refused = await guesser.get("/api/v1/outbox", headers=wrong)
        assert_throttled(refused, "too many failed authentications")
        assert "203.0.113.7" in refused.json()["detail"]
        missing = await guesser.get("/api/v1/outbox")  # no key at all counts the same
        assert missing.status_code == 429

        # From that address a key this process has seen working still works...
        seen = await guesser.get("/api/v1/outbox", headers=auth(key))
        assert seen.status_code == 200, seen.text
        # ...a key it has not seen waits for the window (documented), ...
        assert (await guesser.get("/api/v1/outbox", headers=auth(unseen_key))).status_code == 429
        # ...and the wrong keys spent nothing of the real key's budget (2 left, then 1 used).
        assert seen.headers["RateLimit-Remaining"] == "1"

        # Another address is not affected by the guesser's failures.
        assert (await user.get("/api/v1/outbox", headers=wrong)).status_code == 401

        clock.advance(int(refused.headers["Retry-After"]))
        assert (await guesser.get("/api/v1/outbox", headers=wrong)).status_code == 401


# --- per webhook tenant -----------------------------------------------------------------------


@pytest.fixture
async def webhooks(
    sqlite_db: Database,
    sqlite_url: str,
    settings_factory: Callable[..., Settings],
    temporal_client: Client,
) -> AsyncIterator[Harness]:
    settings = settings_factory(sqlite_url, rate_limit_webhooks="2/minute")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        app.state.leadflow.temporal = temporal_client
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://leadflow.test") as http:
            yield Harness(app=app, http=http, db=sqlite_db, temporal=temporal_client)


async def _rows(db: Database, tenant: str, workflow_id: str) -> list[Any]:
    async with db.session() as session:
        inbox = (
            await session.exec(select(InboxMessage).where(InboxMessage.workflow_id == workflow_id))
        ).all()
        keys = (await session.exec(select(InboundKey).where(InboundKey.tenant_id == tenant))).all()
    return [*inbox, *keys]


async def _signal_names(temporal: Client, workflow_id: str) -> list[str]:
    """The signals in the workflow's history, by name (their payloads may be encrypted)."""
    history = await temporal.get_workflow_handle(workflow_id).fetch_history()
    return [
        event.workflow_execution_signaled_event_attributes.signal_name
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    ]


async def test_a_tenant_over_its_webhook_limit_gets_429_and_nothing_starts(
    webhooks: Harness, clock: FakeClock
) -> None:
    tenant, _ = await webhooks.tenant(TenantSettings(waha=WahaSettings(webhook_secret=SECRET)))
    other, _ = await webhooks.tenant()
    message = payload("waha_envelope_message.json")
    receipt = payload("waha_ack.json")
    url = f"/webhooks/waha/{tenant}"

    # Webhooks without the tenant's signature do not spend its budget.
    for _ in range(5):
        unsigned = await webhooks.http.post(url, content=message)
        assert unsigned.status_code == 401, unsigned.text
    # Two signed ones do (receipts: acknowledged, nothing to deliver).
    for _ in range(2):
        ignored = await webhooks.http.post(url, content=receipt, headers=waha_sign(SECRET, receipt))
        assert ignored.status_code == 200, ignored.text

    throttled = await webhooks.http.post(url, content=message, headers=waha_sign(SECRET, message))
    retry_after = assert_throttled(throttled, "rate limit exceeded")
    assert "nothing was accepted or started" in throttled.json()["detail"]
    assert repr(tenant) in throttled.json()["detail"]
    workflow_id = conversation_workflow_id(tenant, "waha", LEAD)
    await webhooks.assert_not_started(workflow_id)
    assert await _rows(webhooks.db, tenant, workflow_id) == []  # no inbox row, no dedupe key

    # Another tenant is not affected.
    elsewhere = await webhooks.http.post(f"/webhooks/waha/{other}", content=message)
    assert elsewhere.status_code == 202, elsewhere.text

    # After the window the sender's retry is accepted as new (the 429 recorded nothing).
    clock.advance(retry_after)
    retried = await webhooks.http.post(url, content=message, headers=waha_sign(SECRET, message))
    assert retried.status_code == 202, retried.text
    assert retried.json()["delivered"][0]["workflow_id"] == workflow_id
    assert await _signal_names(webhooks.temporal, workflow_id) == ["inbound"]
