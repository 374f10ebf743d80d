"""`leadflow dashboard`: a tenant's numbers for a period as tables, from the same service as
`GET /api/v1/dashboard` (models/dashboard.py), on the database directly (an operator on the
server needs no API key).

Exit codes: 0 done; 1 no such tenant; 2 bad usage (a bad period)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from models.dashboard import MAX_DAYS, Dashboard, PeriodError, dashboard, resolve_period
from models.db import Database, migrate
from models.repo import tenants as tenant_repo
from models.settings import Settings

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


class _NoTenant(Exception):
    pass


async def _numbers(
    settings: Settings, tenant_id: str, days: int | None, since: str | None, until: str | None
) -> Dashboard:
    db = Database(settings.resolved_database_url)
    try:
        async with db.session() as session:
            tenant = await tenant_repo.get_tenant(session, tenant_id=tenant_id)
            if tenant is None:
                raise _NoTenant(tenant_id)
            timezone = tenant_repo.tenant_settings(
                tenant, secret_key=settings.secret_key.get_secret_value()
            ).timezone
            period = resolve_period(
                timezone=timezone, now=datetime.now(UTC), days=days, since=since, until=until
            )
            return await dashboard(session, tenant_id=tenant_id, period=period)
    finally:
        await db.dispose()


def _usd(value: float) -> str:
    return f"${value:.4f}"


def _print(numbers: Dashboard) -> None:
    p = numbers.period
    console.print(
        f"[bold]{p.since} to {p.until}[/bold] ({p.days} days, {p.timezone})", highlight=False
    )
    days = Table("day", "in", "out", "AI", "person", "cost", "enriched", "failed")
    for messages, cost, enriched in zip(
        numbers.messages_per_day,
        numbers.model_cost.per_day,
        numbers.enrichment.per_day,
        strict=True,
    ):
        days.add_row(
            messages.day.isoformat(),
            str(messages.in_),
            str(messages.out),
            str(messages.ai),
            str(messages.person),
            _usd(cost.total_usd),
            str(enriched.done),
            str(enriched.failed),
        )
    console.print(days)

    reply = numbers.first_reply_seconds
    esc = numbers.escalations
    crm = numbers.crm_sync
    summary = Table("figure", "value", show_header=False)
    summary.add_row(
        "first reply (median / p90)",
        "none answered"
        if reply.median is None
        else f"{reply.median:g} s / {reply.p90:g} s over {reply.count} conversations",
    )
    summary.add_row("unanswered", str(reply.unanswered))
    summary.add_row(
        "escalation rate", f"{esc.rate:.1%} ({esc.count} of {esc.conversations} conversations)"
    )
    for rule, n in esc.by_rule.items():
        summary.add_row(f"  {rule}", str(n))
    summary.add_row("lead quality", ", ".join(f"{q} {n}" for q, n in numbers.lead_quality.items()))
    summary.add_row("funnel", ", ".join(f"{s.stage} {s.count}" for s in numbers.funnel))
    summary.add_row("meetings booked", str(numbers.meetings_booked))
    summary.add_row("test drives booked", str(numbers.test_drives_booked))
    summary.add_row(
        "model cost",
        f"{_usd(numbers.model_cost.total_usd)} "
        f"(${numbers.model_cost.per_message_usd:.6f} per message)",
    )
    summary.add_row(
        "enrichment", f"{numbers.enrichment.done} done, {numbers.enrichment.failed} failed"
    )
    for reason, n in numbers.enrichment.failure_reasons.items():
        summary.add_row(Text(f"  {reason}"), str(n))
    summary.add_row("CRM sync", f"{crm.success_rate:.1%} of {crm.runs} runs ({crm.failed} failed)")
    console.print(summary)


def dashboard_command(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant id.")],
    days: Annotated[
        int | None,
        typer.Option("--days", help=f"The last N days, today included (1-{MAX_DAYS}; default 30)."),
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="First day, YYYY-MM-DD.")] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Last day, YYYY-MM-DD (default today).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
) -> None:
    """The tenant's numbers for a period in its time zone (what GET /api/v1/dashboard answers)."""
    settings = Settings()
    migrate(settings.resolved_database_url)
    try:
        numbers = asyncio.run(_numbers(settings, tenant, days, since, until))
    except _NoTenant:
        err_console.print(
            Text("error: ", style="red") + Text(f"no tenant {tenant!r}"), highlight=False
        )
        raise typer.Exit(1) from None
    except PeriodError as exc:
        err_console.print(
            Text("error: ", style="red") + Text(f"--{exc.field}: {exc.message}"), highlight=False
        )
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(numbers.model_dump(mode="json")))
        return
    _print(numbers)


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard_command)
