"""`leadflow integrations add|list|test|enable|disable|delete`: CRM connections from the
command line.

Works on the database directly (operators on the server need no API key); credentials are
encrypted with LEADFLOW_SECRET_KEY like through the API, and never printed."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from activities.crm.activities import CrmActivities
from activities.crm.plugin import crm_plugin
from models import audit
from models.crm import (
    DEFAULT_FIELD_MAPPINGS,
    ConnectionCheckInput,
    ConnectionCheckResult,
    CrmKind,
    SyncMode,
)
from models.crm_rules import integration_problems
from models.db import Database
from models.integration_service import (
    IntegrationEdit,
    IntegrationNotFound,
    delete_integration,
    update_integration,
)
from models.netguard import guarded_client
from models.repo import crm as crm_repo
from models.settings import Settings, get_settings

integrations = typer.Typer(
    help="CRM connections: add, list, test, enable, disable, delete.", no_args_is_help=True
)
console = Console()


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{what} must look like KEY=VALUE, got {item!r}")
        out[key.strip()] = value
    return out


async def _add(
    settings: Settings,
    *,
    tenant: str,
    kind: CrmKind,
    name: str,
    base_url: str | None,
    credentials: dict[str, str],
    mapping: dict[str, str],
    mode: SyncMode,
) -> str:
    db = Database(settings.resolved_database_url)
    try:
        async with db.session() as session:
            row = await crm_repo.create_integration(
                session,
                tenant_id=tenant,
                kind=kind,
                name=name,
                base_url=base_url,
                credentials=credentials,
                field_mapping=mapping,
                mode=mode,
                secret_key=settings.secret_key.get_secret_value(),
            )
            return row.id
    finally:
        await db.dispose()


@integrations.command("add")
def add(
    tenant: Annotated[str, typer.Option(help="Tenant id.")],
    kind: Annotated[CrmKind, typer.Option(help="CRM kind.")],
    name: Annotated[str, typer.Option(help="A name unique within the tenant.")],
    credential: Annotated[
        list[str], typer.Option("--credential", "-c", help="KEY=VALUE, repeatable.")
    ] = [],  # noqa: B006 - typer reads the default, never mutates it
    mapping: Annotated[
        list[str],
        typer.Option("--map", "-m", help="leadflow_field=crm_property, repeatable."),
    ] = [],  # noqa: B006
    base_url: Annotated[str | None, typer.Option(help="Defaults to the vendor's.")] = None,
    mode: Annotated[SyncMode, typer.Option(help="saga | best_effort")] = SyncMode.SAGA,
) -> None:
    """Add a CRM connection (credentials stored encrypted)."""
    creds = _pairs(credential, "--credential")
    field_mapping = _pairs(mapping, "--map") or DEFAULT_FIELD_MAPPINGS[kind]
    found = integration_problems(
        kind,
        mapping=field_mapping,
        credentials=creds,
        base_url=base_url,
        allowlist=get_settings().ssrf_allowlist,
    )
    problems = [f"{p.field}: {p.problem}" for p in found]
    if problems:
        for problem in problems:
            console.print(f"[red]✗[/red] {problem}")
        raise typer.Exit(code=2)
    try:
        integration_id = asyncio.run(
            _add(
                get_settings(),
                tenant=tenant,
                kind=kind,
                name=name,
                base_url=base_url,
                credentials=creds,
                mapping=field_mapping,
                mode=mode,
            )
        )
    except crm_repo.IntegrationExists as exc:
        console.print(f"[red]✗[/red] {exc}")
        raise typer.Exit(code=1) from exc
    console.print(f"added {kind.value} connection {name!r}: {integration_id}")


async def _list(settings: Settings, tenant: str) -> list[tuple[str, ...]]:
    db = Database(settings.resolved_database_url)
    try:
        async with db.session() as session:
            rows = await crm_repo.list_integrations(session, tenant_id=tenant)
        return [
            (r.id, str(r.position), r.kind, r.name, r.base_url, r.mode, ", ".join(r.field_mapping))
            for r in rows
        ]
    finally:
        await db.dispose()


@integrations.command("list")
def list_(tenant: Annotated[str, typer.Option(help="Tenant id.")]) -> None:
    """List a tenant's CRM connections in saga order (never the credentials)."""
    table = Table("id", "order", "kind", "name", "base url", "mode", "mapped fields")
    for row in asyncio.run(_list(get_settings(), tenant)):
        table.add_row(*row)
    console.print(table)


