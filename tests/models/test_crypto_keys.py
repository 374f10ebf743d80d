"""Several secret keys (MultiFernet): the first encrypts, all decrypt; re-encryption of every
stored secret with the first key so that an old key can be dropped (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from models.crm import CrmKind
from models.crypto import CredentialsError, decrypt_json, encrypt_json, reencrypt, secret_keys
from models.db import Database
from models.repo import crm as crm_repo
from models.repo import tenants as tenant_repo
from models.repo.reencrypt import reencrypt_all
from models.tenant import TenantSettings

OLD, NEW = "old-key-0123456789", "new-key-9876543210"


def test_the_first_key_encrypts_and_every_key_decrypts() -> None:
    old_token = encrypt_json(OLD, {"token": "a"})
    assert decrypt_json(f"{NEW},{OLD}", old_token) == {"token": "a"}
    new_token = encrypt_json(f"{NEW},{OLD}", {"token": "b"})
    assert decrypt_json(NEW, new_token) == {"token": "b"}
    with pytest.raises(CredentialsError, match="LEADFLOW_SECRET_KEY changed"):
        decrypt_json(OLD, new_token)
    with pytest.raises(CredentialsError, match="LEADFLOW_SECRET_KEY changed"):
        decrypt_json(NEW, old_token)


def test_reencrypt_moves_a_token_to_the_first_key() -> None:
    old_token = encrypt_json(OLD, {"token": "a"})
    moved = reencrypt(f"{NEW},{OLD}", old_token)
    assert decrypt_json(NEW, moved) == {"token": "a"}
    assert reencrypt(NEW, "") == ""
    with pytest.raises(CredentialsError):
        reencrypt("unrelated", old_token)


def test_key_lists_ignore_blanks_and_an_empty_one_is_refused() -> None:
    assert secret_keys(f" {NEW} , ,{OLD},") == [NEW, OLD]
    assert secret_keys(NEW) == [NEW]
    with pytest.raises(CredentialsError, match="empty"):
        encrypt_json(" , ", {})


async def _tenant_with_crm(db: Database, tenant_id: str, key: str) -> None:
    async with db.session() as s:
        await tenant_repo.create_tenant(
            s,
            tenant_id=tenant_id,
            name=tenant_id,
            secret_key=key,
            settings=TenantSettings(playbook="car_dealership"),
        )
        await crm_repo.create_integration(
            s,
            tenant_id=tenant_id,
            kind=CrmKind.HUBSPOT,
            name="hs",
            credentials={"access_token": f"pat-{tenant_id}"},
            secret_key=key,
        )


async def _decrypted(db: Database, tenant_id: str, key: str) -> tuple[str | None, str]:
    async with db.session() as s:
        tenant = await tenant_repo.get_tenant(s, tenant_id=tenant_id)
        assert tenant is not None
        (integration,) = await crm_repo.list_integrations(s, tenant_id=tenant_id)
        settings = tenant_repo.tenant_settings(tenant, secret_key=key)
        credentials = crm_repo.integration_credentials(integration, secret_key=key)
    return settings.playbook, credentials["access_token"]


async def test_rotation_reencrypts_everything_so_the_old_key_can_go(db: Database) -> None:
    await _tenant_with_crm(db, "a-tenant", OLD)
    await _tenant_with_crm(db, "b-tenant", OLD)
    async with db.session() as s:
        done = await reencrypt_all(s, secret_key=f"{NEW},{OLD}")
    assert (done.tenants, done.integrations) == (2, 2)
    for tid in ("a-tenant", "b-tenant"):
        assert await _decrypted(db, tid, NEW) == ("car_dealership", f"pat-{tid}")
        with pytest.raises(CredentialsError):
            await _decrypted(db, tid, OLD)


async def test_rotation_changes_nothing_when_a_blob_fits_no_key(db: Database) -> None:
    await _tenant_with_crm(db, "a-tenant", OLD)
    await _tenant_with_crm(db, "b-tenant", "a-key-nobody-has")
    async with db.session() as s:
        with pytest.raises(CredentialsError, match="tenant 'b-tenant'"):
            await reencrypt_all(s, secret_key=f"{NEW},{OLD}")
    # a-tenant came first and was re-encrypted in the session: rolled back with the rest.
    assert await _decrypted(db, "a-tenant", OLD) == ("car_dealership", "pat-a-tenant")
    with pytest.raises(CredentialsError):
        await _decrypted(db, "a-tenant", NEW)
