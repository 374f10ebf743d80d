"""Dependencies: the process's clients live on app.state (created in the lifespan) and reach
routes through these Annotated aliases."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client

from api.errors import ApiError
from api.inbox import InboxForwarder
from api.rate_limits import RateLimits
from models import api_keys, users
from models.db import Database
from models.knowledge.service import KnowledgeService, build_index
from models.repo import tenants as tenant_repo
from models.settings import Settings
from models.tables import Tenant
from models.tenant import TenantSettings
from workers.client import TemporalUnavailable, connect

WEBHOOK_TENANT_TTL_SECONDS = 5.0
LOGIN_FAILURES_PER_ACCOUNT = "5/minute;30/hour"
"""Failed sign-ins per tenant and e-mail address before that account's sign-in answers 429 (the
rate limiter's per-address limit on failed authentications applies too)."""


def _login_limits() -> RateLimits:
    return RateLimits(api="", webhooks="", auth_failures=LOGIN_FAILURES_PER_ACCOUNT, exact=True)


@dataclass
class AppState:
    settings: Settings
    db: Database
    temporal: Client | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    inbox: InboxForwarder = field(init=False)
    key_use: api_keys.UseTracker = field(default_factory=api_keys.UseTracker)
    # Failed sign-ins per account, counted in this process (api/routes/auth.py).
    logins: RateLimits = field(default_factory=_login_limits)

    _tenants: dict[str, tuple[float, Tenant, TenantSettings]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.inbox = InboxForwarder(self.settings, self.db, self.temporal_client)

    async def webhook_tenant(self, tenant_id: str) -> tuple[Tenant, TenantSettings]:
        """The tenant a webhook names and its decrypted settings, cached for a few seconds:
        reading and decrypting them was a third of an acknowledgement. A changed secret or
        a deleted tenant applies within WEBHOOK_TENANT_TTL_SECONDS."""
        now = time.monotonic()
        cached = self._tenants.get(tenant_id)
        if cached is not None and now - cached[0] < WEBHOOK_TENANT_TTL_SECONDS:
            return cached[1], cached[2]
        async with self.db.session() as session:
            tenant = await load_tenant(session, tenant_id)
        settings = settings_of(self, tenant)
        if len(self._tenants) > 10_000:
            self._tenants.clear()
        self._tenants[tenant_id] = (now, tenant, settings)
        return tenant, settings

    _knowledge: KnowledgeService | None = None

    @property
    def knowledge(self) -> KnowledgeService:
        """The process's knowledge service, built on first use (a Weaviate deployment's client
        connects when first asked, so the API starts and /ready explains while it is down)."""
        if self._knowledge is None:
            self._knowledge = KnowledgeService(self.db, build_index(self.settings, self.db))
        return self._knowledge

    async def temporal_client(self) -> Client:
        """Connect on first use: the API starts (and /ready explains) while Temporal is down."""
        if self.temporal is not None:
            return self.temporal
        async with self._lock:
            if self.temporal is None:
                self.temporal = await connect(self.settings, role="api")
            return self.temporal


async def get_state(request: Request) -> AppState:
    # async: FastAPI runs a plain `def` dependency in its thread pool, a thread hop per request.
    state: AppState = request.app.state.leadflow
    return state


State = Annotated[AppState, Depends(get_state)]


async def get_session(state: State) -> AsyncIterator[AsyncSession]:
    async with state.db.session() as session:
        yield session


Session = Annotated[AsyncSession, Depends(get_session)]


async def get_temporal(state: State) -> Client:
    try:
        return await state.temporal_client()
    except TemporalUnavailable as exc:
        raise ApiError(503, "Temporal is unavailable", str(exc)) from exc


Temporal = Annotated[Client, Depends(get_temporal)]


SESSION_COOKIE = "leadflow_session"
"""The console's session cookie (HttpOnly): a random token, stored only as its SHA-256."""
CSRF_COOKIE = "leadflow_csrf"
"""The session's CSRF token, readable by the console's script (not HttpOnly)."""
CSRF_HEADER = "X-CSRF-Token"
"""Where a signed-in request that changes something repeats the CSRF token."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ADMIN_AREAS = (
    "/api/v1/settings",
    "/api/v1/integrations",
    "/api/v1/keys",
    "/api/v1/users",
    "/api/v1/knowledge",
    "/api/v1/inventory",
)
"""Where only admins change anything."""
ADMIN_READ_AREAS = ("/api/v1/keys", "/api/v1/users")
"""Where only admins even look."""

CSRF_REFUSED = "missing or wrong CSRF token"


def _in(path: str, areas: tuple[str, ...]) -> bool:
    return any(path == area or path.startswith(area + "/") for area in areas)


def role_refusal(role: users.Role, method: str, path: str) -> str | None:
    """Why a person with `role` may not send `method` to `path` (a route template or a path
    under /api/v1/); None when they may. The one place the roles are decided: admin does
    everything; operator everything but the admin areas (writes there, reads of keys and
    people); viewer reads what an operator reads and changes nothing."""
    if role == "admin":
        return None
    writes = method.upper() not in SAFE_METHODS
    if role == "viewer" and writes:
        return "your role (viewer) cannot change anything"
    if _in(path, ADMIN_READ_AREAS) or (writes and _in(path, ADMIN_AREAS)):
        return f"your role ({role}) cannot do this: it is for admins"
    return None


def route_path(request: Request) -> str:
    """The matched route's template (what `role_refusal` compares), else the path."""
    route = request.scope.get("route")
    template = getattr(route, "path_format", None)
    return template if isinstance(template, str) else request.url.path


def check_csrf(request: Request, current: users.CurrentSession) -> None:
    """A signed-in request that changes something repeats the session's CSRF token in
    `X-CSRF-Token` (a page on another site can make the browser send the cookie, but cannot
    read the token). 403 otherwise."""
    if request.method.upper() in SAFE_METHODS:
        return
    given = request.headers.get(CSRF_HEADER, "")
    if not given or not secrets.compare_digest(given.encode(), current.csrf_token.encode()):
        raise ApiError(
            403,
            CSRF_REFUSED,
            f"send the {CSRF_COOKIE} cookie's value (also in the sign-in answer) in the "
            f"{CSRF_HEADER} header",
        )


async def signed_in_session(request: Request, session: AsyncSession) -> users.CurrentSession | None:
    """The live session of the request's cookie, or None (no cookie, or the session ended)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    return await users.session_of(session, token=token)


def _remember_person(request: Request, current: users.CurrentSession) -> None:
    request.state.tenant_id = current.tenant.id
    request.state.user = current.user
    request.state.user_session = current
    request.state.role = current.user.role


async def get_signed_in(request: Request, session: Session) -> users.CurrentSession:
    """The signed-in person (cookie only, no API key), with CSRF checked for writes: for what
    only a person does (`/api/v1/auth/...`). Any role; 401 without a live session."""
    current = await signed_in_session(request, session)
    if current is None:
        raise ApiError(401, "not signed in", "sign in first: POST /api/v1/auth/login")
    check_csrf(request, current)
    _remember_person(request, current)
    return current


SignedIn = Annotated[users.CurrentSession, Depends(get_signed_in)]


async def get_current_tenant(request: Request, session: Session, state: State) -> Tenant:
    """The tenant of the request's caller: an API key (`Authorization: Bearer`, for machines;
    it acts as an admin) or a signed-in person (the `leadflow_session` cookie; writes need the
    CSRF token; what their role allows, `role_refusal`, else 403). A key wins when both come.
    Every request reads the key's or the session's row (no cache): a revoked key, a signed-out
    session or a disabled person is refused at once, in every API process.

    Leaves on `request.state`, for what runs after the route (audit middleware, rate limits):
    `tenant_id`, `role`; with a key `api_key_id` (int), `api_key` (`models.api_keys.KeyInfo`, no
    secret), and `api_key_used` when its `last_used_at` is due to be written after the
    response; with a session `user` (`models.users.UserInfo`) and `user_session`
    (`models.users.CurrentSession`). `user` is None for a key."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        found = await api_keys.authenticate(session, secret=token.strip())
        if found is None:
            raise ApiError(401, "invalid API key", None)
        request.state.tenant_id = found.tenant.id
        request.state.api_key_id = found.key.id
        request.state.api_key = found.key
        request.state.user = None
        request.state.role = "admin"
        if state.key_use.due(found.key):
            request.state.api_key_used = True
        return found.tenant
    if SESSION_COOKIE not in request.cookies:
        raise ApiError(
            401,
            "missing API key",
            "send `Authorization: Bearer <tenant api key>`, or sign in (POST /api/v1/auth/login)",
        )
    current = await signed_in_session(request, session)
    if current is None:
        raise ApiError(
            401,
            "not signed in",
            "the session has ended (signed out, idle or too old, or the account was disabled): "
            "sign in again",
        )
    check_csrf(request, current)
    _remember_person(request, current)
    refusal = role_refusal(current.user.role, request.method, route_path(request))
    if refusal is not None:
        raise ApiError(403, "forbidden", refusal)
    return current.tenant


