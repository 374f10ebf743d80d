"""The audit log: who did what to which of a tenant's resources, when, from which key, and how
it ended. One service writes and reads it.

Two paths lead here, and an action takes exactly one of them:
- API requests: `api/audit_middleware.py` records every authenticated mutating request under
  /api/v1/ (the action from the matched route, the resource id from the path), batched off the
  request path; the actor is the request's API key or its signed-in person (`user_actor`).
  Routes do not call `record` themselves; they may add to what the middleware writes with
  `request.state.audit_resource_id` / `request.state.audit_detail` (and name the actor with
  `request.state.audit_actor` where nobody is signed in yet: a failed sign-in).
- Everything else (the CLI, maintenance commands): `record(...)`, best in the same session and
  transaction as the change it describes, with `cli_actor(by)` as the actor.

An entry holds names, ids and status codes. Never secrets, message bodies or contact data: the
`detail` mapping is for small facts (a label, a grace period, the names of changed settings) and
its values are cut short; keys that name secrets are masked anyway."""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.audit_tables import AuditEvent
from models.repo.sql import table_of
from models.tables import utcnow

ActorKind = Literal["api_key", "cli", "user"]
Outcome = Literal["ok", "refused", "error"]
DetailValue = str | int | float | bool | None

MAX_PAGE = 500
MAX_EVENT_ID = 2**31 - 1  # the id column is a 32-bit integer on PostgreSQL
DEFAULT_PAGE = 100
MAX_DETAIL_ITEMS = 20
MAX_DETAIL_TEXT = 200
_SECRET_NAME = re.compile(r"secret|token|password|passwd|api_key$|^key$|credential", re.I)


@dataclass(frozen=True)
class Actor:
    """Who acted: an API key (its id and label), a person at the command line, or a person
    signed in to the console."""

    kind: ActorKind
    name: str
    api_key_id: int | None = None


def cli_actor(by: str | None = None) -> Actor:
    """The operator at the command line: `--by` when given, else the OS user."""
    name = (by or "").strip()
    if not name:
        try:
            name = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry (containers running under a bare uid)
            name = f"uid:{os.getuid()}"
    return Actor(kind="cli", name=name[:200])


def key_actor(*, key_id: int, label: str, prefix: str) -> Actor:
    """An API key as an actor: named by its label, or by its prefix when it has none."""
    return Actor(kind="api_key", name=(label or prefix)[:200], api_key_id=key_id)


def user_actor(*, name: str, email: str) -> Actor:
    """A person signed in to the console (`models.users`): `Name <email>`, so the entry still
    says who it was after the person is deleted or renamed."""
    return Actor(kind="user", name=f"{name} <{email}>"[:200])


def outcome_of(status: int) -> Outcome:
    if status < 400:
        return "ok"
    return "refused" if status < 500 else "error"


def clean_detail(detail: Mapping[str, Any] | None) -> dict[str, DetailValue]:
    """At most MAX_DETAIL_ITEMS scalar facts, texts cut to MAX_DETAIL_TEXT characters, values
    under secret-looking names masked: a caller's slip does not put a secret in the log."""
    out: dict[str, DetailValue] = {}
    for name, value in list((detail or {}).items())[:MAX_DETAIL_ITEMS]:
        name = str(name)[:64]
        if _SECRET_NAME.search(name):
            out[name] = "***"
        elif value is None or isinstance(value, bool | int | float):
            out[name] = value
        elif isinstance(value, list | tuple | set | frozenset):
            out[name] = ", ".join(sorted(str(v) for v in value))[:MAX_DETAIL_TEXT]
        else:
            out[name] = str(value)[:MAX_DETAIL_TEXT]
    return out


@dataclass(frozen=True)
class AuditRecord:
    """One entry before it is written (the middleware queues these and writes them in batches)."""

    tenant_id: str
    actor: Actor
    action: str
    resource_id: str | None = None
    outcome: Outcome = "ok"
    status: int | None = None
    request_id: str | None = None
    method: str | None = None
    route: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    at: datetime = field(default_factory=utcnow)

    def row(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "at": self.at,
            "actor_kind": self.actor.kind,
            "actor": self.actor.name[:200],
            "api_key_id": self.actor.api_key_id,
            "action": self.action[:100],
            "resource_id": None if self.resource_id is None else self.resource_id[:400],
            "outcome": self.outcome,
            "status": self.status,
            "request_id": None if self.request_id is None else self.request_id[:64],
            "method": self.method,
            "route": None if self.route is None else self.route[:200],
            "detail": clean_detail(self.detail),
        }


async def record(
    session: AsyncSession,
    *,
    tenant_id: str,
    actor: Actor,
    action: str,
    resource_id: str | None = None,
    outcome: Outcome = "ok",
    status: int | None = None,
    request_id: str | None = None,
    detail: Mapping[str, Any] | None = None,
    commit: bool = True,
) -> None:
    """Record one action that did not come through the API (the API's are recorded by its
    middleware). With `commit=False` the entry joins the caller's transaction, to be committed
    with the change it describes."""
    entry = AuditRecord(
        tenant_id=tenant_id,
        actor=actor,
        action=action,
        resource_id=resource_id,
        outcome=outcome,
        status=status,
        request_id=request_id,
        detail=detail or {},
    )
    session.add(AuditEvent(**entry.row()))
    if commit:
        await session.commit()


async def record_many(session: AsyncSession, *, records: Sequence[AuditRecord]) -> None:
    """Several entries in one statement and one commit."""
    if not records:
        return
    await session.execute(insert(table_of(AuditEvent)), [r.row() for r in records])
    await session.commit()


def _aware(at: datetime) -> datetime:
    return at if at.utcoffset() is not None else at.replace(tzinfo=UTC)


async def list_events(
    session: AsyncSession,
    *,
    tenant_id: str,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before: int | None = None,
    limit: int = DEFAULT_PAGE,
) -> list[AuditEvent]:
    """A tenant's entries, newest first. `action` matches exactly, or as a prefix when it ends
    in `*` (`key.*`); `since` is inclusive, `until` exclusive (naive times are UTC); `before`
    pages on: the entries with smaller ids."""
    statement = select(AuditEvent).where(AuditEvent.tenant_id == tenant_id)
    if action:
        if action.endswith("*"):
            prefix = action[:-1].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            statement = statement.where(col(AuditEvent.action).like(prefix + "%", escape="\\"))
        else:
            statement = statement.where(AuditEvent.action == action)
    if since is not None:
        statement = statement.where(col(AuditEvent.at) >= _aware(since))
    if until is not None:
        statement = statement.where(col(AuditEvent.at) < _aware(until))
    if before is not None:
        statement = statement.where(col(AuditEvent.id) < before)
    statement = statement.order_by(col(AuditEvent.id).desc()).limit(max(1, min(limit, MAX_PAGE)))
    return list((await session.exec(statement)).all())
