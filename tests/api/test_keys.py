"""API keys through the API: issue with a label, use, list (never a secret), revoke (refused at
once), rotate (old refused, new works; with a grace period both work until it ends), the key of
the request protected from itself, and another tenant's keys out of reach (404, like a key that
does not exist). On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from api.app import create_app
from models import api_keys
from models.db import Database
from models.settings import Settings
from models.tables import ApiKey
from tests.conftest import make_tenant

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def api(
    db: Database, database_url: str, settings_factory: Callable[..., Settings]
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its real lifespan and middleware on the parametrised database (these
    routes need no Temporal)."""
    app = create_app(settings_factory(database_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://leadflow.test") as http:
            yield http


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _key_id(db: Database, secret: str) -> int:
    async with db.session() as session:
        found = await api_keys.authenticate(session, secret=secret)
    assert found is not None
    return found.key.id


async def _status(api: httpx.AsyncClient, key: str) -> int:
    return (await api.get("/api/v1/keys", headers=auth(key))).status_code


async def test_create_use_list_revoke_is_refused_at_once(
    api: httpx.AsyncClient, db: Database
) -> None:
    _, first = await make_tenant(db)
    created = await api.post("/api/v1/keys", json={"label": "ci"}, headers=auth(first))
    assert created.status_code == 201, created.text
    body = created.json()
    secret = body["secret"]
    assert secret.startswith("lf_") and body["key"]["label"] == "ci"
    assert body["key"]["prefix"] == secret[:10] and body["key"]["active"] is True
    assert body["key"]["current"] is False  # issued with the first key

    listed = await api.get("/api/v1/keys", headers=auth(secret))
    assert listed.status_code == 200
    keys = {k["id"]: k for k in listed.json()["keys"]}
    assert len(keys) == 2
    new_id = body["key"]["id"]
    assert keys[new_id]["current"] is True and keys[new_id]["label"] == "ci"
    # no secret and no hash in the list, of either key
    for text in (secret, first, api_keys.hash_secret(secret), api_keys.hash_secret(first)):
        assert text not in listed.text
    assert set(keys[new_id]) == {
        "id",
        "label",
        "prefix",
        "created_at",
        "last_used_at",
        "revoked_at",
        "active",
        "current",
    }

    revoked = await api.delete(f"/api/v1/keys/{new_id}", headers=auth(first))
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["active"] is False and revoked.json()["revoked_at"] is not None
    refused = await api.get("/api/v1/keys", headers=auth(secret))
    assert refused.status_code == 401 and refused.json()["error"] == "invalid API key"
    # revoking again changes nothing
    again = await api.delete(f"/api/v1/keys/{new_id}", headers=auth(first))
    assert again.status_code == 200 and again.json()["revoked_at"] == revoked.json()["revoked_at"]
    # the other key is untouched; the revoked one is listed as such, and left out on request
    assert await _status(api, first) == 200
    active = await api.get("/api/v1/keys?include_revoked=false", headers=auth(first))
    assert [k["id"] for k in active.json()["keys"]] == [await _key_id(db, first)]


async def test_a_request_cannot_revoke_its_own_key(api: httpx.AsyncClient, db: Database) -> None:
    _, key = await make_tenant(db)
    own = await _key_id(db, key)
    refused = await api.delete(f"/api/v1/keys/{own}", headers=auth(key))
    assert refused.status_code == 409
    assert refused.json()["error"] == "refused" and "rotate it" in refused.json()["detail"]
    assert await _status(api, key) == 200


async def test_rotate_refuses_the_old_key_and_the_new_one_works(
    api: httpx.AsyncClient, db: Database
) -> None:
    _, key = await make_tenant(db)
    labelled = (await api.post("/api/v1/keys", json={"label": "zapier"}, headers=auth(key))).json()
    old_secret, old_id = labelled["secret"], labelled["key"]["id"]
    # a key may rotate itself
    rotated = await api.post(f"/api/v1/keys/{old_id}/rotate", headers=auth(old_secret))
    assert rotated.status_code == 201, rotated.text
    body = rotated.json()
    assert body["key"]["label"] == "zapier" and body["key"]["id"] != old_id
    assert body["replaced"]["id"] == old_id and body["replaced"]["active"] is False
    assert await _status(api, old_secret) == 401
    assert await _status(api, body["secret"]) == 200
    # a revoked key cannot be rotated
    again = await api.post(f"/api/v1/keys/{old_id}/rotate", headers=auth(key))
    assert again.status_code == 409 and "is revoked" in again.json()["detail"]


async def test_rotate_with_a_grace_period_keeps_the_old_key_until_it_ends(
    api: httpx.AsyncClient, db: Database
) -> None:
    _, key = await make_tenant(db)
    old_id = await _key_id(db, key)
    before = datetime.now().astimezone()
    rotated = await api.post(
        f"/api/v1/keys/{old_id}/rotate", json={"grace_seconds": 3600}, headers=auth(key)
    )
    assert rotated.status_code == 201, rotated.text
    new_secret = rotated.json()["secret"]
    replaced = rotated.json()["replaced"]
    ends = datetime.fromisoformat(replaced["revoked_at"])
    assert before + timedelta(seconds=3590) < ends < before + timedelta(seconds=3610)
    assert replaced["active"] is True
    # both work during the grace period
    assert await _status(api, key) == 200
    assert await _status(api, new_secret) == 200
    # it cannot be rotated twice
    twice = await api.post(f"/api/v1/keys/{old_id}/rotate", headers=auth(new_secret))
    assert twice.status_code == 409 and "rotated already" in twice.json()["detail"]
    # the grace ends: from its revoked_at on the old key is refused (moved into the past here,
    # as the clock would)
    async with db.session() as session:
        row = await session.get(ApiKey, old_id)
        assert row is not None
        row.revoked_at = datetime.now().astimezone() - timedelta(seconds=1)
        session.add(row)
        await session.commit()
    assert await _status(api, key) == 401
    assert await _status(api, new_secret) == 200


async def test_revoking_a_key_in_its_grace_period_ends_the_grace_now(
    api: httpx.AsyncClient, db: Database
) -> None:
    _, key = await make_tenant(db)
    old_id = await _key_id(db, key)
    rotated = await api.post(
        f"/api/v1/keys/{old_id}/rotate", json={"grace_seconds": 600}, headers=auth(key)
    )
    new_secret = rotated.json()["secret"]
    assert await _status(api, key) == 200
    revoked = await api.delete(f"/api/v1/keys/{old_id}", headers=auth(new_secret))
    assert revoked.status_code == 200 and revoked.json()["active"] is False
    assert await _status(api, key) == 401


async def test_another_tenants_keys_are_not_found(api: httpx.AsyncClient, db: Database) -> None:
    _, key_a = await make_tenant(db)
    _, key_b = await make_tenant(db)
    id_a = await _key_id(db, key_a)
    listed = await api.get("/api/v1/keys", headers=auth(key_b))
    assert [k["id"] for k in listed.json()["keys"]] == [await _key_id(db, key_b)]
    missing = await api.delete("/api/v1/keys/2000000000", headers=auth(key_b))
    assert missing.status_code == 404
    for method, path in (
        ("DELETE", f"/api/v1/keys/{id_a}"),
        ("POST", f"/api/v1/keys/{id_a}/rotate"),
    ):
        response = await api.request(method, path, headers=auth(key_b))
        assert response.status_code == 404, (method, path, response.text)
        # the same answer as for a key that does not exist, but for the id it echoes
        assert response.json() == {
            "error": "no such key",
            "detail": f"no key {id_a} in this tenant",
        }
    assert await _status(api, key_a) == 200
    # A's key is neither revoked nor rotated
    async with db.session() as session:
        keys_a = await api_keys.list_keys(session, tenant_id=(await _tenant(db, key_a)))
    assert [(k.id, k.revoked_at) for k in keys_a] == [(id_a, None)]


async def _tenant(db: Database, secret: str) -> str:
    async with db.session() as session:
        found = await api_keys.authenticate(session, secret=secret)
    assert found is not None
    return found.tenant.id


async def test_last_used_at_is_written_after_use_at_most_once_a_minute(
    api: httpx.AsyncClient, db: Database
) -> None:
    _, key = await make_tenant(db)
    key_id = await _key_id(db, key)

    async def last_used() -> Any:
        async with db.session() as session:
            row = await session.get(ApiKey, key_id)
            assert row is not None
            await session.refresh(row)
            return row.last_used_at

    assert await last_used() is None
    first = await api.get("/api/v1/keys", headers=auth(key))
    # written after that response: the answer still shows the value it read
    assert first.json()["keys"][0]["last_used_at"] is None
    used = await last_used()
    assert used is not None
    for _ in range(3):
        assert await _status(api, key) == 200
    assert await last_used() == used  # within the minute: not written again


BAD_BODIES: list[tuple[str, dict[str, Any]]] = [
    ("no label", {}),
    ("empty label", {"label": ""}),
    ("blank label", {"label": "   "}),
    ("label too long", {"label": "x" * 101}),
    ("control characters", {"label": "ci\nadmin"}),
    ("label not a string", {"label": 5}),
    ("unknown field", {"label": "ci", "secret": "lf_mine"}),
]


@pytest.mark.parametrize(("name", "body"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
async def test_a_bad_label_is_a_422_and_issues_nothing(
    api: httpx.AsyncClient, db: Database, name: str, body: dict[str, Any]
) -> None:
    _, key = await make_tenant(db)
    response = await api.post("/api/v1/keys", json=body, headers=auth(key))
    assert response.status_code == 422, (name, response.text)
    assert set(response.json()) == {"error", "detail"}
    listed = await api.get("/api/v1/keys", headers=auth(key))
    assert len(listed.json()["keys"]) == 1


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/keys/x", None),
        ("/api/v1/keys/0", None),
        ("/api/v1/keys/2147483648", None),
        ("/api/v1/keys/9223372036854775808", None),
        ("/api/v1/keys/1/rotate", {"grace_seconds": -1}),
        ("/api/v1/keys/1/rotate", {"grace_seconds": 7 * 86400 + 1}),
        ("/api/v1/keys/1/rotate", {"grace_seconds": "1h"}),
        ("/api/v1/keys/1/rotate", {"grace": 60}),
    ],
)
async def test_bad_ids_and_grace_periods_are_a_422(
    api: httpx.AsyncClient, db: Database, path: str, body: dict[str, Any] | None
) -> None:
    _, key = await make_tenant(db)
    method = "POST" if path.endswith("/rotate") else "DELETE"
    response = await api.request(method, path, json=body, headers=auth(key))
    assert response.status_code == 422, response.text
    assert set(response.json()) == {"error", "detail"}
    assert await _status(api, key) == 200


async def test_a_revocation_holds_at_once_in_another_api_process(
    api: httpx.AsyncClient,
    db: Database,
    database_url: str,
    settings_factory: Callable[..., Settings],
) -> None:
    """A second app on the same database (another replica) refuses a key revoked through the
    first on its very next request: there is no key cache to wait out."""
    _, key = await make_tenant(db)
    other_id, other_secret = await _issue(api, key, "replica-test")
    second = create_app(settings_factory(database_url))
    async with second.router.lifespan_context(second):
        transport = httpx.ASGITransport(app=second)
        async with httpx.AsyncClient(transport=transport, base_url="http://b.test") as replica:
            assert await _status(replica, other_secret) == 200
            revoked = await api.delete(f"/api/v1/keys/{other_id}", headers=auth(key))
            assert revoked.status_code == 200
            assert await _status(replica, other_secret) == 401
            assert await _status(replica, key) == 200


async def _issue(api: httpx.AsyncClient, key: str, label: str) -> tuple[int, str]:
    created = await api.post("/api/v1/keys", json={"label": label}, headers=auth(key))
    assert created.status_code == 201, created.text
    return created.json()["key"]["id"], created.json()["secret"]
