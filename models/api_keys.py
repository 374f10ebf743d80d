"""A tenant's API keys: issue one with a label, list them, revoke one, rotate one, and find the
key (and tenant) a request presents. One service for the API (`api/routes/keys.py`, `api/deps.py`)
and the CLI (`workers/cli_keys.py`).

Rules, all here:
- A secret is shown once, when it is issued; only its SHA-256 and its first characters (the
  prefix, to recognise it in a list) are stored.
- A key is refused from its `revoked_at` on. Revoking sets it to now; rotating with a grace
  period sets the old key's `revoked_at` in the future, so both keys work until then. Every
  request reads the key's row (no cache), so a revocation holds at once in every API process.
- `last_used_at` is written at most once a minute per key and API process, after the response
  (`UseTracker` decides, the API's audit middleware writes): never a write per request.
- The API refuses to revoke the key the request itself uses (409: rotate it, or revoke it with
  another key or the CLI): an operator cannot lock their tenant out by a slip. The CLI may revoke
  any key, the last one included (the operator on the server can always issue a new one).
- An action is audited when the caller passes `audit=` (the CLI); the API's actions are recorded
  by its middleware instead.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import audit
from models.repo.sql import table_of
from models.tables import ApiKey, Tenant, utcnow

KEY_PREFIX = "lf_"
PREFIX_LENGTH = 10  # "lf_" and 7 characters of the secret: enough to tell keys apart in a list
LABEL_MAX = 100
MAX_ACTIVE_KEYS = 100
MAX_GRACE = timedelta(days=7)
LAST_USED_EVERY = timedelta(minutes=1)
MAX_KEY_ID = 2**31 - 1  # the id column is a 32-bit integer on PostgreSQL


class KeyNotFound(LookupError):
    """No such key in this tenant (another tenant's key is not found either)."""


class KeyRefused(ValueError):
    """The change is not allowed (the message says why)."""


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_label(label: str) -> str:
    """A label is a short, printable, one-line name ("ci", "zapier", "Anna's laptop")."""
    label = label.strip()
    if not label:
        raise KeyRefused("the label is empty")
    if len(label) > LABEL_MAX:
        raise KeyRefused(f"the label is longer than {LABEL_MAX} characters")
    if not label.isprintable():
        raise KeyRefused("the label has control characters")
    return label


def check_grace(grace: timedelta) -> timedelta:
    if grace < timedelta(0) or grace > MAX_GRACE:
        raise KeyRefused(f"the grace period must be between 0 and {MAX_GRACE.days} days")
    return grace


@dataclass(frozen=True)
class KeyInfo:
    """What may be shown about a key: never its secret or hash."""

    id: int
    label: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, row: ApiKey) -> KeyInfo:
        assert row.id is not None
        return cls(
            id=row.id,
            label=row.label,
            prefix=row.prefix,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            revoked_at=row.revoked_at,
        )

    def active(self, now: datetime | None = None) -> bool:
        return self.revoked_at is None or self.revoked_at > (now or utcnow())

    @property
    def name(self) -> str:
        return self.label or self.prefix


@dataclass(frozen=True)
class IssuedKey:
    info: KeyInfo
    secret: str  # shown once


@dataclass(frozen=True)
class Rotated:
    new: IssuedKey
    old: KeyInfo


@dataclass(frozen=True)
class Authenticated:
    """The tenant and the key a request presented."""

    tenant: Tenant
    key: KeyInfo


def _active(now: datetime) -> ColumnElement[bool]:
    return or_(col(ApiKey.revoked_at).is_(None), col(ApiKey.revoked_at) > now)


async def _row(session: AsyncSession, *, tenant_id: str, key_id: int) -> ApiKey:
    if not 1 <= key_id <= MAX_KEY_ID:
        raise KeyNotFound(f"no key {key_id}")
    row = await session.get(ApiKey, key_id)
    if row is None or row.tenant_id != tenant_id:
        raise KeyNotFound(f"no key {key_id}")
    return row


async def _new_row(session: AsyncSession, *, tenant_id: str, label: str) -> tuple[ApiKey, str]:
    active = (
        await session.exec(
            select(func.count())
            .select_from(ApiKey)
            .where(ApiKey.tenant_id == tenant_id, _active(utcnow()))
        )
    ).one()
    if active >= MAX_ACTIVE_KEYS:
        raise KeyRefused(f"the tenant has {active} active keys, the most allowed: revoke some")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        tenant_id=tenant_id,
        label=label,
        prefix=secret[:PREFIX_LENGTH],
        key_hash=hash_secret(secret),
    )
    session.add(row)
    await session.flush()  # its id, for the answer and the audit entry
    return row, secret


async def create(
    session: AsyncSession, *, tenant_id: str, label: str, audit_as: audit.Actor | None = None
) -> IssuedKey:
    """Issue a key; its secret is in the answer and nowhere else."""
    label = check_label(label)
    if await session.get(Tenant, tenant_id) is None:
        raise KeyNotFound(f"no tenant {tenant_id!r}")
    row, secret = await _new_row(session, tenant_id=tenant_id, label=label)
    info = KeyInfo.of(row)
    if audit_as is not None:
        await audit.record(
            session,
            tenant_id=tenant_id,
            actor=audit_as,
            action="key.create",
            resource_id=str(info.id),
            detail={"label": label},
            commit=False,
        )
    await session.commit()
    return IssuedKey(info=info, secret=secret)


