"""Resolving a tenant's settings and playbook in a worker process, through a cache.

Activities receive `PlaybookRef(tenant, hash)` instead of the playbook. Resolving by hash is a
dictionary lookup once the process has seen that playbook; otherwise (or for "the tenant's
current playbook") the tenant's settings are read from the database, at most once per
`ttl_seconds` per tenant, and the result is cached under its hash. If a tenant changed its
playbook since the workflow took the reference, the newest playbook wins: the workflow takes the
new policy at its next turn.

The settings alone (`settings()`) are cached apart from the playbook: a send needs the channel's
credentials, and a playbook that does not load must not stop it. Reading and decrypting them was
a database round trip and a Fernet decryption on every send (issue 8); a changed setting applies
within `ttl_seconds`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from models.db import Database
from models.playbook import Playbook
from models.policy import PlaybookRef
from models.repo import crm as crm_repo
from models.repo import tenants as tenant_repo
from models.repo.playbooks import PlaybookError, builtin_playbook, playbook_for
from models.tenant import TenantSettings

HASH_CACHE_SIZE = 512
TENANT_CACHE_SIZE = 10_000


class UnknownTenantError(LookupError):
    pass


@dataclass(frozen=True)
class TenantProfile:
    tenant_id: str
    name: str
    settings: TenantSettings
    playbook: Playbook
    playbook_hash: str  # computed once per refresh, not once per turn
    crm_connected: bool  # the tenant connected a CRM of its own (a few seconds stale at most)


@dataclass(frozen=True)
class _TenantRow:
    name: str
    settings: TenantSettings
    crm_connected: bool


class PlaybookResolver:
    def __init__(self, db: Database, secret_key: str, *, ttl_seconds: float = 5.0) -> None:
        self._db = db
        self._secret = secret_key
        self._ttl = ttl_seconds
        self._rows: dict[str, tuple[float, _TenantRow]] = {}
        self._tenants: dict[str, tuple[float, TenantProfile]] = {}
        self._by_hash: OrderedDict[str, Playbook] = OrderedDict()

    async def _row(self, tenant_id: str, *, fresh: bool) -> tuple[float, _TenantRow]:
        now = time.monotonic()
        cached = self._rows.get(tenant_id)
        if cached is not None and not fresh and now - cached[0] < self._ttl:
            return cached
        async with self._db.session() as session:
            row = await tenant_repo.get_tenant(session, tenant_id=tenant_id)
            if row is None:
                raise UnknownTenantError(f"tenant {tenant_id!r} does not exist")
            settings = tenant_repo.tenant_settings(row, secret_key=self._secret)
            crm_connected = await crm_repo.has_enabled_integrations(session, tenant_id=tenant_id)
        entry = (now, _TenantRow(name=row.name, settings=settings, crm_connected=crm_connected))
        if len(self._rows) > TENANT_CACHE_SIZE:
            self._rows.clear()
            self._tenants.clear()
        self._rows[tenant_id] = entry
        return entry

    async def settings(self, tenant_id: str) -> TenantSettings:
        """The tenant's decrypted settings (cached for `ttl_seconds`). Raises
        `UnknownTenantError`; never `PlaybookError`."""
        return (await self._row(tenant_id, fresh=False))[1].settings

    async def tenant(self, tenant_id: str, *, fresh: bool = False) -> TenantProfile:
        """The tenant's settings and current playbook (cached for `ttl_seconds`).

        Raises `UnknownTenantError`, or `PlaybookError` for a playbook that does not load."""
        read_at, row = await self._row(tenant_id, fresh=fresh)
        cached = self._tenants.get(tenant_id)
        if cached is not None and cached[0] == read_at:
            return cached[1]
        playbook = playbook_for(row.settings, tenant_name=row.name)
        profile = TenantProfile(
            tenant_id=tenant_id,
            name=row.name,
            settings=row.settings,
            playbook=playbook,
            playbook_hash=playbook.content_hash,
            crm_connected=row.crm_connected,
        )
        self._tenants[tenant_id] = (read_at, profile)
        self._remember(profile.playbook_hash, playbook)
        return profile

    async def resolve(self, ref: PlaybookRef) -> Playbook:
        if ref.builtin:
            return builtin_playbook(ref.builtin)
        if ref.hash is not None:
            hit = self._by_hash.get(ref.hash)
            if hit is not None:
                self._by_hash.move_to_end(ref.hash)
                return hit
        return (await self.tenant(ref.tenant_id)).playbook

    def _remember(self, playbook_hash: str, playbook: Playbook) -> None:
        self._by_hash[playbook_hash] = playbook
        self._by_hash.move_to_end(playbook_hash)
        while len(self._by_hash) > HASH_CACHE_SIZE:
            self._by_hash.popitem(last=False)


__all__ = ["PlaybookError", "PlaybookResolver", "TenantProfile", "UnknownTenantError"]
