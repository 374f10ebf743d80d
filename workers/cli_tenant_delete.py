"""`leadflow tenant delete <id>`: delete a tenant for good (models/erasure.py `delete_tenant`).

Its workflows are terminated and their histories deleted first (a running one would write rows
back), then every row of it in every table, its API keys and the tenant row, in one transaction.
It cannot be undone: the operator types the tenant id to confirm, or passes `--yes`. Running it
again after a crash finishes the job."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich.console import Console

from models import audit
from models.db import Database, migrate
from models.erasure import TenantDeleted, delete_tenant
from models.knowledge.index import KnowledgeBackendError
from models.knowledge.service import build_index
from models.repo import tenants as tenant_repo
from models.settings import Settings
from workers.client import TemporalUnavailable, connect

console = Console()
err = Console(stderr=True)


class UnknownTenant(LookupError):
    pass


async def _delete(settings: Settings, tenant_id: str, *, by: str | None) -> TenantDeleted:
    db = Database(settings.resolved_database_url)
    try:
        async with db.session() as session:
            if await tenant_repo.get_tenant(session, tenant_id=tenant_id) is None:
                raise UnknownTenant(tenant_id)
        client = await connect(settings, role="cli")
        if settings.weaviate_url:
            # Before the rows: a failure here leaves the tenant whole, and running the command
            # again finishes the job (after the rows, nothing would name the Weaviate tenant).
            index = build_index(settings, db)
            try:
                await index.drop_tenant(tenant_id)
            finally:
                await index.close()
        async with db.session() as session:
            done = await delete_tenant(client, session, tenant_id=tenant_id)
            # The tenant's own audit entries went with its rows; this one stays: who deleted
            # it and when (counts only).
            await audit.record(
                session,
                tenant_id=tenant_id,
                actor=audit.cli_actor(by),
                action="tenant.delete",
                resource_id=tenant_id,
                detail={
                    "workflows": done.workflows.workflows,
                    "rows": sum(done.rows.values()),
                },
            )
            return done
    finally:
        await db.dispose()


def tenant_delete(
    tenant_id: Annotated[str, typer.Argument(help="The tenant's id (see `leadflow tenant list`).")],
    yes: Annotated[
        bool, typer.Option("--yes", help="Do not ask; for scripts. It cannot be undone.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    by: Annotated[
        str | None, typer.Option("--by", help="Who deletes it, for the audit log (default: you).")
    ] = None,
) -> None:
    """Delete a tenant and everything of it: workflows (terminated, histories deleted), leads,
    conversations, messages, jobs, CRM connections, inventory and knowledge (in Weaviate too),
    usage, API keys. Cannot be undone."""
    if not yes:
        typed = typer.prompt(
            f"This deletes tenant {tenant_id!r} and all its data for good. "
            "Type the tenant id to confirm",
            default="",
            show_default=False,
        )
        if typed.strip() != tenant_id:
            err.print("[red]error:[/red] not confirmed; nothing was deleted")
            raise typer.Exit(1)
    settings = Settings()
    migrate(settings.resolved_database_url)
    try:
        done = asyncio.run(_delete(settings, tenant_id, by=by))
    except UnknownTenant:
        err.print(f"[red]error:[/red] unknown tenant {tenant_id!r}; nothing was deleted")
        raise typer.Exit(1) from None
    except TemporalUnavailable as exc:
        err.print(
            f"[red]error:[/red] Temporal is unavailable ({exc}); nothing was deleted: the "
            "tenant's workflows must stop before its rows go"
        )
        raise typer.Exit(1) from None
    except KnowledgeBackendError as exc:
        err.print(
            f"[red]error:[/red] {exc}; the tenant's rows were not deleted: run the command "
            "again when the knowledge backend answers"
        )
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(done.model_dump(mode="json")))
        return
    rows = sum(done.rows.values())
    console.print(
        f"deleted tenant {tenant_id}: {done.workflows.workflows} workflow(s) "
        f"({done.workflows.terminated} terminated, {done.workflows.deleted} run(s) deleted), "
        f"{rows} row(s) in {len(done.rows)} table(s)",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add `delete` to the `tenant` command group."""
    for group in app.registered_groups:
        if group.name == "tenant" and group.typer_instance is not None:
            group.typer_instance.command("delete")(tenant_delete)
            return
    raise RuntimeError("the `tenant` command group is not registered")
