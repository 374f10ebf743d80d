"""Changing and removing a tenant's CRM connections: the rules, for the API and the CLI alike.

An edit is judged like an addition (models/crm_rules.py): the field mapping against the CRM's
property names, the credentials against what the CRM needs, a new base URL against the URL
guard. Credentials are write-only: an edit names the ones it sets (a value) or removes (None);
the others stay as stored, and no answer ever holds a value.

Disabling (`enabled: false`) keeps the connection and its links: the next sync's plan leaves it
out (activities/crm/activities.py `load_crm_sync_plan` loads enabled connections only), a sync
already under way finishes with it. Deleting removes the connection, its per-lead links, its
idempotency records and echo markers. A sync that loaded its plan before the delete and reaches
the deleted CRM afterwards fails that step without retrying (`CrmIntegrationMissing`): in saga
mode that one sync is rolled back like any permanent failure, and the lead's next change syncs
to the CRMs that remain; its outcome recreates no link to the deleted connection. Deleting is
therefore not refused while syncs run: nothing is left half-written in leadflow, and the
console disables first when it wants running syncs to finish cleanly.

A disabled connection is off in both directions: an inbound CRM webhook addressed to it (HubSpot,
Pipedrive, GoHighLevel, Chatwoot contact events) is still authenticated first (a bad signature
stays 401), then acknowledged and ignored (`inbound_ignored_reason`): no lead is written, no
link forgotten, no conversation signalled. Re-enabling it makes the next event act again.
Erasure is the exception on purpose: `DELETE /api/v1/leads/{id}?crm=true` deletes the person in
every CRM the tenant connected, disabled ones included (activities/crm/activities.py
`erase_crm_records`): syncing was switched off, but what was pushed there before still holds
their data, and their right to erasure does not depend on a sync switch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession

from models.crm import DEFAULT_BASE_URLS, CrmKind, FieldProblem
from models.crm_rules import integration_problems
from models.crm_tables import Integration
from models.repo import crm as crm_repo


class IntegrationNotFound(LookupError):
    """No connection of the tenant by this id."""


class IntegrationRejected(ValueError):
    """The edit would make a connection that cannot work; nothing was stored."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.problem}" for p in problems))
        self.problems = problems


IntegrationExists = crm_repo.IntegrationExists


@dataclass(frozen=True)
class IntegrationEdit:
    """What an edit changes; a field left None is unchanged. `reset_base_url` goes back to the
    vendor's URL. `credentials`: name -> new value, or None to remove that credential."""

    name: str | None = None
    base_url: str | None = None
    reset_base_url: bool = False
    field_mapping: dict[str, str] | None = None
    enabled: bool | None = None
    credentials: Mapping[str, str | int | None] | None = None

    def changed(self) -> list[str]:
        """The names of what the edit touches (for the audit log: names, never values)."""
        names = [
            name
            for name in ("name", "base_url", "field_mapping", "enabled")
            if getattr(self, name) is not None
        ]
        if self.reset_base_url and "base_url" not in names:
            names.append("base_url")
        names += [f"credentials.{key}" for key in sorted(self.credentials or {})]
        return names


async def update_integration(
    session: AsyncSession,
    *,
    tenant_id: str,
    integration_id: str,
    edit: IntegrationEdit,
    secret_key: str,
    allowlist: Iterable[str],
) -> Integration:
    """Apply `edit` to the tenant's connection. Raises IntegrationNotFound, IntegrationRejected
    (every problem at once) or IntegrationExists (the new name is taken)."""
    row = await crm_repo.get_integration(
        session, tenant_id=tenant_id, integration_id=integration_id
    )
    if row is None:
        raise IntegrationNotFound(integration_id)
    kind = CrmKind(row.kind)
    credentials: dict[str, object] | None = None
    if edit.credentials is not None:
        credentials = crm_repo.integration_credentials(row, secret_key=secret_key)
        for key, value in edit.credentials.items():
            if value is None:
                credentials.pop(key, None)
            else:
                credentials[key] = value
    base_url = DEFAULT_BASE_URLS[kind] if edit.reset_base_url else edit.base_url
    problems = integration_problems(
        kind,
        mapping=edit.field_mapping if edit.field_mapping is not None else row.field_mapping,
        credentials=credentials
        if credentials is not None
        else crm_repo.integration_credentials(row, secret_key=secret_key),
        # only a URL the edit sets is judged: a stored one was judged when it was set
        base_url=edit.base_url,
        allowlist=allowlist,
    )
    if problems:
        raise IntegrationRejected(problems)
    return await crm_repo.update_integration(
        session,
        integration=row,
        secret_key=secret_key,
        name=edit.name,
        base_url=base_url,
        field_mapping=edit.field_mapping,
        enabled=edit.enabled,
        credentials=credentials,
    )


async def delete_integration(session: AsyncSession, *, tenant_id: str, integration_id: str) -> None:
    """Remove the connection and what is kept for it (see the module doc for running syncs).
    Raises IntegrationNotFound."""
    if not await crm_repo.delete_integration(
        session, tenant_id=tenant_id, integration_id=integration_id
    ):
        raise IntegrationNotFound(integration_id)


def inbound_ignored_reason(integration: Integration) -> str | None:
    """Why an authenticated inbound CRM event addressed to `integration` is acknowledged and
    not acted on, or None when it is acted on. The one rule the CRM webhooks follow (through
    api/webhooks/crm_inbound.py); the caller answers 2xx, as for every event not for us, so the
    CRM does not retry it for days."""
    if not integration.enabled:
        return f"{integration.kind} connection {integration.name!r} is disabled"
    return None
