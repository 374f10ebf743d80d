"""The one place that records API actions in the audit log (`models.audit`), and writes a key's
`last_used_at` when it is due.

Every authenticated POST/PUT/PATCH/DELETE under /api/v1/ becomes one entry: the actor is the
request's key (id and label) or its signed-in person (`Name <email>`, actor kind `user`), the
action comes from the matched route (`x-audit-action` in its `openapi_extra`, else derived
from the template: `POST /api/v1/conversations/{id}/handoff` is
`conversation.handoff`, `PATCH /api/v1/settings` is `settings.update`), the resource id is the
route's last path parameter (a route that creates something names it with
`request.state.audit_resource_id`), the outcome is the response's status, with the request id.
Webhooks are not operator actions and are not recorded; requests refused before a key or a
session was accepted (401, a malformed body) have no tenant to record them under, except a
failed sign-in into a tenant that exists: the route names the tenant and the address tried
(`request.state.audit_actor`).

When: after the response has been sent, in the request's own task. The client does not wait
for it, and nothing sits in an in-memory queue that a crash would lose: the entry is written
before the server counts the request as finished (a graceful shutdown waits for it). A failed
write is retried, and an entry that still cannot be written is logged in full at ERROR level
(it holds no secret), never dropped silently."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models import api_keys, audit, users
from models.db import Database
from models.tables import utcnow

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1/"
AUDITED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
REQUEST_ID_HEADER = b"x-request-id"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_METHOD_VERBS = {"POST": "create", "PUT": "update", "PATCH": "update", "DELETE": "delete"}
_UNCOUNTABLE = {"settings", "knowledge", "outbox", "usage", "audit"}
WRITE_ATTEMPTS = 3


def _singular(word: str) -> str:
    if word in _UNCOUNTABLE or not word.endswith("s"):
        return word
    return word[:-1]


def action_of(route: APIRoute, method: str) -> str:
    """The action name of a request to `route`: `resource.verb`."""
    declared = (route.openapi_extra or {}).get("x-audit-action")
    if isinstance(declared, str) and declared:
        return declared
    template = route.path_format
    parts = [p for p in template.removeprefix(API_PREFIX).split("/") if p]
    if not parts:
        return f"{template}.{_METHOD_VERBS.get(method, method.lower())}"
    resource = _singular(parts[0])
    last = parts[-1]
    verb = (
        last if len(parts) > 1 and not last.startswith("{") else _METHOD_VERBS.get(method, "call")
    )
    return f"{resource}.{verb}".replace("-", "_")


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER:
            given = bytes(value).decode("latin-1")
            if _REQUEST_ID.match(given):
                return given
    return uuid.uuid4().hex


def _actor(state: Mapping[str, Any]) -> audit.Actor | None:
    """Who the request acted as: its signed-in person, its key, or whom a route names (a failed
    sign-in); None when nobody was accepted."""
    user = state.get("user")
    if isinstance(user, users.UserInfo):
        return audit.user_actor(name=user.name, email=user.email)
    key = state.get("api_key")
    if isinstance(key, api_keys.KeyInfo):
        return audit.key_actor(key_id=key.id, label=key.label, prefix=key.prefix)
    named = state.get("audit_actor")
    return named if isinstance(named, audit.Actor) else None


def _entry(
    scope: Scope, state: Mapping[str, Any], actor: audit.Actor, status: int
) -> audit.AuditRecord | None:
    method = scope["method"]
    route = scope.get("route")
    if (
        method not in AUDITED_METHODS
        or not scope["path"].startswith(API_PREFIX)
        or not isinstance(route, APIRoute)
    ):
        return None
    resource = state.get("audit_resource_id")
    if resource is None:
        params = scope.get("path_params") or {}
        resource = str(list(params.values())[-1]) if params else None
    detail = state.get("audit_detail")
    return audit.AuditRecord(
        tenant_id=state["tenant_id"],
        actor=actor,
        action=action_of(route, method),
        resource_id=resource,
        outcome=audit.outcome_of(status),
        status=status,
        request_id=state.get("request_id"),
        method=method,
        route=route.path_format,
        detail=detail if isinstance(detail, Mapping) else {},
    )


async def _write(
    db: Database, entry: audit.AuditRecord | None, used: api_keys.KeyInfo | None
) -> None:
    for attempt in range(WRITE_ATTEMPTS):
        try:
            async with db.session() as session:
                if entry is not None:
                    await audit.record_many(session, records=[entry])
                if used is not None:
                    await api_keys.mark_used(session, key_id=used.id, at=utcnow())
            return
        except Exception:
            if attempt + 1 == WRITE_ATTEMPTS:
                if entry is not None:
                    record = {**asdict(entry), "at": entry.at.isoformat()}
                    log.exception("audit entry not written: %s", json.dumps(record, default=str))
                else:
                    log.exception("last_used_at of key %s not written", used and used.id)
                return
            await asyncio.sleep(0.05 * 2**attempt)


class AuditMiddleware:
    """Gives every /api/ request a request id (the client's `X-Request-ID` when it is a sane
    one, else a new one; echoed in the response) and records what the request did once it
    has been answered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        # Request.state is this dict: what the route and its dependencies leave there is read below.
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != REQUEST_ID_HEADER
                ]
                message = {
                    **message,
                    "headers": [*headers, (REQUEST_ID_HEADER, request_id.encode())],
                }
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            # Only requests with an accepted key or session (api.deps leaves them), or a
            # route-named actor: they have a tenant.
            actor = _actor(state)
            if actor is not None and "tenant_id" in state:
                entry = _entry(scope, state, actor, status)
                key = state.get("api_key")
                used = (
                    key if isinstance(key, api_keys.KeyInfo) and state.get("api_key_used") else None
                )
                if entry is not None or used is not None:
                    await _write(scope["app"].state.leadflow.db, entry, used)
