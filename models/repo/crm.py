"""CRM connections, links, sync runs, idempotency records and echo markers."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.crm import (
    BUILTIN_INTEGRATION_ID,
    DEFAULT_BASE_URLS,
    ECHO_WINDOW_SECONDS,
    CrmConnectionView,
    CrmKind,
    SyncMode,
    SyncOutcome,
)
from models.crm_tables import CrmIdempotencyRecord, CrmLink, CrmSyncRun, CrmWriteMarker, Integration
from models.crypto import decrypt_json, encrypt_json
from models.tables import utcnow


class IntegrationExists(Exception):
    pass


def _aware(value: datetime) -> datetime:
    # SQLite hands datetimes back naive; they were stored as UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def create_integration(
    session: AsyncSession,
    *,
    tenant_id: str,
    kind: CrmKind,
    name: str,
    credentials: dict[str, Any],
    secret_key: str,
    base_url: str | None = None,
    field_mapping: dict[str, str] | None = None,
    mode: SyncMode = SyncMode.SAGA,
    position: int | None = None,
) -> Integration:
    existing = await session.exec(
        select(Integration).where(Integration.tenant_id == tenant_id, Integration.name == name)
    )
    if existing.first() is not None:
        raise IntegrationExists(f"an integration named {name!r} already exists")
    if position is None:
        current = await session.exec(
            select(func.max(Integration.position)).where(Integration.tenant_id == tenant_id)
        )
        top = current.one()
        position = 0 if top is None else int(top) + 1
    integration = Integration(
        id=uuid.uuid4().hex,
        tenant_id=tenant_id,
        kind=kind.value,
        name=name,
        base_url=(base_url or DEFAULT_BASE_URLS[kind]).rstrip("/"),
        position=position,
        credentials_encrypted=encrypt_json(secret_key, credentials),
        field_mapping=dict(field_mapping or {}),
        mode=mode.value,
    )
    session.add(integration)
    await session.commit()
    return integration


async def list_integrations(
    session: AsyncSession, *, tenant_id: str, enabled_only: bool = False
) -> list[Integration]:
    query = select(Integration).where(Integration.tenant_id == tenant_id)
    if enabled_only:
        query = query.where(col(Integration.enabled).is_(True))
    rows = await session.exec(
        query.order_by(col(Integration.position), col(Integration.created_at))
    )
    return list(rows.all())


async def has_enabled_integrations(session: AsyncSession, *, tenant_id: str) -> bool:
    """Whether the tenant connected a CRM of its own (the built-in lead table is no integration)."""
    row = (
        await session.exec(
            select(Integration.id)
            .where(Integration.tenant_id == tenant_id, col(Integration.enabled).is_(True))
            .limit(1)
        )
    ).first()
    return row is not None


async def get_integration(
    session: AsyncSession, *, tenant_id: str, integration_id: str
) -> Integration | None:
    integration = await session.get(Integration, integration_id)
    if integration is None or integration.tenant_id != tenant_id:
        return None
    return integration


async def update_integration(
    session: AsyncSession,
    *,
    integration: Integration,
    secret_key: str,
    name: str | None = None,
    base_url: str | None = None,
    field_mapping: dict[str, str] | None = None,
    enabled: bool | None = None,
    credentials: dict[str, Any] | None = None,
) -> Integration:
    """Store the given changes (None: unchanged); `credentials` replaces the stored ones whole.
    Raises IntegrationExists when `name` is another connection's of the tenant."""
    if name is not None and name != integration.name:
        taken = await session.exec(
            select(Integration.id).where(
                Integration.tenant_id == integration.tenant_id,
                Integration.name == name,
                Integration.id != integration.id,
            )
        )
        if taken.first() is not None:
            raise IntegrationExists(f"an integration named {name!r} already exists")
        integration.name = name
    if base_url is not None:
        integration.base_url = base_url.rstrip("/")
    if field_mapping is not None:
        integration.field_mapping = dict(field_mapping)
    if enabled is not None:
        integration.enabled = enabled
    if credentials is not None:
        integration.credentials_encrypted = encrypt_json(secret_key, credentials)
    integration.updated_at = utcnow()
    session.add(integration)
    try:
        await session.commit()
    except IntegrityError as exc:  # a concurrent rename won the name
        await session.rollback()
        raise IntegrationExists(f"an integration named {name!r} already exists") from exc
    await session.refresh(integration)
    return integration


