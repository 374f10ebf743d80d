"""The API's basic contract: health and readiness, API-key auth, tenant settings (secrets
write-only and encrypted at rest), the knowledge base and conversation control, with tenant
isolation throughout. The app runs with its real lifespan; conversation control runs against
the real worker and Temporal dev server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from api.app import create_app
from models.conversation import conversation_workflow_id
from models.db import Database
from models.repo import tenants as tenant_repo
from models.settings import Settings
from models.tenant import dump_settings
from tests.conftest import TEST_SECRET, make_tenant
from tests.stack import live_stack

pytestmark = pytest.mark.timeout(120)

WAHA_MESSAGE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "waha-message.json"
MASK = "**********"


@pytest.fixture
async def api(
    sqlite_db: Database,
    sqlite_url: str,
    settings_factory: Callable[..., Settings],
    temporal_address: str,
) -> AsyncIterator[httpx.AsyncClient]:
    """The app as `leadflow api` runs it: it connects to Temporal itself, on first use."""
    app = create_app(settings_factory(sqlite_url, temporal_address=temporal_address))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://leadflow.test") as http:
            yield http


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_health_and_ready(api: httpx.AsyncClient) -> None:
    health = await api.get("/health")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    ready = await api.get("/ready")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert (body["status"], body["database"], body["temporal"]) == ("ready", "ok", "ok")
    # The agent's chains are shown: the embedded default is the offline rules for every step.
    assert body["llm"]["steps"] == {
        "analysis": "offline:rules-v2",
        "reply": "offline:rules-v2",
        "email": "offline:rules-v2",
    }


async def test_ready_says_not_ready_for_a_provider_without_a_key(
    sqlite_url: str, settings_factory: Callable[..., Settings], temporal_address: str
) -> None:
    settings = settings_factory(
        sqlite_url, temporal_address=temporal_address, llm_provider="anthropic"
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://leadflow.test") as http:
            ready = await http.get("/ready")
    assert ready.status_code == 503
    problem = ready.json()["problems"]["llm"]
    assert "anthropic needs an API key (LEADFLOW_ANTHROPIC_API_KEY)" in problem
    assert ready.json()["llm"]["steps"]["reply"] == "anthropic:claude-sonnet-4-5"

    unknown = settings_factory(sqlite_url, temporal_address=temporal_address, llm_provider="gpt9")
    app = create_app(unknown)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://leadflow.test") as http:
            ready = await http.get("/ready")
    assert ready.status_code == 503
    assert "'gpt9' is not registered" in ready.json()["problems"]["llm"]


async def test_ready_names_an_unreachable_temporal(
    sqlite_db: Database, sqlite_url: str, settings_factory: Callable[..., Settings]
) -> None:
    app = create_app(settings_factory(sqlite_url, temporal_address="127.0.0.1:1"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://leadflow.test") as http:
            health = await http.get("/health")
            assert health.status_code == 200  # alive, just not ready
            ready = await http.get("/ready")
            assert ready.status_code == 503
            body = ready.json()
            assert body["status"] == "not ready"
            assert list(body["problems"]) == ["temporal"]
            assert "127.0.0.1:1" in body["problems"]["temporal"]

            # A call that needs Temporal says so instead of hanging or failing obscurely.
            _, key = await make_tenant(sqlite_db)
            started = await http.post(
                "/api/v1/conversations",
                headers=auth(key),
                json={"channel": "waha", "contact": "31612345678@c.us", "text": "Hallo!"},
            )
            assert started.status_code == 503
            assert started.json()["error"] == "Temporal is unavailable"


@pytest.mark.parametrize(
    "path",
    ["/api/v1/settings", "/api/v1/knowledge", "/api/v1/outbox", "/api/v1/conversations"],
)
async def test_api_needs_a_valid_key(
    api: httpx.AsyncClient, sqlite_db: Database, path: str
) -> None:
    _, key = await make_tenant(sqlite_db)
    for headers, error in [
        ({}, "missing API key"),
        ({"Authorization": f"Basic {key}"}, "missing API key"),
        ({"Authorization": "Bearer "}, "missing API key"),
        ({"Authorization": "Bearer lf_not-a-key"}, "invalid API key"),
        ({"Authorization": f"Bearer {key}x"}, "invalid API key"),
    ]:
        response = await api.get(path, headers=headers)
        assert response.status_code == 401, (headers, response.text)
        body = response.json()
        assert set(body) == {"error", "detail"}
        assert body["error"] == error
    assert (await api.get(path, headers=auth(key))).status_code == 200

    async with sqlite_db.session() as session:
        tenant = await tenant_repo.tenant_for_key(session, key=key)
        assert tenant is not None
        await tenant_repo.revoke_api_keys(session, tenant_id=tenant.id)
    revoked = await api.get(path, headers=auth(key))
    assert revoked.status_code == 401 and revoked.json()["error"] == "invalid API key"


async def _stored(db: Database, tenant_id: str) -> tuple[str, dict[str, Any]]:
    async with db.session() as session:
        tenant = await tenant_repo.get_tenant(session, tenant_id=tenant_id)
        assert tenant is not None
        await session.refresh(tenant)
        settings = tenant_repo.tenant_settings(tenant, secret_key=TEST_SECRET)
        return tenant.settings_encrypted, dump_settings(settings)


async def test_settings_secrets_are_write_only_and_encrypted(
    api: httpx.AsyncClient, sqlite_db: Database
) -> None:
    tid, key = await make_tenant(sqlite_db)
    initial = await api.get("/api/v1/settings", headers=auth(key))
    assert initial.status_code == 200
    # No playbook chosen: a neutral persona under the tenant's own name, not a demo business.
    assert "playbook" not in initial.json()

    patched = await api.patch(
        "/api/v1/settings",
        headers=auth(key),
        json={
            "waha": {
                "base_url": "http://waha:3000",
                "api_key": "waha-key-s3cret",
                "webhook_secret": "hmac-s3cret",
            },
            "specialists": [{"name": "Sanne", "role": "finance", "email": "sanne@example.nl"}],
        },
    )
    assert patched.status_code == 200, patched.text
    assert "s3cret" not in patched.text
    assert patched.json()["waha"] == {
        "base_url": "http://waha:3000",
        "api_key": MASK,
        "session": "default",
        "webhook_secret": MASK,
    }
    shown = await api.get("/api/v1/settings", headers=auth(key))
    assert "s3cret" not in shown.text and shown.json()["waha"]["api_key"] == MASK

    raw, stored = await _stored(sqlite_db, tid)
    assert "s3cret" not in raw and "waha" not in raw  # encrypted, not just hidden
    assert stored["waha"]["api_key"] == "waha-key-s3cret"
    assert stored["waha"]["webhook_secret"] == "hmac-s3cret"

    # PATCH merges top-level keys: setting the timezone keeps the WAHA credentials.
    tz = await api.patch(
        "/api/v1/settings", headers=auth(key), json={"timezone": "Europe/Amsterdam"}
    )
    assert tz.status_code == 200 and tz.json()["waha"]["api_key"] == MASK
    _, stored = await _stored(sqlite_db, tid)
    assert stored["timezone"] == "Europe/Amsterdam"
    assert stored["waha"]["api_key"] == "waha-key-s3cret"

    # What GET shows can be sent back: the masks keep the stored secrets.
    round_trip = await api.put("/api/v1/settings", headers=auth(key), json=shown.json())
    assert round_trip.status_code == 200, round_trip.text
    _, stored = await _stored(sqlite_db, tid)
    assert stored["waha"]["api_key"] == "waha-key-s3cret"
    assert stored["waha"]["webhook_secret"] == "hmac-s3cret"

    # PUT replaces everything.
    put = await api.put(
        "/api/v1/settings", headers=auth(key), json={"playbook": "b2b_outreach", "timezone": "UTC"}
    )
    assert put.status_code == 200, put.text
    assert "waha" not in put.json() and put.json()["specialists"] == []
    _, stored = await _stored(sqlite_db, tid)
    assert "waha" not in stored and stored["playbook"] == "b2b_outreach"

    # Another tenant's settings are its own.
    _, other_key = await make_tenant(sqlite_db)
    other = await api.get("/api/v1/settings", headers=auth(other_key))
    assert "playbook" not in other.json() and "waha" not in other.json()


@pytest.mark.parametrize(
    ("method", "body", "error", "loc"),
    [
        ("patch", {"wahaa": {"base_url": "http://waha"}}, "invalid settings", ["wahaa"]),
        ("patch", {"smtp": {"port": "lots"}}, "invalid settings", ["smtp", "port"]),
        ("patch", {"waha": "http://waha:3000"}, "invalid settings", ["waha"]),
        ("patch", {"specialists": [{"role": "finance"}]}, "invalid settings", None),
        ("put", {"timezone": "UTC", "colour": "red"}, "invalid settings", ["colour"]),
    ],
    ids=["unknown-key", "wrong-type", "not-an-object", "missing-field", "put-unknown-key"],
)
async def test_settings_refuse_bad_input(
    api: httpx.AsyncClient,
    sqlite_db: Database,
    method: str,
    body: dict[str, Any],
    error: str,
    loc: list[str] | None,
) -> None:
    tid, key = await make_tenant(sqlite_db)
    before = await _stored(sqlite_db, tid)
    response = await getattr(api, method)("/api/v1/settings", headers=auth(key), json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == error
    problems = response.json()["detail"]
    assert problems and all(p["msg"] for p in problems)
    if loc is not None:
        assert [p["loc"] for p in problems] == [loc]
    else:
        assert problems[0]["loc"] == ["specialists", 0, "name"]
    assert await _stored(sqlite_db, tid) == before


async def test_settings_refuse_an_unknown_playbook(
    api: httpx.AsyncClient, sqlite_db: Database
) -> None:
    tid, key = await make_tenant(sqlite_db)
    response = await api.patch("/api/v1/settings", headers=auth(key), json={"playbook": "boats"})
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid playbook"
    text = json.dumps(body["detail"])
    assert "boats" in text and "car_dealership" in text and "b2b_outreach" in text
    _, stored = await _stored(sqlite_db, tid)
    assert "playbook" not in stored

    bad_yaml = await api.patch(
        "/api/v1/settings", headers=auth(key), json={"playbook_yaml": "name: [unclosed"}
    )
    assert bad_yaml.status_code == 422 and bad_yaml.json()["error"] == "invalid playbook"


async def test_knowledge_is_per_tenant(api: httpx.AsyncClient, sqlite_db: Database) -> None:
    _, key = await make_tenant(sqlite_db)
    _, other_key = await make_tenant(sqlite_db)
    body = "The showroom is open Monday to Saturday from 9:00 to 18:00; test drives on request."
    created = await api.post(
        "/api/v1/knowledge", headers=auth(key), json={"title": "Opening hours", "body": body}
    )
    assert created.status_code == 201, created.text
    doc = created.json()
    assert doc["title"] == "Opening hours" and doc["chars"] == len(body) and doc["id"]

    listed = await api.get("/api/v1/knowledge", headers=auth(key))
    assert [d["id"] for d in listed.json()] == [doc["id"]]
    hits = (
        await api.get("/api/v1/knowledge/search", params={"q": "saturday"}, headers=auth(key))
    ).json()
    assert [h["document_id"] for h in hits] == [doc["id"]]
    assert hits[0]["title"] == "Opening hours" and "Saturday" in hits[0]["snippet"]
    none = await api.get("/api/v1/knowledge/search", params={"q": "financing"}, headers=auth(key))
    assert none.json() == []

    # The other tenant sees nothing of it and cannot delete it.
    assert (await api.get("/api/v1/knowledge", headers=auth(other_key))).json() == []
    other_hits = await api.get(
        "/api/v1/knowledge/search", params={"q": "saturday"}, headers=auth(other_key)
    )
    assert other_hits.json() == []
    stolen = await api.delete(f"/api/v1/knowledge/{doc['id']}", headers=auth(other_key))
    assert stolen.status_code == 404
    assert stolen.json() == {"error": "document not found", "detail": doc["id"]}
    assert len((await api.get("/api/v1/knowledge", headers=auth(key))).json()) == 1

    deleted = await api.delete(f"/api/v1/knowledge/{doc['id']}", headers=auth(key))
    assert deleted.status_code == 204
    assert (await api.get("/api/v1/knowledge", headers=auth(key))).json() == []
    again = await api.delete(f"/api/v1/knowledge/{doc['id']}", headers=auth(key))
    assert again.status_code == 404


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"title": "", "body": "text"}, ["body", "title"]),
        ({"title": "Hours", "body": ""}, ["body", "body"]),
        ({"body": "text"}, ["body", "title"]),
    ],
    ids=["empty-title", "empty-body", "no-title"],
)
async def test_knowledge_refuses_bad_documents(
    api: httpx.AsyncClient, sqlite_db: Database, body: dict[str, str], loc: list[str]
) -> None:
    _, key = await make_tenant(sqlite_db)
    response = await api.post("/api/v1/knowledge", headers=auth(key), json=body)
    assert response.status_code == 422
    assert response.json()["error"] == "invalid request"
    assert [p["loc"] for p in response.json()["detail"]] == [loc]
    assert (await api.get("/api/v1/knowledge", headers=auth(key))).json() == []


async def test_conversation_list_refuses_unknown_filters(
    api: httpx.AsyncClient, sqlite_db: Database
) -> None:
    _, key = await make_tenant(sqlite_db)
    for params, loc in [
        ({"stage": "bogus"}, ["query", "stage"]),
        ({"quality": "lukewarmish"}, ["query", "quality"]),
        ({"limit": "0"}, ["query", "limit"]),
    ]:
        response = await api.get("/api/v1/conversations", params=params, headers=auth(key))
        assert response.status_code == 422, params
        (problem,) = response.json()["detail"]
        assert problem["loc"] == loc
    stage = await api.get("/api/v1/conversations", params={"stage": "bogus"}, headers=auth(key))
    assert "qualifying" in stage.json()["detail"][0]["msg"]  # names what is allowed
    ok = await api.get("/api/v1/conversations", params={"stage": "qualifying"}, headers=auth(key))
    assert ok.json() == {"conversations": [], "total": 0}


async def test_conversation_control_is_per_tenant_and_needs_a_running_conversation(
    temporal_client: Client, settings_factory: Callable[..., Settings], sqlite_url: str
) -> None:
    async with live_stack(temporal_client, settings_factory(sqlite_url)) as stack:
        lead = "31612345678@c.us"
        conv_id = conversation_workflow_id(stack.tenant_id, "waha", lead)
        posted = await stack.http.post(
            f"/webhooks/waha/{stack.tenant_id}",
            content=WAHA_MESSAGE.read_bytes(),
            headers={"content-type": "application/json"},
        )
        assert posted.status_code in (200, 202), posted.text

        async def detail() -> dict[str, Any] | None:
            r = await stack.http.get(f"/api/v1/conversations/{conv_id}", headers=stack.auth)
            return r.json() if r.status_code == 200 and r.json()["turns"] >= 1 else None

        first = await stack.wait_for(detail, what="the first turn")
        assert [m["role"] for m in first["transcript"]] == ["lead", "ai"]

        _, other_key = await make_tenant(stack.db)
        other = auth(other_key)
        assert (
            await stack.http.get(f"/api/v1/conversations/{conv_id}", headers=other)
        ).status_code == 404
        for action, body in [
            ("handoff", {"reason": "mine now"}),
            ("release", None),
            ("messages", {"text": "Hello from someone else"}),
        ]:
            response = await stack.http.post(
                f"/api/v1/conversations/{conv_id}/{action}", headers=other, json=body
            )
            assert response.status_code == 404, (action, response.text)
            assert response.json()["error"] == "conversation not found"

            # The owner's own conversation id with nothing running behind it: 404, not 202.
            idle = conversation_workflow_id(stack.tenant_id, "waha", "31699999999@c.us")
            response = await stack.http.post(
                f"/api/v1/conversations/{idle}/{action}", headers=stack.auth, json=body
            )
            assert response.status_code == 404, (action, response.text)
            assert response.json()["error"] == "conversation is not running"

        # Nothing the other tenant tried reached the lead.
        outbox = (await stack.http.get("/api/v1/outbox", headers=stack.auth)).json()
        assert all("someone else" not in row["text"] for row in outbox)

        # The owner can hand over, talk as a human and release.
        handoff = await stack.http.post(
            f"/api/v1/conversations/{conv_id}/handoff",
            headers=stack.auth,
            json={"reason": "VIP customer"},
        )
        assert handoff.status_code == 200, handoff.text
        assert handoff.json()["stage"] == "human_handoff"

        async def stage_is(stage: str) -> bool:
            r = await stack.http.get(f"/api/v1/conversations/{conv_id}", headers=stack.auth)
            return bool(r.json()["stage"] == stage)

        await stack.wait_for(lambda: stage_is("human_handoff"), what="human_handoff")
        said = await stack.http.post(
            f"/api/v1/conversations/{conv_id}/messages",
            headers=stack.auth,
            json={"text": "Dag Jan, ik ben Sanne van de showroom."},
        )
        assert said.status_code == 200, said.text
        assert said.json()["sent"] is True

        async def operator_sent() -> bool:
            r = await stack.http.get(
                "/api/v1/outbox", params={"conversation_id": conv_id}, headers=stack.auth
            )
            return any("Sanne van de showroom" in row["text"] for row in r.json())

        await stack.wait_for(operator_sent, what="the operator message in the outbox")
        empty = await stack.http.post(
            f"/api/v1/conversations/{conv_id}/messages", headers=stack.auth, json={"text": ""}
        )
        assert empty.status_code == 422

        released = await stack.http.post(
            f"/api/v1/conversations/{conv_id}/release", headers=stack.auth
        )
        assert released.status_code == 200, released.text
        assert released.json()["stage"] != "human_handoff"
        again = await stack.http.post(
            f"/api/v1/conversations/{conv_id}/release", headers=stack.auth
        )
        assert again.status_code == 409, again.text
        await stack.wait_for(lambda: stage_is_not(stack, conv_id, "human_handoff"), what="release")


async def stage_is_not(stack: Any, conv_id: str, stage: str) -> bool:
    r = await stack.http.get(f"/api/v1/conversations/{conv_id}", headers=stack.auth)
    return bool(r.json()["stage"] != stage)


async def test_settings_take_a_tenants_models_and_refuse_ones_no_worker_can_run(
    api: httpx.AsyncClient, sqlite_db: Database
) -> None:
    tid, key = await make_tenant(sqlite_db)
    good = await api.patch(
        "/api/v1/settings",
        headers=auth(key),
        json={
            "llm": {
                "analysis": "anthropic:claude-haiku-4-5,offline",
                "anthropic_api_key": "sk-ant-tenant",
                "daily_budget_usd": 2.5,
            }
        },
    )
    assert good.status_code == 200, good.text
    assert good.json()["llm"]["anthropic_api_key"] == "**********"  # write-only
    assert good.json()["llm"]["daily_budget_usd"] == 2.5

    for llm, expected in [
        ({"provider": "gpt9"}, "'gpt9' is not registered"),
        ({"provider": "openai"}, "openai needs an API key"),
        ({"reply": "openai_compatible:llama3"}, "openai_compatible needs a base URL"),
        ({"analysis": " , "}, "names no provider"),
    ]:
        bad = await api.patch("/api/v1/settings", headers=auth(key), json={"llm": llm})
        assert bad.status_code == 422, (llm, bad.text)
        assert bad.json()["error"] == "invalid llm settings"
        assert expected in json.dumps(bad.json()["detail"]), (llm, bad.json())
    negative = await api.patch(
        "/api/v1/settings", headers=auth(key), json={"llm": {"daily_budget_usd": -1}}
    )
    assert negative.status_code == 422
    # Nothing bad was stored: the good settings are still there.
    _, stored = await _stored(sqlite_db, tid)
    assert stored["llm"]["analysis"] == "anthropic:claude-haiku-4-5,offline"
