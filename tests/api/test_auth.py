"""Signing in to the console through the API, on SQLite and PostgreSQL, with the real app
(lifespan, middleware): the session and CSRF cookies and their flags, one 401 for every failed
sign-in, the CSRF token required for writes, what each role may do (enforced for every route in
`api.deps`), keys still acting as admin, sign-out ending the session, the per-account throttle,
the people admin routes with the last-admin rule, the audit log naming the person, and bad
bodies answered 4xx, never 500."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import limits.storage.memory
import limits.strategies
import pytest
from fastapi import FastAPI
from starlette.requests import Request

from api import rate_limits
from api.app import create_app
from api.deps import ADMIN_AREAS, SESSION_COOKIE, current_user, role_refusal
from models import users
from models.db import Database
from models.settings import Settings
from tests.api.test_rate_limits import START, FakeClock, assert_throttled, clients
from tests.conftest import make_tenant

pytestmark = pytest.mark.timeout(180)

PASSWORD = "correct horse battery"
BASE = "http://leadflow.test"


@dataclass
class Api:
    app: FastAPI
    db: Database
    tenant_id: str
    key: str
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    def client(self, base_url: str = BASE) -> httpx.AsyncClient:
        """A client with a cookie jar of its own (a browser), closed with the fixture."""
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=base_url)
        self.clients.append(http)
        return http

    async def close(self) -> None:
        for http in self.clients:
            await http.aclose()

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    async def person(self, email: str, role: str, name: str = "Anna Berg") -> users.UserInfo:
        async with self.db.session() as session:
            return await users.create_user(
                session,
                tenant_id=self.tenant_id,
                email=email,
                name=name,
                role=role,
                password=PASSWORD,
            )

    async def signed_in(self, email: str, role: str) -> tuple[httpx.AsyncClient, str]:
        """A client holding a session of a new person with `role`, and its CSRF token."""
        await self.person(email, role)
        http = self.client()
        answer = await http.post(
            "/api/v1/auth/login",
            json={"tenant": self.tenant_id, "email": email, "password": PASSWORD},
        )
        assert answer.status_code == 200, answer.text
        return http, answer.json()["csrf_token"]


def _make_api(
    db: Database, database_url: str, settings_factory: Callable[..., Settings], **overrides: Any
) -> FastAPI:
    return create_app(settings_factory(database_url, **overrides))


@pytest.fixture
async def api(
    db: Database, database_url: str, settings_factory: Callable[..., Settings]
) -> AsyncIterator[Api]:
    app = _make_api(db, database_url, settings_factory)
    async with app.router.lifespan_context(app):
        tid, key = await make_tenant(db)
        api = Api(app=app, db=db, tenant_id=tid, key=key)
        try:
            yield api
        finally:
            await api.close()


def _cookies(response: httpx.Response) -> dict[str, str]:
    """Set-Cookie headers by cookie name, lower-cased."""
    out: dict[str, str] = {}
    for header in response.headers.get_list("set-cookie"):
        out[header.partition("=")[0]] = header.lower()
    return out


async def test_sign_in_sets_both_cookies_and_me_answers(api: Api) -> None:
    await api.person("Anna@Example.com", "operator")
    async with api.client() as http:
        signed = await http.post(
            "/api/v1/auth/login",
            json={"tenant": api.tenant_id, "email": " ANNA@example.com", "password": PASSWORD},
        )
        assert signed.status_code == 200, signed.text
        body = signed.json()
        assert body["user"]["email"] == "anna@example.com"
        assert body["user"]["role"] == "operator" and body["user"]["tenant_id"] == api.tenant_id
        assert set(body["user"]) == {"id", "email", "name", "role", "tenant_id"}
        cookies = _cookies(signed)
        session, csrf = cookies["leadflow_session"], cookies["leadflow_csrf"]
        assert "httponly" in session and "samesite=strict" in session and "path=/" in session
        assert "httponly" not in csrf and "samesite=strict" in csrf and "path=/" in csrf
        assert "secure" not in session  # plain http here; https below
        assert http.cookies["leadflow_csrf"] == body["csrf_token"]
        assert PASSWORD not in signed.text

        me = await http.get("/api/v1/auth/me")
        assert me.status_code == 200, me.text
        assert me.json() == body
        # the session reads the tenant's resources like a key does
        leads = await http.get("/api/v1/leads")
        assert leads.status_code == 200, leads.text

    async with api.client("https://leadflow.test") as https:
        signed = await https.post(
            "/api/v1/auth/login",
            json={"tenant": api.tenant_id, "email": "anna@example.com", "password": PASSWORD},
        )
        assert signed.status_code == 200, signed.text
        assert all("; secure" in c for c in _cookies(signed).values())

    async with api.client() as anonymous:
        me = await anonymous.get("/api/v1/auth/me")
        assert me.status_code == 401 and me.json()["error"] == "not signed in"
        # a key is not a person
        assert (await anonymous.get("/api/v1/auth/me", headers=api.auth)).status_code == 401


async def test_every_failed_sign_in_is_the_same_401(api: Api) -> None:
    person = await api.person("anna@example.com", "admin")
    await api.person("off@example.com", "operator")
    async with api.db.session() as session:
        await users.update_user(
            session, tenant_id=api.tenant_id, user_id=person.id + 1, disabled=True
        )
    attempts = [
        {"tenant": api.tenant_id, "email": "anna@example.com", "password": PASSWORD + "!"},
        {"tenant": api.tenant_id, "email": "nobody@example.com", "password": PASSWORD},
        {"tenant": "no-such-tenant", "email": "anna@example.com", "password": PASSWORD},
        {"tenant": api.tenant_id, "email": "off@example.com", "password": PASSWORD},
        {"tenant": api.tenant_id, "email": "not an address", "password": PASSWORD},
    ]
    answers = []
    async with api.client() as http:
        for attempt in attempts:
            answer = await http.post("/api/v1/auth/login", json=attempt)
            assert answer.status_code == 401, (attempt, answer.text)
            assert "leadflow_session" not in _cookies(answer)
            answers.append(answer.json())
        assert all(a == answers[0] for a in answers), answers
        assert answers[0]["error"] == "sign-in failed"


async def test_writes_with_the_cookie_need_the_csrf_token(api: Api) -> None:
    http, csrf = await api.signed_in("admin@example.com", "admin")
    for headers in ({}, {"X-CSRF-Token": "wrong"}, {"X-CSRF-Token": ""}):
        refused = await http.post("/api/v1/keys", json={"label": "ci"}, headers=headers)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"] == "missing or wrong CSRF token"
    made = await http.post("/api/v1/keys", json={"label": "ci"}, headers={"X-CSRF-Token": csrf})
    assert made.status_code == 201, made.text
    # another session's token is not this one's
    _, other_csrf = await api.signed_in("second@example.com", "admin")
    refused = await http.post(
        "/api/v1/keys", json={"label": "x"}, headers={"X-CSRF-Token": other_csrf}
    )
    assert refused.status_code == 403
    # reads need no token
    assert (await http.get("/api/v1/keys")).status_code == 200


async def test_a_viewer_reads_but_changes_nothing(api: Api) -> None:
    http, csrf = await api.signed_in("viewer@example.com", "viewer")
    token = {"X-CSRF-Token": csrf}
    assert (await http.get("/api/v1/leads")).status_code == 200
    assert (await http.get("/api/v1/settings")).status_code == 200
    refused = await http.post(
        "/api/v1/leads/some-lead/do-not-contact",
        json={"do_not_contact": True, "reason": "asked"},
        headers=token,
    )
    assert refused.status_code == 403, refused.text
    assert refused.json()["detail"] == "your role (viewer) cannot change anything"
    for path in ("/api/v1/keys", "/api/v1/users"):
        listed = await http.get(path)
        assert listed.status_code == 403, (path, listed.text)
    # their own session is theirs: sign out works for any role
    assert (await http.post("/api/v1/auth/logout", headers=token)).status_code == 204


async def test_an_operator_works_conversations_but_not_the_admin_areas(
    db: Database,
    database_url: str,
    settings_factory: Callable[..., Settings],
    temporal_address: str,
) -> None:
    app = _make_api(db, database_url, settings_factory, temporal_address=temporal_address)
    async with app.router.lifespan_context(app):
        tid, key = await make_tenant(db)
        api = Api(app=app, db=db, tenant_id=tid, key=key)
        http, csrf = await api.signed_in("op@example.com", "operator")
        try:
            token = {"X-CSRF-Token": csrf}
            refused = await http.patch(
                "/api/v1/settings", json={"timezone": "Europe/Berlin"}, headers=token
            )
            assert refused.status_code == 403, refused.text
            assert (
                refused.json()["detail"] == "your role (operator) cannot do this: it is for admins"
            )
            assert (await http.get("/api/v1/settings")).status_code == 200
            for path in ("/api/v1/keys", "/api/v1/users"):
                assert (await http.get(path)).status_code == 403
            refused = await http.post("/api/v1/keys", json={"label": "x"}, headers=token)
            assert refused.status_code == 403
            # a conversation command goes through to Temporal: the role let it pass (no
            # workflow runs under this id, so the answer is the command route's own 404)
            handoff = await http.post(
                f"/api/v1/conversations/conv:{tid}:waha:1@c.us/handoff", json={}, headers=token
            )
            assert handoff.status_code == 404, handoff.text
            assert handoff.json()["error"] == "conversation is not running"
        finally:
            await api.close()


def test_the_role_rules() -> None:
    """The one rule, over every admin area and method (routes of later helpers included)."""
    for area in ADMIN_AREAS:
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            assert role_refusal("admin", method, area + "/{id}") is None
            assert role_refusal("operator", method, area) is not None
            assert role_refusal("viewer", method, area) is not None
    assert role_refusal("operator", "GET", "/api/v1/settings") is None
    assert role_refusal("operator", "GET", "/api/v1/keys") is not None
    assert role_refusal("operator", "GET", "/api/v1/users/{user_id}") is not None
    assert role_refusal("operator", "POST", "/api/v1/conversations/{id}/handoff") is None
    assert role_refusal("operator", "POST", "/api/v1/settingsx") is None  # whole segments only
    assert role_refusal("viewer", "GET", "/api/v1/conversations") is None
    assert role_refusal("viewer", "HEAD", "/api/v1/leads") is None
    assert role_refusal("viewer", "POST", "/api/v1/conversations/{id}/handoff") is not None


async def test_a_key_still_acts_as_admin(api: Api) -> None:
    async with api.client() as http:
        made = await http.post(
            "/api/v1/users",
            json={
                "email": "new@example.com",
                "name": "New",
                "role": "viewer",
                "password": PASSWORD,
            },
            headers=api.auth,
        )
        assert made.status_code == 201, made.text
        listed = await http.get("/api/v1/users", headers=api.auth)
        assert listed.status_code == 200
        assert [u["email"] for u in listed.json()["users"]] == ["new@example.com"]
        assert (await http.patch("/api/v1/settings", json={}, headers=api.auth)).status_code == 200
        # a wrong key is refused, not taken for a session
        bad = await http.get("/api/v1/users", headers={"Authorization": "Bearer lf_wrong"})
        assert bad.status_code == 401 and bad.json()["error"] == "invalid API key"


async def test_sign_out_ends_the_session(api: Api) -> None:
    http, csrf = await api.signed_in("anna@example.com", "admin")
    stolen = http.cookies["leadflow_session"]
    refused = await http.post("/api/v1/auth/logout")  # without the token: refused
    assert refused.status_code == 403
    out = await http.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})
    assert out.status_code == 204
    cleared = _cookies(out)
    assert {"leadflow_session", "leadflow_csrf"} <= set(cleared)
    assert all("max-age=0" in c for c in cleared.values())
    assert (await http.get("/api/v1/auth/me")).status_code == 401
    assert (await http.post("/api/v1/auth/logout")).status_code == 204  # nothing to end
    # the old cookie, replayed, opens nothing
    async with api.client() as replay:
        replay.cookies.set("leadflow_session", stolen, domain="leadflow.test")
        for path in ("/api/v1/auth/me", "/api/v1/leads"):
            answer = await replay.get(path)
            assert answer.status_code == 401, answer.text
        assert answer.json()["error"] == "not signed in"


async def test_a_disabled_persons_live_session_is_refused_at_once(api: Api) -> None:
    await api.person("boss@example.com", "admin", name="Boss")
    http, _ = await api.signed_in("op@example.com", "operator")
    assert (await http.get("/api/v1/leads")).status_code == 200
    op = next(
        u
        for u in (await http.get("/api/v1/users", headers=api.auth)).json()["users"]
        if u["email"] == "op@example.com"
    )
    changed = await http.patch(
        f"/api/v1/users/{op['id']}", json={"disabled": True}, headers=api.auth
    )
    assert changed.status_code == 200 and changed.json()["disabled"] is True
    assert (await http.get("/api/v1/leads")).status_code == 401


async def test_failed_sign_ins_are_throttled_per_account(api: Api) -> None:
    await api.person("anna@example.com", "admin")
    wrong = {"tenant": api.tenant_id, "email": "anna@example.com", "password": "wrong password"}
    async with api.client() as http:
        for _ in range(5):
            assert (await http.post("/api/v1/auth/login", json=wrong)).status_code == 401
        # over the limit: refused even with the right password, without checking it
        right = {**wrong, "email": "ANNA@example.com", "password": PASSWORD}
        refused = await http.post("/api/v1/auth/login", json=right)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"] == "too many failed sign-ins"
        assert int(refused.headers["retry-after"]) >= 1
        # another account is not held up by it
        await api.person("bob@example.com", "operator")
        bob = {**right, "email": "bob@example.com"}
        assert (await http.post("/api/v1/auth/login", json=bob)).status_code == 200


async def test_people_admin_routes_and_the_last_admin(api: Api) -> None:
    http, csrf = await api.signed_in("admin@example.com", "admin")
    token = {"X-CSRF-Token": csrf}
    me = (await http.get("/api/v1/auth/me")).json()["user"]
    made = await http.post(
        "/api/v1/users",
        json={"email": "Op@Example.com", "name": "Op", "role": "operator", "password": PASSWORD},
        headers=token,
    )
    assert made.status_code == 201, made.text
    op = made.json()
    assert op["email"] == "op@example.com" and op["disabled"] is False
    assert "password" not in made.text and "hash" not in made.text
    again = await http.post(
        "/api/v1/users",
        json={"email": "op@example.com", "name": "Op", "password": PASSWORD},
        headers=token,
    )
    assert again.status_code == 409 and "already" in again.json()["detail"]

    # the last admin cannot demote, disable or delete themselves
    for change in ({"role": "operator"}, {"disabled": True}):
        refused = await http.patch(f"/api/v1/users/{me['id']}", json=change, headers=token)
        assert refused.status_code == 409 and "last admin" in refused.json()["detail"]
    refused = await http.delete(f"/api/v1/users/{me['id']}", headers=token)
    assert refused.status_code == 409

    promoted = await http.patch(
        f"/api/v1/users/{op['id']}", json={"role": "admin", "name": "Op Two"}, headers=token
    )
    assert promoted.status_code == 200 and promoted.json()["role"] == "admin"
    assert promoted.json()["name"] == "Op Two"
    gone = await http.delete(f"/api/v1/users/{op['id']}", headers=token)
    assert gone.status_code == 204
    missing = await http.delete(f"/api/v1/users/{op['id']}", headers=token)
    assert missing.status_code == 404 and missing.json()["error"] == "no such person"

    # another tenant's person is out of reach, like one that does not exist
    other, _ = await make_tenant(api.db)
    async with api.db.session() as session:
        theirs = await users.create_user(
            session,
            tenant_id=other,
            email="x@example.com",
            name="X",
            role="admin",
            password=PASSWORD,
        )
    for method, body in (("PATCH", {"name": "Mine"}), ("DELETE", None)):
        answer = await http.request(method, f"/api/v1/users/{theirs.id}", json=body, headers=token)
        assert answer.status_code == 404, answer.text

    # an admin's new password for themselves keeps their session
    changed = await http.patch(
        f"/api/v1/users/{me['id']}", json={"password": "a brand new one"}, headers=token
    )
    assert changed.status_code == 200
    assert (await http.get("/api/v1/auth/me")).status_code == 200


async def test_changing_ones_own_password(api: Api) -> None:
    http, csrf = await api.signed_in("viewer@example.com", "viewer")
    token = {"X-CSRF-Token": csrf}
    wrong = await http.post(
        "/api/v1/auth/password",
        json={"current_password": "not it at all", "new_password": "a brand new one"},
        headers=token,
    )
    assert wrong.status_code == 422 and "current password" in wrong.json()["detail"]
    done = await http.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "a brand new one"},
        headers=token,
    )
    assert done.status_code == 204, done.text
    assert (await http.get("/api/v1/auth/me")).status_code == 200
    async with api.client() as http:
        login = {"tenant": api.tenant_id, "email": "viewer@example.com"}
        old = await http.post("/api/v1/auth/login", json={**login, "password": PASSWORD})
        assert old.status_code == 401
        new = await http.post("/api/v1/auth/login", json={**login, "password": "a brand new one"})
        assert new.status_code == 200


async def test_the_audit_log_names_the_person(api: Api) -> None:
    http, csrf = await api.signed_in("anna@example.com", "admin")
    made = await http.post("/api/v1/keys", json={"label": "ci"}, headers={"X-CSRF-Token": csrf})
    assert made.status_code == 201
    await http.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})
    failed = await http.post(
        "/api/v1/auth/login",
        json={"tenant": api.tenant_id, "email": "anna@example.com", "password": "nope nope!"},
    )
    assert failed.status_code == 401
    async with api.client() as reader:
        listed = await reader.get("/api/v1/audit", headers=api.auth)
    assert listed.status_code == 200, listed.text
    entries = [
        (e["action"], e["actor_kind"], e["actor"], e["outcome"])
        for e in reversed(listed.json()["entries"])
    ]
    person = "Anna Berg <anna@example.com>"
    assert entries == [
        ("auth.login", "user", person, "ok"),
        ("key.create", "user", person, "ok"),
        ("auth.logout", "user", person, "ok"),
        ("auth.login", "user", "anna@example.com", "refused"),
    ]
    assert "nope nope!" not in listed.text and PASSWORD not in listed.text


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/auth/login", {}),
        ("POST", "/api/v1/auth/login", {"tenant": "t", "email": "a@example.com"}),
        ("POST", "/api/v1/auth/login", {"tenant": 1, "email": [], "password": None}),
        ("POST", "/api/v1/auth/login", {"tenant": "t", "email": "a@b.c", "password": "x" * 2000}),
        ("POST", "/api/v1/auth/login", {"tenant": "", "email": "a@b.c", "password": "p"}),
        ("POST", "/api/v1/auth/login", {"tenant": "a\x00b", "email": "a@b.c", "password": "p"}),
        ("POST", "/api/v1/auth/login", {"tenant": "t", "email": "a@b.c", "password": "p", "x": 1}),
        ("POST", "/api/v1/auth/login", [1, 2]),
        ("POST", "/api/v1/users", {"email": "nope", "name": "N", "password": PASSWORD}),
        ("POST", "/api/v1/users", {"email": "a@example.com", "name": "N", "password": "short"}),
        (
            "POST",
            "/api/v1/users",
            {"email": "a@example.com", "name": "N", "role": "owner", "password": PASSWORD},
        ),
        ("POST", "/api/v1/users", {"email": "a@example.com", "name": " \t", "password": PASSWORD}),
        ("PATCH", "/api/v1/users/1", {"role": "root"}),
        ("PATCH", "/api/v1/users/1", {"disabled": "maybe"}),
        ("PATCH", "/api/v1/users/1", {"disabled": 0}),
        ("PATCH", "/api/v1/users/0", {"name": "x"}),
        ("PATCH", "/api/v1/users/99999999999", {"name": "x"}),
        ("DELETE", "/api/v1/users/abc", None),
    ],
)
async def test_bad_bodies_are_422(api: Api, method: str, path: str, body: Any) -> None:
    async with api.client() as http:
        answer = await http.request(method, path, json=body, headers=api.auth)
        assert answer.status_code == 422, answer.text
        assert set(answer.json()) == {"error", "detail"}


async def test_a_login_body_that_is_not_json_is_4xx(api: Api) -> None:
    async with api.client() as http:
        for content, kind in (
            (b"{", "application/json"),
            (b"\xff\xfe", "application/json"),
            (b"tenant=demo", "application/x-www-form-urlencoded"),
        ):
            answer = await http.post(
                "/api/v1/auth/login", content=content, headers={"content-type": kind}
            )
            assert answer.status_code in (415, 422), answer.text


def test_current_user_names_the_person_or_none_for_a_key() -> None:
    person = users.UserInfo(
        id=1,
        tenant_id="t",
        email="a@example.com",
        name="A",
        role="operator",
        disabled=False,
        created_at=datetime.now(UTC),
        last_login_at=None,
    )
    signed = Request({"type": "http", "state": {"user": person, "tenant_id": "t"}})
    keyed = Request({"type": "http", "state": {"user": None, "tenant_id": "t"}})
    assert current_user(signed) == person and current_user(keyed) is None


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The rate limiter's clock, moved by the test (as in tests/api/test_rate_limits.py)."""
    fake = FakeClock(START)
    for module in (limits.storage.memory, limits.strategies, rate_limits):
        monkeypatch.setattr(module, "time", fake)
    return fake