async def delete_integration(session: AsyncSession, *, tenant_id: str, integration_id: str) -> bool:
    """Remove the connection with what is kept for it (its per-lead links, idempotency records
    and echo markers) in one transaction; False when the tenant has no such connection. Sync
    runs stay: they are the leads' history and name the CRM by kind and name."""
    integration = await get_integration(session, tenant_id=tenant_id, integration_id=integration_id)
    if integration is None:
        return False
    await session.exec(
        delete(CrmLink).where(
            col(CrmLink.integration_id) == integration_id, col(CrmLink.tenant_id) == tenant_id
        )
    )
    await session.exec(
        delete(CrmIdempotencyRecord).where(
            col(CrmIdempotencyRecord.integration_id) == integration_id,
            col(CrmIdempotencyRecord.tenant_id) == tenant_id,
        )
    )
    await session.exec(
        delete(CrmWriteMarker).where(
            col(CrmWriteMarker.integration_id) == integration_id,
            col(CrmWriteMarker.tenant_id) == tenant_id,
        )
    )
    await session.delete(integration)
    await session.commit()
    return True


async def integration_exists(session: AsyncSession, *, integration_id: str) -> bool:
    """Whether a link to `integration_id` may be stored: the built-in table, or a connection
    that was not deleted meanwhile."""
    if integration_id == BUILTIN_INTEGRATION_ID:
        return True
    return await session.get(Integration, integration_id) is not None


def integration_view(integration: Integration) -> CrmConnectionView:
    return CrmConnectionView(
        integration_id=integration.id,
        tenant_id=integration.tenant_id,
        kind=CrmKind(integration.kind),
        name=integration.name,
        base_url=integration.base_url,
        order=integration.position,
        mode=SyncMode(integration.mode),
        field_mapping=dict(integration.field_mapping),
        enabled=integration.enabled,
        created_at=_aware(integration.created_at),
    )


def integration_credentials(integration: Integration, *, secret_key: str) -> dict[str, Any]:
    return decrypt_json(secret_key, integration.credentials_encrypted)


# ---- links ---------------------------------------------------------------------------------


async def links_of_lead(session: AsyncSession, *, tenant_id: str, lead_id: str) -> list[CrmLink]:
    rows = await session.exec(
        select(CrmLink)
        .where(CrmLink.tenant_id == tenant_id, CrmLink.lead_id == lead_id)
        .order_by(col(CrmLink.id))
    )
    return list(rows.all())


async def get_link(session: AsyncSession, *, integration_id: str, lead_id: str) -> CrmLink | None:
    rows = await session.exec(
        select(CrmLink).where(CrmLink.integration_id == integration_id, CrmLink.lead_id == lead_id)
    )
    return rows.first()


async def find_link_by_remote_id(
    session: AsyncSession, *, integration_id: str, remote_id: str
) -> CrmLink | None:
    rows = await session.exec(
        select(CrmLink).where(
            CrmLink.integration_id == integration_id, CrmLink.remote_id == remote_id
        )
    )
    return rows.first()


async def save_link(
    session: AsyncSession,
    *,
    tenant_id: str,
    integration_id: str,
    lead_id: str,
    remote_id: str | None,
    version: int | None = None,
    outcome: str | None = None,
    reason: str | None = None,
    synced: bool = False,
) -> CrmLink:
    """Create or update the link; `remote_id=None` clears it (the record was deleted)."""
    link = await get_link(session, integration_id=integration_id, lead_id=lead_id)
    if link is None:
        link = CrmLink(tenant_id=tenant_id, integration_id=integration_id, lead_id=lead_id)
    link.remote_id = remote_id
    if version is not None:
        link.last_version = version
    if outcome is not None:
        link.outcome = outcome
        link.reason = reason
    if synced:
        link.last_synced_at = utcnow()
    link.updated_at = utcnow()
    session.add(link)
    try:
        await session.commit()
    except IntegrityError:
        # a concurrent writer created the same link first: update theirs
        await session.rollback()
        return await save_link(
            session,
            tenant_id=tenant_id,
            integration_id=integration_id,
            lead_id=lead_id,
            remote_id=remote_id,
            version=version,
            outcome=outcome,
            reason=reason,
            synced=synced,
        )
    return link


# ---- sync runs -----------------------------------------------------------------------------


