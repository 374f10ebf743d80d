"""Tenants, their settings (stored encrypted) and their API keys (stored hashed)."""

from __future__ import annotations

import re

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import api_keys
from models.crypto import decrypt_json, encrypt_json
from models.tables import ApiKey, Tenant, utcnow
from models.tenant import TenantSettings, dump_settings

TENANT_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class TenantExists(Exception):
    pass


class InvalidTenantId(ValueError):
    pass


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:63]
    return slug or "tenant"


async def create_tenant(
    session: AsyncSession,
    *,
    tenant_id: str,
    name: str,
    secret_key: str,
    settings: TenantSettings | None = None,
) -> Tenant:
    if not TENANT_ID_RE.match(tenant_id):
        raise InvalidTenantId(
            f"tenant id {tenant_id!r} must be lowercase letters, digits and dashes (max 63)"
        )
    if await session.get(Tenant, tenant_id) is not None:
        raise TenantExists(f"tenant {tenant_id!r} already exists")
    tenant = Tenant(
        id=tenant_id,
        name=name,
        settings_encrypted=encrypt_json(secret_key, dump_settings(settings or TenantSettings())),
    )
    session.add(tenant)
    await session.commit()
    return tenant


async def get_tenant(session: AsyncSession, *, tenant_id: str) -> Tenant | None:
    return await session.get(Tenant, tenant_id)


async def list_tenants(session: AsyncSession) -> list[Tenant]:
    return list((await session.exec(select(Tenant).order_by(Tenant.id))).all())


def tenant_settings(tenant: Tenant, *, secret_key: str) -> TenantSettings:
    return TenantSettings.model_validate(decrypt_json(secret_key, tenant.settings_encrypted))


async def save_tenant_settings(
    session: AsyncSession, *, tenant: Tenant, settings: TenantSettings, secret_key: str
) -> None:
    tenant.settings_encrypted = encrypt_json(secret_key, dump_settings(settings))
    session.add(tenant)
    await session.commit()


async def create_api_key(session: AsyncSession, *, tenant_id: str, label: str = "default") -> str:
    """Create a key and return it in clear text: the only time it is ever visible. The rules
    (format, hash, limits) are `models.api_keys`'; this is the shortcut setup code uses."""
    return (await api_keys.create(session, tenant_id=tenant_id, label=label)).secret


async def tenant_for_key(session: AsyncSession, *, key: str) -> Tenant | None:
    """The tenant of an active key (one in a rotation's grace period included)."""
    found = await api_keys.authenticate(session, secret=key)
    return found.tenant if found is not None else None


async def revoke_api_keys(session: AsyncSession, *, tenant_id: str) -> int:
    rows = (await session.exec(select(ApiKey).where(ApiKey.tenant_id == tenant_id))).all()
    for row in rows:
        row.revoked_at = utcnow()
        session.add(row)
    await session.commit()
    return len(rows)
