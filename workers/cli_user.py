"""`leadflow user create|list|set-password|set-role|disable|enable`: the people who sign in to
the console, from the command line.

Works on the database directly (the operator on the server needs no key and no session), through
the same service as the API (`models.users`): the same address, name and password rules, the
same "never without an admin" rule. `user create` is how a tenant gets its first admin.
Passwords are prompted twice (hidden), or read from the first line of stdin with
`--password-stdin` (for scripts); never an option, where they would land in the shell's history.
Every change is audited under the OS user, or the name given with `--by`.

Exit codes: 0 done; 1 no such tenant or person; 2 bad usage or input (a short password, a bad
address); 3 refused (the address is taken, or it would leave the tenant without an admin)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from models import audit, users
from models.db import Database, migrate
from models.repo import tenants as tenant_repo
from models.settings import Settings
from models.users import PASSWORD_MIN, UserInfo

NOT_FOUND_EXIT = 1
INVALID_EXIT = 2
REFUSED_EXIT = 3

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)
people = typer.Typer(
    help="People who sign in to the console (roles: admin, operator, viewer). "
    "`leadflow user create --tenant T --email E --name N --role admin` makes the first admin.",
    no_args_is_help=True,
)

T = TypeVar("T")

Tenant = Annotated[str, typer.Option("--tenant", help="Tenant id.")]
Email = Annotated[
    str, typer.Option("--email", help="The person's e-mail address: their sign-in name.")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
By = Annotated[
    str | None,
    typer.Option("--by", help="Who is acting, for the audit log (default: the OS user)."),
]
PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the password from the first line of stdin instead of prompting (scripts).",
    ),
]
RoleOption = Annotated[
    str,
    typer.Option(
        "--role",
        help="admin (settings, integrations, keys, people), operator (conversations, leads, "
        "campaigns) or viewer (reads only).",
    ),
]


def _fail(message: str, code: int) -> typer.Exit:
    err_console.print(Text("error: ", style="red") + Text(message), highlight=False)
    return typer.Exit(code)


def _password(from_stdin: bool) -> str:
    """The new password, checked before anything is written."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt(
            f"Password (at least {PASSWORD_MIN} characters)",
            hide_input=True,
            confirmation_prompt=True,
        )
    try:
        return users.check_password(password)
    except users.InvalidUserInput as exc:
        raise _fail(str(exc), INVALID_EXIT) from exc


def _run(tenant_id: str, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run `work(session)` on the migrated database once the tenant is known to exist."""
    settings = Settings()  # read now: the environment of this command, not a cached one
    migrate(settings.resolved_database_url)

    async def run() -> T:
        db = Database(settings.resolved_database_url)
        try:
            async with db.session() as session:
                if await tenant_repo.get_tenant(session, tenant_id=tenant_id) is None:
                    raise _fail(
                        f"no tenant {tenant_id!r} (see `leadflow tenant list`)", NOT_FOUND_EXIT
                    )
                return await work(session)
        finally:
            await db.dispose()

    try:
        return asyncio.run(run())
    except users.UserNotFound as exc:
        raise _fail(
            f"{exc} in tenant {tenant_id!r} (see `leadflow user list --tenant {tenant_id}`)",
            NOT_FOUND_EXIT,
        ) from exc
    except users.InvalidUserInput as exc:
        raise _fail(str(exc), INVALID_EXIT) from exc
    except users.UserRefused as exc:
        raise _fail(str(exc), REFUSED_EXIT) from exc


def _view(user: UserInfo) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "role": user.role,
        "disabled": user.disabled,
        "created_at": user.created_at.isoformat(),
        "last_login_at": user.last_login_at.isoformat() if user.last_login_at else None,
    }


def _checked(check: Callable[[str], T], value: str, hint: str) -> T:
    try:
        return check(value)
    except users.InvalidUserInput as exc:
        raise typer.BadParameter(str(exc), param_hint=hint) from exc


@people.command("create")
def create_command(
    tenant: Tenant,
    email: Email,
    name: Annotated[str, typer.Option("--name", help="The person's name, shown in the audit log.")],
    role: RoleOption = "operator",
    password_stdin: PasswordStdin = False,
    by: By = None,
    as_json: AsJson = False,
) -> None:
    """Add a person who signs in to the console with this e-mail address and a password
    (prompted twice, or --password-stdin)."""
    address = _checked(users.normalise_email, email, "--email")
    _checked(users.check_name, name, "--name")
    _checked(users.check_role, role, "--role")
    password = _password(password_stdin)
    made = _run(
        tenant,
        lambda s: users.create_user(
            s,
            tenant_id=tenant,
            email=address,
            name=name,
            role=role,
            password=password,
            audit_as=audit.cli_actor(by),
        ),
    )
    if as_json:
        typer.echo(json.dumps(_view(made)))
        return
    console.print(
        f"{made.name} <{made.email}> ({made.role}) can now sign in to tenant {tenant}",
        markup=False,
    )


@people.command("list")
def list_command(tenant: Tenant, as_json: AsJson = False) -> None:
    """The tenant's people, oldest first (never their passwords)."""
    found = _run(tenant, lambda s: users.list_users(s, tenant_id=tenant))
    if as_json:
        typer.echo(json.dumps([_view(u) for u in found]))
        return
    if not found:
        console.print(
            f"no people in tenant {tenant} yet: `leadflow user create --tenant {tenant} "
            "--email … --name … --role admin` makes the first admin",
            markup=False,
        )
        return
    table = Table("id", "email", "name", "role", "status", "last sign-in")
    for user in found:
        table.add_row(
            str(user.id),
            user.email,
            user.name,
            user.role,
            "disabled" if user.disabled else "active",
            user.last_login_at.isoformat(timespec="seconds") if user.last_login_at else "",
        )
    console.print(table)


def _change(tenant: str, email: str, by: str | None, **changes: Any) -> UserInfo:
    address = _checked(users.normalise_email, email, "--email")

    async def work(session: Any) -> UserInfo:
        person = await users.get_user_by_email(session, tenant_id=tenant, email=address)
        return await users.update_user(
            session, tenant_id=tenant, user_id=person.id, audit_as=audit.cli_actor(by), **changes
        )

    return _run(tenant, work)


@people.command("set-password")
def set_password_command(
    tenant: Tenant,
    email: Email,
    password_stdin: PasswordStdin = False,
    by: By = None,
) -> None:
    """Give a person a new password (prompted twice, or --password-stdin); their sessions end."""
    address = _checked(users.normalise_email, email, "--email")
    password = _password(password_stdin)
    changed = _change(tenant, address, by, password=password)
    console.print(f"new password set for {changed.email}; their sessions have ended", markup=False)


@people.command("set-role")
def set_role_command(tenant: Tenant, email: Email, role: RoleOption, by: By = None) -> None:
    """Change a person's role (the tenant's last admin keeps theirs)."""
    _checked(users.check_role, role, "--role")
    changed = _change(tenant, email, by, role=role)
    console.print(f"{changed.email} is now {changed.role}", markup=False)


@people.command("disable")
def disable_command(tenant: Tenant, email: Email, by: By = None) -> None:
    """Stop a person from signing in; their sessions end at once (not the last admin)."""
    changed = _change(tenant, email, by, disabled=True)
    console.print(f"{changed.email} is disabled; their sessions have ended", markup=False)


@people.command("enable")
def enable_command(tenant: Tenant, email: Email, by: By = None) -> None:
    """Let a disabled person sign in again."""
    changed = _change(tenant, email, by, disabled=False)
    console.print(f"{changed.email} can sign in again", markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(people, name="user")