async def _test(settings: Settings, tenant: str, integration_id: str) -> ConnectionCheckResult:
    db = Database(settings.resolved_database_url)
    try:
        # The worker's client: a CRM URL a tenant gave is guarded here too (models/netguard.py).
        async with guarded_client(settings.ssrf_allowlist, timeout=15) as http:
            acts = CrmActivities(
                settings=settings, db=db, http=http, adapters=crm_plugin().crm_adapters
            )
            # the activity's code run in-process: no worker needed to check credentials
            return await acts.check_crm_connection(
                ConnectionCheckInput(tenant_id=tenant, integration_id=integration_id)
            )
    finally:
        await db.dispose()


@integrations.command("test")
def test(
    integration_id: Annotated[str, typer.Argument(help="The connection's id.")],
    tenant: Annotated[str, typer.Option(help="Tenant id.")],
) -> None:
    """Check a connection's credentials against the CRM."""
    result = asyncio.run(_test(get_settings(), tenant, integration_id))
    mark = "[green]✓[/green]" if result.ok else "[red]✗[/red]"
    console.print(f"{mark} {result.detail}")
    if not result.ok:
        raise typer.Exit(code=1)


async def _change(
    settings: Settings, *, tenant: str, integration_id: str, enabled: bool | None, by: str | None
) -> None:
    """Enable or disable (`enabled`), or delete (None) through the one service the API uses,
    with an audit entry in the same session."""
    db = Database(settings.resolved_database_url)
    try:
        async with db.session() as session:
            if enabled is None:
                await delete_integration(session, tenant_id=tenant, integration_id=integration_id)
                action = "integration.delete"
            else:
                await update_integration(
                    session,
                    tenant_id=tenant,
                    integration_id=integration_id,
                    edit=IntegrationEdit(enabled=enabled),
                    secret_key=settings.secret_key.get_secret_value(),
                    allowlist=settings.ssrf_allowlist,
                )
                action = "integration.update"
            await audit.record(
                session,
                tenant_id=tenant,
                actor=audit.cli_actor(by),
                action=action,
                resource_id=integration_id,
                detail={} if enabled is None else {"changed": "enabled", "enabled": enabled},
            )
    finally:
        await db.dispose()


def _run_change(
    tenant: str, integration_id: str, enabled: bool | None, by: str | None, done: str
) -> None:
    try:
        asyncio.run(
            _change(
                get_settings(),
                tenant=tenant,
                integration_id=integration_id,
                enabled=enabled,
                by=by,
            )
        )
    except IntegrationNotFound as exc:
        console.print(f"[red]✗[/red] tenant {tenant} has no integration {integration_id}")
        raise typer.Exit(code=1) from exc
    console.print(f"{done} {integration_id}")


TenantOption = Annotated[str, typer.Option(help="Tenant id.")]
IdArgument = Annotated[str, typer.Argument(help="The connection's id.")]
ByOption = Annotated[
    str | None, typer.Option("--by", help="Who acts, for the audit log (default: the OS user).")
]


@integrations.command("enable")
def enable(integration_id: IdArgument, tenant: TenantOption, by: ByOption = None) -> None:
    """Take a disabled connection into the syncs again (from the next one on)."""
    _run_change(tenant, integration_id, True, by, "enabled")


@integrations.command("disable")
def disable(integration_id: IdArgument, tenant: TenantOption, by: ByOption = None) -> None:
    """Leave a connection out of every sync from the next one on and ignore its inbound
    webhooks (acknowledged, not applied); its links stay, erasure still reaches it."""
    _run_change(tenant, integration_id, False, by, "disabled")


@integrations.command("delete")
def delete(
    integration_id: IdArgument,
    tenant: TenantOption,
    by: ByOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
) -> None:
    """Delete a connection with its per-lead links (the CRM's records stay). A sync already
    under way fails its step for it; disable first to let running syncs finish."""
    if not yes:
        typer.confirm(f"Delete integration {integration_id} of {tenant}?", abort=True)
    _run_change(tenant, integration_id, None, by, "deleted")


def register(app: typer.Typer) -> None:
    app.add_typer(integrations, name="integrations")