async def list_keys(
    session: AsyncSession, *, tenant_id: str, include_revoked: bool = True, limit: int = 500
) -> list[KeyInfo]:
    """Newest first."""
    statement = select(ApiKey).where(ApiKey.tenant_id == tenant_id)
    if not include_revoked:
        statement = statement.where(_active(utcnow()))
    statement = statement.order_by(col(ApiKey.id).desc()).limit(limit)
    return [KeyInfo.of(row) for row in (await session.exec(statement)).all()]


async def get(session: AsyncSession, *, tenant_id: str, key_id: int) -> KeyInfo:
    return KeyInfo.of(await _row(session, tenant_id=tenant_id, key_id=key_id))


async def revoke(
    session: AsyncSession,
    *,
    tenant_id: str,
    key_id: int,
    current_key_id: int | None = None,
    audit_as: audit.Actor | None = None,
) -> KeyInfo:
    """Refuse the key from now on. Revoking a revoked key changes nothing; revoking a key in a
    rotation's grace period ends the grace now. `current_key_id`: the key the caller is using,
    which it may not revoke (the API passes it)."""
    row = await _row(session, tenant_id=tenant_id, key_id=key_id)
    if current_key_id is not None and key_id == current_key_id:
        raise KeyRefused(
            "this request is authenticated with that key: rotate it, or revoke it with "
            "another key or `leadflow key revoke`"
        )
    now = utcnow()
    changed = row.revoked_at is None or row.revoked_at > now
    if changed:
        row.revoked_at = now
        session.add(row)
    if audit_as is not None:
        await audit.record(
            session,
            tenant_id=tenant_id,
            actor=audit_as,
            action="key.revoke",
            resource_id=str(key_id),
            detail={"label": row.label, "already_revoked": not changed},
            commit=False,
        )
    await session.commit()
    return KeyInfo.of(row)


async def rotate(
    session: AsyncSession,
    *,
    tenant_id: str,
    key_id: int,
    grace: timedelta = timedelta(0),
    audit_as: audit.Actor | None = None,
) -> Rotated:
    """Issue a key with the same label and revoke the old one, now or after `grace` (both work
    until then). A revoked key, or one already rotated, cannot be rotated (409)."""
    grace = check_grace(grace)
    row = await _row(session, tenant_id=tenant_id, key_id=key_id)
    now = utcnow()
    if row.revoked_at is not None:
        when = (
            "is revoked" if row.revoked_at <= now else "was rotated already (in its grace period)"
        )
        raise KeyRefused(f"key {key_id} {when}")
    new_row, secret = await _new_row(session, tenant_id=tenant_id, label=row.label)
    row.revoked_at = now + grace
    session.add(row)
    new = IssuedKey(info=KeyInfo.of(new_row), secret=secret)
    if audit_as is not None:
        await audit.record(
            session,
            tenant_id=tenant_id,
            actor=audit_as,
            action="key.rotate",
            resource_id=str(key_id),
            detail={
                "label": row.label,
                "new_key_id": new.info.id,
                "grace_seconds": int(grace.total_seconds()),
            },
            commit=False,
        )
    await session.commit()
    return Rotated(new=new, old=KeyInfo.of(row))


async def authenticate(session: AsyncSession, *, secret: str) -> Authenticated | None:
    """The active key with this secret and its tenant, in one query; None when there is none."""
    if not secret.startswith(KEY_PREFIX) or len(secret) > 200:
        return None  # not one of ours: no need to ask the database
    statement = (
        select(ApiKey, Tenant)
        .join(Tenant, col(Tenant.id) == col(ApiKey.tenant_id))
        .where(ApiKey.key_hash == hash_secret(secret), _active(utcnow()))
    )
    found = (await session.exec(statement)).first()
    if found is None:
        return None
    key, tenant = found
    return Authenticated(tenant=tenant, key=KeyInfo.of(key))


class UseTracker:
    """Decides when a key's `last_used_at` is worth writing: when the stored value is a minute
    old and this process has not already queued a write for it in the last minute (a burst of
    requests with one key writes once)."""

    def __init__(self, every: timedelta = LAST_USED_EVERY) -> None:
        self.every = every
        self._queued: dict[int, float] = {}

    def due(self, key: KeyInfo, now: datetime | None = None) -> bool:
        now = now or utcnow()
        if key.last_used_at is not None and now - key.last_used_at < self.every:
            return False
        clock = time.monotonic()
        queued = self._queued.get(key.id)
        if queued is not None and clock - queued < self.every.total_seconds():
            return False
        if len(self._queued) > 100_000:
            self._queued.clear()
        self._queued[key.id] = clock
        return True


async def mark_used(
    session: AsyncSession, *, key_id: int, at: datetime, commit: bool = True
) -> None:
    """Move the key's `last_used_at` forward to `at` (never back)."""
    table = table_of(ApiKey)
    await session.execute(
        update(table)
        .where(
            table.c.id == key_id,
            or_(table.c.last_used_at.is_(None), table.c.last_used_at < at),
        )
        .values(last_used_at=at)
    )
    if commit:
        await session.commit()