async def record_sync_run(session: AsyncSession, *, run_key: str, outcome: SyncOutcome) -> bool:
    """Store the outcome once per run key and update every touched link; False if already stored."""
    existing = await session.exec(select(CrmSyncRun).where(CrmSyncRun.run_key == run_key))
    if existing.first() is not None:
        return False
    session.add(
        CrmSyncRun(
            run_key=run_key,
            tenant_id=outcome.tenant_id,
            lead_id=outcome.lead_id,
            version=outcome.version,
            status=outcome.status.value,
            reason=outcome.reason,
            steps=[step.model_dump(mode="json") for step in outcome.steps],
        )
    )
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        return False
    for step in outcome.steps:
        if not await integration_exists(session, integration_id=step.integration_id):
            # deleted while this sync ran (DELETE /api/v1/integrations/{id}): no link for it
            continue
        link = await get_link(session, integration_id=step.integration_id, lead_id=outcome.lead_id)
        # a compensated create leaves nothing in the CRM: forget its remote id
        remote_id = step.remote_id
        if step.status.value == "compensated" and step.created:
            remote_id = None
        elif remote_id is None and link is not None:
            remote_id = link.remote_id
        await save_link(
            session,
            tenant_id=outcome.tenant_id,
            integration_id=step.integration_id,
            lead_id=outcome.lead_id,
            remote_id=remote_id,
            version=outcome.version if step.status.value == "succeeded" else None,
            outcome=step.status.value,
            reason=step.error,
            synced=True,
        )
    return True


async def sync_runs_of_lead(
    session: AsyncSession, *, tenant_id: str, lead_id: str, limit: int = 20
) -> list[CrmSyncRun]:
    rows = await session.exec(
        select(CrmSyncRun)
        .where(CrmSyncRun.tenant_id == tenant_id, CrmSyncRun.lead_id == lead_id)
        .order_by(col(CrmSyncRun.id).desc())
        .limit(limit)
    )
    return list(rows.all())


# ---- idempotency ---------------------------------------------------------------------------


async def get_idempotent_result(session: AsyncSession, *, key: str) -> dict[str, Any] | None:
    record = await session.get(CrmIdempotencyRecord, key)
    return None if record is None else dict(record.result)


async def save_idempotent_result(
    session: AsyncSession,
    *,
    key: str,
    tenant_id: str,
    integration_id: str,
    result: dict[str, Any],
) -> dict[str, Any]:
    """Store the result under `key` unless one is there; returns the stored (winning) result."""
    stored = await get_idempotent_result(session, key=key)
    if stored is not None:
        return stored
    session.add(
        CrmIdempotencyRecord(
            key=key, tenant_id=tenant_id, integration_id=integration_id, result=result
        )
    )
    try:
        await session.commit()
    except IntegrityError:
        # lost a race with a concurrent attempt: theirs is the answer
        await session.rollback()
        stored = await get_idempotent_result(session, key=key)
        return stored if stored is not None else result
    return result


async def delete_idempotent_result(session: AsyncSession, *, key: str) -> None:
    """A compensated step forgets its record, so a later sync of that version writes again."""
    await session.exec(delete(CrmIdempotencyRecord).where(col(CrmIdempotencyRecord.key) == key))
    await session.commit()


# ---- echo markers --------------------------------------------------------------------------


def marker_value(value: Any) -> str:
    """One spelling per value, so what we wrote and what a webhook echoes compare equal."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | tuple):
        return ";".join(marker_value(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value).strip()


async def add_write_markers(
    session: AsyncSession,
    *,
    tenant_id: str,
    integration_id: str,
    remote_id: str,
    values: dict[str, Any],
    ttl_seconds: int = ECHO_WINDOW_SECONDS,
) -> None:
    expires = utcnow() + timedelta(seconds=ttl_seconds)
    for prop, value in values.items():
        session.add(
            CrmWriteMarker(
                tenant_id=tenant_id,
                integration_id=integration_id,
                remote_id=remote_id,
                prop=prop,
                value=marker_value(value),
                expires_at=expires,
            )
        )
    await session.commit()


async def is_echo(
    session: AsyncSession, *, integration_id: str, remote_id: str, prop: str, value: Any
) -> bool:
    """True when leadflow itself wrote `prop = value` to this record within the echo window."""
    now = utcnow()
    rows = await session.exec(
        select(CrmWriteMarker).where(
            CrmWriteMarker.integration_id == integration_id,
            CrmWriteMarker.remote_id == remote_id,
            CrmWriteMarker.prop == prop,
            CrmWriteMarker.value == marker_value(value),
        )
    )
    return any(_aware(m.expires_at) > now for m in rows.all())


async def purge_expired_markers(session: AsyncSession) -> int:
    result = await session.exec(
        delete(CrmWriteMarker).where(col(CrmWriteMarker.expires_at) < utcnow())
    )
    await session.commit()
    return int(result.rowcount or 0)
