"""Re-encrypt every stored secret with the first of the configured keys (key rotation)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.crm_tables import Integration
from models.crypto import CredentialsError, reencrypt
from models.tables import Tenant


@dataclass(frozen=True)
class Reencrypted:
    tenants: int
    integrations: int


async def reencrypt_all(session: AsyncSession, *, secret_key: str) -> Reencrypted:
    """Tenant settings and CRM credentials encrypted again with the first key of `secret_key`,
    in one transaction: a blob no key decrypts changes nothing and raises CredentialsError
    naming its row. Rows are locked (PostgreSQL) so that a settings change made meanwhile is
    not overwritten with the old value."""
    tenants = (await session.exec(select(Tenant).order_by(col(Tenant.id)).with_for_update())).all()
    integrations = (
        await session.exec(select(Integration).order_by(col(Integration.id)).with_for_update())
    ).all()
    try:
        for tenant in tenants:
            try:
                tenant.settings_encrypted = reencrypt(secret_key, tenant.settings_encrypted)
            except CredentialsError as exc:
                raise CredentialsError(f"settings of tenant {tenant.id!r}: {exc}") from exc
            session.add(tenant)
        for integration in integrations:
            try:
                integration.credentials_encrypted = reencrypt(
                    secret_key, integration.credentials_encrypted
                )
            except CredentialsError as exc:
                raise CredentialsError(
                    f"credentials of CRM connection {integration.name!r} of tenant "
                    f"{integration.tenant_id!r}: {exc}"
                ) from exc
            session.add(integration)
    except CredentialsError:
        await session.rollback()
        raise
    await session.commit()
    return Reencrypted(tenants=len(tenants), integrations=len(integrations))
