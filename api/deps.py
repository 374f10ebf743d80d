"""Dependencies: the process's clients live on app.state (created in the lifespan) and reach
routes through these Annotated aliases."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client

from api.errors import ApiError
from api.inbox import InboxForwarder
from models import api_keys
from models.db import Database
from models.knowledge.service import KnowledgeService, build_index
from models.repo import tenants as tenant_repo
from models.settings import Settings
from models.tables import Tenant
from models.tenant import TenantSettings
from workers.client import TemporalUnavailable, connect

WEBHOOK_TENANT_TTL_SECONDS = 5.0


@dataclass
class AppState:
    settings: Settings
    db: Database
    temporal: Client | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    inbox: InboxForwarder = field(init=False)
    key_use: api_keys.UseTracker = field(default_factory=api_keys.UseTracker)

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


async def get_current_tenant(request: Request, session: Session, state: State) -> Tenant:
    """The tenant of the request's API key. Every request reads the key's row (no cache): a
    revoked key is refused at once, in every API process.

    Leaves on `request.state`, for what runs after the route (audit middleware, rate limits):
    `tenant_id`, `api_key_id` (int), `api_key` (`models.api_keys.KeyInfo`, no secret), and
    `api_key_used` when its `last_used_at` is due to be written after the response."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "missing API key", "send `Authorization: Bearer <tenant api key>`")
    found = await api_keys.authenticate(session, secret=token.strip())
    if found is None:
        raise ApiError(401, "invalid API key", None)
    request.state.tenant_id = found.tenant.id
    request.state.api_key_id = found.key.id
    request.state.api_key = found.key
    if state.key_use.due(found.key):
        request.state.api_key_used = True
    return found.tenant


CurrentTenant = Annotated[Tenant, Depends(get_current_tenant)]


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