CurrentTenant = Annotated[Tenant, Depends(get_current_tenant)]


def current_user(request: Request) -> users.UserInfo | None:
    """The signed-in person behind a request `get_current_tenant` accepted; None for an API key
    (routes that record who did something: `user.name`, `user.email`)."""
    user = getattr(request.state, "user", None)
    return user if isinstance(user, users.UserInfo) else None


async def load_tenant(session: AsyncSession, tenant_id: str) -> Tenant:
    """Tenant named in a webhook path: 404 when it does not exist."""
    tenant = await tenant_repo.get_tenant(session, tenant_id=tenant_id)
    if tenant is None:
        raise ApiError(404, "unknown tenant", tenant_id)
    return tenant


def settings_of(state: AppState, tenant: Tenant) -> TenantSettings:
    return tenant_repo.tenant_settings(
        tenant, secret_key=state.settings.secret_key.get_secret_value()
    )


# An idempotency key names a command (conversation commands, job controls): a retry with the same
# key acts once and answers the same. Visible ASCII (spaces inside allowed), at most 128
# characters; anything else (control characters, a 10 KB header) is a 422 and starts nothing.
IDEMPOTENCY_KEY_MAX = 128
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e][\x20-\x7e]*$"
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=IDEMPOTENCY_KEY_MAX,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="Names the command: a retry with the same key acts once and answers the "
        "same. Without one every call is a new command.",
    ),
]


async def get_knowledge(state: State) -> KnowledgeService:
    return state.knowledge


Knowledge = Annotated[KnowledgeService, Depends(get_knowledge)]