async def test_a_signed_in_person_has_a_request_budget_of_their_own(
    sqlite_db: Database,
    sqlite_url: str,
    settings_factory: Callable[..., Settings],
    clock: FakeClock,
) -> None:
    """The rate limiter counts a session's requests against its person (like a key's), and a
    session seen working is not held up by its address's failed authentications."""
    assert rate_limits.SESSION_COOKIE == SESSION_COOKIE
    app = create_app(
        settings_factory(
            sqlite_url,
            temporal_address="127.0.0.1:1",
            rate_limit_api="3/minute",
            rate_limit_auth_failures="2/minute",
        )
    )
    tid, key = await make_tenant(sqlite_db)
    async with clients(app, "203.0.113.9") as (http,):
        api_ = Api(app=app, db=sqlite_db, tenant_id=tid, key=key)
        await api_.person("anna@example.com", "operator")
        login = {"tenant": tid, "email": "anna@example.com", "password": PASSWORD}
        assert (await http.post("/api/v1/auth/login", json=login)).status_code == 200
        for remaining in ("1", "0"):  # the sign-in itself was the first of 3
            ok = await http.get("/api/v1/outbox")
            assert ok.status_code == 200, ok.text
            assert ok.headers["RateLimit-Remaining"] == remaining
        throttled = await http.get("/api/v1/outbox")
        assert_throttled(throttled, "rate limit exceeded")
        assert "by this signed-in person" in throttled.json()["detail"]
        # the key of the same tenant has a budget of its own
        keyed = await http.get("/api/v1/outbox", headers={"Authorization": f"Bearer {key}"})
        assert keyed.status_code == 200

        clock.advance(60)
        # failed authentications from this address (a wrong key) ...
        for _ in range(2):
            wrong = await http.get("/api/v1/outbox", headers={"Authorization": "Bearer lf_x"})
            assert wrong.status_code == 401
        guess = await http.get("/api/v1/outbox", headers={"Authorization": "Bearer lf_y"})
        assert_throttled(guess, "too many failed authentications")  # the address is over
        # ... do not hold up the session this process has seen working
        assert (await http.get("/api/v1/outbox")).status_code == 200
