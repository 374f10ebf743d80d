"""`leadflow key list|create|revoke|rotate` and `leadflow audit`: a tenant's API keys and audit
log from the command line.

Works on the database directly (an operator on the server needs no API key), through the same
service as the API (`models.api_keys`, `models.audit`). Every change is audited under the OS
user, or the name given with `--by`. Unlike the API, the CLI may revoke a tenant's last key (it
says so): an operator here can always issue a new one.

Exit codes: 0 done; 1 no such tenant or key; 2 bad usage; 3 refused (a revoked key cannot be
rotated, too many active keys)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from models import api_keys, audit
from models.api_keys import KeyInfo
from models.db import Database, migrate
from models.repo import tenants as tenant_repo
from models.settings import Settings

NOT_FOUND_EXIT = 1
REFUSED_EXIT = 3

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)
keys = typer.Typer(help="A tenant's API keys: list, create, revoke, rotate.", no_args_is_help=True)

T = TypeVar("T")

Tenant = Annotated[str, typer.Option("--tenant", help="Tenant id.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
By = Annotated[
    str | None,
    typer.Option("--by", help="Who is acting, for the audit log (default: the OS user)."),
]
KeyId = Annotated[int, typer.Argument(min=1, max=api_keys.MAX_KEY_ID, help="The key's id.")]

_DURATION = re.compile(r"^\s*(\d{1,9})\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """`90`, `90s`, `30m`, `1h`, `2d`."""
    match = _DURATION.match(text.lower())
    if match is None:
        raise typer.BadParameter(f"{text!r} is not a duration like 90s, 30m, 1h or 2d")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def _fail(message: str, code: int) -> typer.Exit:
    err_console.print(Text("error: ", style="red") + Text(message), highlight=False)
    return typer.Exit(code)


def _run(tenant_id: str, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run `work(session)` on the migrated database once the tenant is known to exist."""
    settings = Settings()  # read now: the environment of this command, not a cached one
    migrate(settings.resolved_database_url)

    async def run() -> T:
        db = Database(settings.resolved_database_url)
        try:
            async with db.session() as session:
                if await tenant_repo.get_tenant(session, tenant_id=tenant_id) is None:
                    raise _fail(f"no tenant {tenant_id!r} (see `leadflow tenant list`)", 1)
                return await work(session)
        finally:
            await db.dispose()

    try:
        return asyncio.run(run())
    except api_keys.KeyNotFound as exc:
        raise _fail(f"{exc} in tenant {tenant_id!r} (see `leadflow key list`)", 1) from exc
    except api_keys.KeyRefused as exc:
        raise _fail(str(exc), REFUSED_EXIT) from exc


def _view(key: KeyInfo) -> dict[str, Any]:
    return {
        "id": key.id,
        "label": key.label,
        "prefix": key.prefix,
        "created_at": key.created_at.isoformat(),
        "last_used_at": key.last_used_at.isoformat() if key.last_used_at else None,
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
        "active": key.active(),
    }


@keys.command("list")
def list_command(
    tenant: Tenant,
    active_only: Annotated[bool, typer.Option("--active", help="Only keys that work.")] = False,
    as_json: AsJson = False,
) -> None:
    """The tenant's keys, newest first (never their secrets)."""
    found = _run(
        tenant,
        lambda s: api_keys.list_keys(s, tenant_id=tenant, include_revoked=not active_only),
    )
    if as_json:
        typer.echo(json.dumps([_view(k) for k in found]))
        return
    table = Table("id", "label", "prefix", "created", "last used", "revoked")
    for key in found:
        revoked = key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else ""
        if key.revoked_at is not None and key.active():
            revoked = f"at {revoked} (grace)"
        table.add_row(
            str(key.id),
            key.label,
            key.prefix + "…",
            key.created_at.isoformat(timespec="seconds"),
            key.last_used_at.isoformat(timespec="seconds") if key.last_used_at else "",
            revoked,
        )
    console.print(table)


@keys.command("create")
def create_command(
    tenant: Tenant,
    label: Annotated[str, typer.Option("--label", help="What the key is for, e.g. 'ci'.")],
    by: By = None,
    as_json: AsJson = False,
) -> None:
    """Issue a key and print its secret: shown this once, stored only hashed."""
    try:
        label = api_keys.check_label(label)
    except api_keys.KeyRefused as exc:
        raise typer.BadParameter(str(exc), param_hint="--label") from exc
    issued = _run(
        tenant,
        lambda s: api_keys.create(s, tenant_id=tenant, label=label, audit_as=audit.cli_actor(by)),
    )
    if as_json:
        typer.echo(json.dumps({"key": _view(issued.info), "secret": issued.secret}))
        return
    console.print(f"key {issued.info.id} ({issued.info.label}) created for {tenant}", markup=False)
    typer.echo(issued.secret)
    err_console.print("(stored hashed: keep it now, it is not shown again)")


