"""The audit log through the API: every authenticated mutating request of a small scenario lands
in it with the key that made it, the action, the resource, the status and the request id; reads,
webhooks and unauthenticated requests do not; no secret reaches it; a tenant reads only its own
log, filtered and paged within bounds. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from api import audit_middleware
from api.app import create_app
from api.routes import ROUTERS
from models import api_keys, audit
from models.db import Database
from models.settings import Settings
from tests.conftest import make_tenant

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def api(
    db: Database, database_url: str, settings_factory: Callable[..., Settings]
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings_factory(database_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://leadflow.test") as http:
            yield http


def auth(key: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **headers}


async def _labelled_key(api: httpx.AsyncClient, key: str, label: str) -> tuple[int, str]:
    created = await api.post("/api/v1/keys", json={"label": label}, headers=auth(key))
    assert created.status_code == 201, created.text
    return created.json()["key"]["id"], created.json()["secret"]


async def _entries(api: httpx.AsyncClient, key: str, **params: Any) -> list[dict[str, Any]]:
    response = await api.get("/api/v1/audit", params=params, headers=auth(key))
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


async def test_every_mutating_request_is_recorded_with_its_key(
    api: httpx.AsyncClient, db: Database
) -> None:
    tid, first = await make_tenant(db)
    ops_id, ops = await _labelled_key(api, first, "ops")
    before = len(await _entries(api, ops))  # the creation of "ops", by the first key

    sent: list[tuple[str, str, int, str]] = []  # (action, resource, status, request id)

    async def call(method: str, path: str, action: str, resource: str | None, **kw: Any) -> Any:
        response = await api.request(method, path, headers=auth(ops), **kw)
        sent.append(
            (action, resource or "", response.status_code, response.headers["x-request-id"])
        )
        return response

    bot = await call("POST", "/api/v1/keys", "key.create", None, json={"label": "bot"})
    bot_id = bot.json()["key"]["id"]
    sent[-1] = ("key.create", str(bot_id), 201, sent[-1][3])
    doc = await call(
        "POST",
        "/api/v1/knowledge",
        "knowledge.create",
        None,
        json={"title": "Prices", "body": "The Golf costs 30k; IBAN NL91ABNA0417164300"},
    )
    assert doc.status_code == 201
    await call(
        "DELETE", f"/api/v1/knowledge/{doc.json()['id']}", "knowledge.delete", doc.json()["id"]
    )
    settings = await call(
        "PATCH",
        "/api/v1/settings",
        "settings.update",
        None,
        json={"waha": {"session": "sales", "api_key": "waha-very-secret"}},
    )
    assert settings.status_code == 200, settings.text
    await call("POST", f"/api/v1/keys/{bot_id}/rotate", "key.rotate", str(bot_id))
    await call("DELETE", f"/api/v1/keys/{bot_id}", "key.revoke", str(bot_id))
    missing = await call("DELETE", "/api/v1/keys/2000000000", "key.revoke", "2000000000")
    assert missing.status_code == 404
    own = await call("DELETE", f"/api/v1/keys/{ops_id}", "key.revoke", str(ops_id))
    assert own.status_code == 409
    # not recorded: reads, unauthenticated requests, webhooks
    assert (await api.get("/api/v1/keys", headers=auth(ops))).status_code == 200
    assert (await api.post("/api/v1/keys", json={"label": "x"})).status_code == 401
    assert (
        await api.post("/api/v1/keys", json={"label": "x"}, headers=auth("lf_wrong"))
    ).status_code == 401
    hook = await api.post(
        f"/webhooks/waha/{tid}",
        json={"event": "session.status", "session": "sales", "payload": {"status": "WORKING"}},
    )
    assert hook.status_code < 500

    entries = await _entries(api, ops)
    new = list(reversed(entries[: len(entries) - before]))
    assert [
        (e["action"], e["resource_id"] or "", e["status"], e["request_id"]) for e in new
    ] == sent
    for e in new:
        assert (e["actor_kind"], e["actor"], e["api_key_id"]) == ("api_key", "ops", ops_id)
        assert e["outcome"] == audit.outcome_of(e["status"])
    assert [e["outcome"] for e in new[-2:]] == ["refused", "refused"]
    by_action = {e["action"]: e for e in new}
    assert by_action["settings.update"]["route"] == "/api/v1/settings"
    assert by_action["settings.update"]["method"] == "PATCH"
    assert by_action["key.rotate"]["detail"]["label"] == "bot"
    assert by_action["key.rotate"]["route"] == "/api/v1/keys/{key_id}/rotate"
    # never a secret or a body in the log
    text = json.dumps(entries)
    for secret in ("waha-very-secret", "NL91ABNA0417164300", ops, first, bot.json()["secret"]):
        assert secret not in text


async def test_the_request_id_is_the_clients_when_sane(
    api: httpx.AsyncClient, db: Database
) -> None:
    _, key = await make_tenant(db)
    given = await api.post(
        "/api/v1/keys", json={"label": "a"}, headers=auth(key, **{"X-Request-ID": "req-123.abc"})
    )
    assert given.headers["x-request-id"] == "req-123.abc"
    odd_id = "a b\u00e9".encode("latin-1") * 30  # spaces, a non-ASCII byte, too long
    odd = await api.post(
        "/api/v1/keys",
        json={"label": "b"},
        headers=[(b"Authorization", f"Bearer {key}".encode()), (b"X-Request-ID", odd_id)],
    )
    replaced = odd.headers["x-request-id"]
    assert replaced.encode() != odd_id and len(replaced) == 32
    entries = await _entries(api, key, action="key.create")
    assert [e["request_id"] for e in entries] == [replaced, "req-123.abc"]


async def test_a_tenant_reads_only_its_own_log(api: httpx.AsyncClient, db: Database) -> None:
    _, key_a = await make_tenant(db)
    _, key_b = await make_tenant(db)
    await _labelled_key(api, key_a, "a-only")
    id_a = (await _entries(api, key_a))[0]["id"]
    # B's attempt on A's key is B's own (refused) action
    a_key = (await api.get("/api/v1/keys", headers=auth(key_a))).json()["keys"][0]["id"]
    assert (await api.delete(f"/api/v1/keys/{a_key}", headers=auth(key_b))).status_code == 404
    entries_b = await _entries(api, key_b)
    assert [(e["action"], e["status"]) for e in entries_b] == [("key.revoke", 404)]
    assert "a-only" not in json.dumps(entries_b)
    # paging past A's entry id from B shows nothing of A's either
    assert await _entries(api, key_b, before=id_a + 1) == []
    assert [e["detail"].get("label") for e in await _entries(api, key_a)] == ["a-only"]


async def test_filters_and_pages(api: httpx.AsyncClient, db: Database) -> None:
    tid, key = await make_tenant(db)
    for label in ("one", "two", "three"):
        await _labelled_key(api, key, label)
    await api.post("/api/v1/knowledge", json={"title": "t", "body": "b"}, headers=auth(key))
    # a CLI action recorded through the service
    async with db.session() as session:
        await audit.record(
            session,
            tenant_id=tid,
            actor=audit.cli_actor("alice"),
            action="settings.update",
            detail={"fields": ["waha"], "api_key": "must-not-appear"},
        )

    everything = await _entries(api, key)
    assert [e["action"] for e in everything] == [
        "settings.update",
        "knowledge.create",
        "key.create",
        "key.create",
        "key.create",
    ]
    cli = everything[0]
    assert (cli["actor_kind"], cli["actor"], cli["api_key_id"], cli["status"]) == (
        "cli",
        "alice",
        None,
        None,
    )
    assert cli["detail"] == {"fields": "waha", "api_key": "***"}

    assert [e["detail"]["label"] for e in await _entries(api, key, action="key.create")] == [
        "three",
        "two",
        "one",
    ]
    assert len(await _entries(api, key, action="key.*")) == 3
    assert await _entries(api, key, action="key") == []
    assert await _entries(api, key, action="%") == []  # a LIKE wildcard is a character here

    first = await api.get("/api/v1/audit", params={"limit": 2}, headers=auth(key))
    page = first.json()
    assert len(page["entries"]) == 2 and page["next_before"] == page["entries"][-1]["id"]
    rest = await _entries(api, key, limit=500, before=page["next_before"])
    assert [e["id"] for e in page["entries"] + rest] == [e["id"] for e in everything]
    last = await api.get("/api/v1/audit", params={"limit": 500}, headers=auth(key))
    assert last.json()["next_before"] is None

    now = datetime.now(UTC)
    assert len(await _entries(api, key, since=(now - timedelta(minutes=5)).isoformat())) == 5
    assert await _entries(api, key, since=(now + timedelta(minutes=5)).isoformat()) == []
    assert await _entries(api, key, until=(now - timedelta(minutes=5)).isoformat()) == []
    assert len(await _entries(api, key, until="9999-12-31")) == 5


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "501"},
        {"limit": "9223372036854775808"},
        {"before": "-1"},
        {"before": "9223372036854775808"},
        {"since": "yesterday"},
        {"until": "99999-01-01"},
        {"since": "0001-01-01T00:00:00+01:00"},
        {"since": "2026-01-02", "until": "2026-01-01"},
        {"action": "x" * 101},
    ],
)
async def test_bad_parameters_are_a_422(
    api: httpx.AsyncClient, db: Database, params: dict[str, str]
) -> None:
    _, key = await make_tenant(db)
    response = await api.get("/api/v1/audit", params=params, headers=auth(key))
    assert response.status_code == 422, response.text
    assert set(response.json()) == {"error", "detail"}


async def test_an_entry_that_cannot_be_written_is_logged_not_lost_silently(
    api: httpx.AsyncClient,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, key = await make_tenant(db)
    calls = 0

    async def broken(*_: Any, **__: Any) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("database is gone")

    monkeypatch.setattr(audit, "record_many", broken)
    with caplog.at_level(logging.ERROR, logger=audit_middleware.__name__):
        created = await api.post("/api/v1/keys", json={"label": "kept"}, headers=auth(key))
    # the answer is not affected; the entry was tried three times, then logged in full
    assert created.status_code == 201
    assert calls == audit_middleware.WRITE_ATTEMPTS
    logged = [r for r in caplog.records if "audit entry not written" in r.getMessage()]
    assert len(logged) == 1
    message = logged[0].getMessage()
    assert '"action": "key.create"' in message and '"name": "kept"' not in message
    assert str(created.json()["key"]["id"]) in message and created.json()["secret"] not in message
    assert "RuntimeError: database is gone" in (logged[0].exc_text or "")


def test_the_action_of_a_route() -> None:
    """Action names are derived from the route template, unless the route declares one."""
    found = {
        (method, route.path_format): audit_middleware.action_of(route, method)
        for router in ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
        if method in audit_middleware.AUDITED_METHODS and route.path.startswith("/api/v1/")
    }
    expected = {
        ("POST", "/api/v1/keys"): "key.create",
        ("DELETE", "/api/v1/keys/{key_id}"): "key.revoke",
        ("POST", "/api/v1/keys/{key_id}/rotate"): "key.rotate",
        ("PATCH", "/api/v1/settings"): "settings.update",
        ("POST", "/api/v1/conversations/{conversation_id}/handoff"): "conversation.handoff",
        ("POST", "/api/v1/leads/{lead_id}/do-not-contact"): "lead.do_not_contact",
        ("POST", "/api/v1/jobs/{job_id}/pause"): "job.pause",
    }
    for route, action in expected.items():
        assert found.get(route) == action, (route, found.get(route))
    assert all(a.count(".") == 1 for a in found.values()), found


async def test_the_key_service_audits_the_cli_in_the_same_transaction(db: Database) -> None:
    tid, key = await make_tenant(db)
    async with db.session() as session:
        issued = await api_keys.create(
            session, tenant_id=tid, label="cli-made", audit_as=audit.cli_actor("bob")
        )
        rotated = await api_keys.rotate(
            session,
            tenant_id=tid,
            key_id=issued.info.id,
            grace=timedelta(hours=1),
            audit_as=audit.cli_actor("bob"),
        )
        await api_keys.revoke(
            session, tenant_id=tid, key_id=rotated.new.info.id, audit_as=audit.cli_actor(None)
        )
        rows = await audit.list_events(session, tenant_id=tid)
    assert [(r.action, r.resource_id, r.actor_kind) for r in rows] == [
        ("key.revoke", str(rotated.new.info.id), "cli"),
        ("key.rotate", str(issued.info.id), "cli"),
        ("key.create", str(issued.info.id), "cli"),
    ]
    assert rows[1].actor == "bob" and rows[0].actor  # the OS user without --by
    assert rows[1].detail == {
        "label": "cli-made",
        "new_key_id": rotated.new.info.id,
        "grace_seconds": 3600,
    }
    assert key not in json.dumps([r.detail for r in rows])