@keys.command("revoke")
def revoke_command(key_id: KeyId, tenant: Tenant, by: By = None, as_json: AsJson = False) -> None:
    """Revoke a key: every API process refuses it from now on (the last one too)."""

    async def work(session: Any) -> tuple[KeyInfo, int]:
        key = await api_keys.revoke(
            session, tenant_id=tenant, key_id=key_id, audit_as=audit.cli_actor(by)
        )
        left = await api_keys.list_keys(session, tenant_id=tenant, include_revoked=False)
        return key, len(left)

    key, left = _run(tenant, work)
    if as_json:
        typer.echo(json.dumps({"key": _view(key), "active_keys_left": left}))
    else:
        console.print(f"key {key.id} ({key.label or key.prefix}) revoked", markup=False)
    if left == 0:
        err_console.print(
            f"warning: tenant {tenant} has no active API key left "
            f"(`leadflow key create --tenant {tenant} --label ...` issues one)",
            style="yellow",
            markup=False,
        )


@keys.command("rotate")
def rotate_command(
    key_id: KeyId,
    tenant: Tenant,
    grace: Annotated[
        str,
        typer.Option(
            "--grace",
            help="How long the old key keeps working, e.g. 1h (at most 7d; default: none).",
        ),
    ] = "0",
    by: By = None,
    as_json: AsJson = False,
) -> None:
    """Issue a new key with the same label and revoke the old one (after --grace)."""
    period = parse_duration(grace)
    try:
        api_keys.check_grace(period)
    except api_keys.KeyRefused as exc:
        raise typer.BadParameter(str(exc), param_hint="--grace") from exc
    rotated = _run(
        tenant,
        lambda s: api_keys.rotate(
            s, tenant_id=tenant, key_id=key_id, grace=period, audit_as=audit.cli_actor(by)
        ),
    )
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "key": _view(rotated.new.info),
                    "secret": rotated.new.secret,
                    "replaced": _view(rotated.old),
                }
            )
        )
        return
    until = "now" if not period else f"at {rotated.old.revoked_at:%Y-%m-%d %H:%M:%S} UTC"
    console.print(
        f"key {rotated.old.id} replaced by key {rotated.new.info.id}; "
        f"the old one is refused {until}",
        markup=False,
    )
    typer.echo(rotated.new.secret)
    err_console.print("(stored hashed: keep it now, it is not shown again)")


def audit_command(
    tenant: Tenant,
    action: Annotated[
        str | None, typer.Option(help="An action (key.revoke) or a prefix (key.*).")
    ] = None,
    since: Annotated[str | None, typer.Option(help="ISO date or datetime (UTC).")] = None,
    until: Annotated[str | None, typer.Option(help="ISO date or datetime (UTC).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=audit.MAX_PAGE)] = 50,
    as_json: AsJson = False,
) -> None:
    """The tenant's audit log, newest first: who did what, when, from which key."""
    from datetime import datetime

    def when(name: str, value: str | None) -> datetime | None:
        if value is None:
            return None
        try:
            return datetime.fromisoformat(value)
        except ValueError as exc:
            raise typer.BadParameter(
                f"{value!r} is not an ISO date or datetime", param_hint=name
            ) from exc

    start, end = when("--since", since), when("--until", until)
    rows = _run(
        tenant,
        lambda s: audit.list_events(
            s, tenant_id=tenant, action=action, since=start, until=end, limit=limit
        ),
    )
    entries = [
        {
            "id": r.id,
            "at": r.at.isoformat(),
            "actor_kind": r.actor_kind,
            "actor": r.actor,
            "api_key_id": r.api_key_id,
            "action": r.action,
            "resource_id": r.resource_id,
            "outcome": r.outcome,
            "status": r.status,
            "request_id": r.request_id,
            "detail": r.detail,
        }
        for r in rows
    ]
    if as_json:
        typer.echo(json.dumps(entries))
        return
    table = Table("at", "who", "action", "resource", "outcome")
    for r in rows:
        kind = "person" if r.actor_kind == "user" else r.actor_kind
        who = f"key {r.api_key_id} ({r.actor})" if r.api_key_id else f"{kind} {r.actor}"
        outcome = f"{r.outcome} {r.status}" if r.status is not None else r.outcome
        table.add_row(
            r.at.isoformat(timespec="seconds"), who, r.action, r.resource_id or "", outcome
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(keys, name="key")
    app.command("audit")(audit_command)
