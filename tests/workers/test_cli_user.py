"""`leadflow user ...` as an operator uses it, on a SQLite file: the first admin made with a
prompted password (twice) who then signs in through the same service the API uses, scripts
with --password-stdin and --json, a new password and disabling ending sessions, the last admin
kept, the audit entries under the operator's name, and the exit codes and messages of typos,
short passwords, unknown tenants and people, and refusals."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from sqlmodel import select
from typer.testing import CliRunner, Result

from models import users
from models.audit_tables import AuditEvent
from models.db import Database, migrate
from models.repo import tenants as tenant_repo
from models.user_tables import User
from tests.conftest import TEST_SECRET
from workers.cli import app

PASSWORD = "correct horse battery"


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", url)
    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LEADFLOW_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("COLUMNS", "240")
    migrate(url)

    async def tenant() -> None:
        db = Database(url)
        try:
            async with db.session() as session:
                await tenant_repo.create_tenant(
                    session, tenant_id="acme", name="Acme", secret_key=TEST_SECRET
                )
        finally:
            await db.dispose()

    asyncio.run(tenant())
    return url


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=input)


def text(result: Result) -> str:
    return re.sub(r"\s+", " ", result.output)


def signs_in(url: str, email: str, password: str) -> bool:
    async def check() -> bool:
        db = Database(url)
        try:
            async with db.session() as session:
                signed = await users.sign_in(
                    session, tenant_id="acme", email=email, password=password
                )
                return signed is not None
        finally:
            await db.dispose()

    return asyncio.run(check())


def test_the_first_admin_with_a_prompted_password_signs_in(db_url: str) -> None:
    empty = run("user", "list", "--tenant", "acme")
    assert empty.exit_code == 0 and "makes the first admin" in text(empty)

    made = run(
        "user",
        "create",
        "--tenant",
        "acme",
        "--email",
        "Ann@Example.com",
        "--name",
        "Ann",
        "--role",
        "admin",
        "--by",
        "ops",
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert made.exit_code == 0, made.output
    assert "Ann <ann@example.com> (admin) can now sign in to tenant acme" in text(made)
    assert PASSWORD not in made.stdout.replace("Password", "")  # hidden input: not echoed
    assert signs_in(db_url, "ann@example.com", PASSWORD)

    listed = run("user", "list", "--tenant", "acme", "--json")
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.stdout)
    assert row["email"] == "ann@example.com" and row["role"] == "admin"
    assert row["last_login_at"] is not None and "password" not in listed.stdout
    human = run("user", "list", "--tenant", "acme")
    assert "ann@example.com" in human.output and "active" in human.output

    async def stored() -> tuple[str, list[tuple[str, str]]]:
        db = Database(db_url)
        try:
            async with db.session() as session:
                user = (await session.exec(select(User))).one()
                rows = (await session.exec(select(AuditEvent))).all()
                return user.password_hash, [(r.action, r.actor) for r in rows]
        finally:
            await db.dispose()

    password_hash, entries = asyncio.run(stored())
    assert password_hash.startswith("$argon2id$")
    assert entries == [("user.create", "ops")]


def test_mismatched_prompts_are_asked_again(db_url: str) -> None:
    made = run(
        "user",
        "create",
        "--tenant",
        "acme",
        "--email",
        "a@example.com",
        "--name",
        "A",
        input=f"{PASSWORD}\nsomething else\n{PASSWORD}\n{PASSWORD}\n",
    )
    assert made.exit_code == 0, made.output
    assert "do not match" in made.output.lower() or "don't match" in made.output.lower()
    assert signs_in(db_url, "a@example.com", PASSWORD)


def test_scripts_change_passwords_roles_and_disable(db_url: str) -> None:
    for email, role in (("boss@example.com", "admin"), ("op@example.com", "operator")):
        made = run(
            "user",
            "create",
            "--tenant",
            "acme",
            "--email",
            email,
            "--name",
            "X",
            "--role",
            role,
            "--password-stdin",
            "--json",
            input=PASSWORD + "\n",
        )
        assert made.exit_code == 0, made.output
        assert json.loads(made.stdout)["role"] == role

    changed = run(
        "user",
        "set-password",
        "--tenant",
        "acme",
        "--email",
        "OP@example.com",
        "--password-stdin",
        input="a brand new one\n",
    )
    assert changed.exit_code == 0, changed.output
    assert "sessions have ended" in text(changed)
    assert not signs_in(db_url, "op@example.com", PASSWORD)
    assert signs_in(db_url, "op@example.com", "a brand new one")

    promoted = run(
        "user", "set-role", "--tenant", "acme", "--email", "op@example.com", "--role", "viewer"
    )
    assert promoted.exit_code == 0 and "is now viewer" in text(promoted)

    disabled = run("user", "disable", "--tenant", "acme", "--email", "op@example.com")
    assert disabled.exit_code == 0, disabled.output
    assert not signs_in(db_url, "op@example.com", "a brand new one")
    enabled = run("user", "enable", "--tenant", "acme", "--email", "op@example.com")
    assert enabled.exit_code == 0
    assert signs_in(db_url, "op@example.com", "a brand new one")

    # the last admin stays one (exit 3, and why)
    for args in (
        ("disable", "--tenant", "acme", "--email", "boss@example.com"),
        ("set-role", "--tenant", "acme", "--email", "boss@example.com", "--role", "operator"),
    ):
        refused = run("user", *args)
        assert refused.exit_code == 3, refused.output
        assert "last admin" in text(refused)


def test_errors_say_what_is_wrong(db_url: str) -> None:
    def create(*extra: str, password: str = PASSWORD, tenant: str = "acme") -> Result:
        return run(
            "user",
            "create",
            "--tenant",
            tenant,
            "--name",
            "A",
            "--password-stdin",
            *extra,
            input=password + "\n",
        )

    short = create("--email", "a@example.com", password="short")
    assert short.exit_code == 2 and "shorter than 10 characters" in text(short)
    bad_address = create("--email", "not-an-address")
    assert bad_address.exit_code == 2 and "not an e-mail address" in text(bad_address)
    bad_role = create("--email", "a@example.com", "--role", "owner")
    assert bad_role.exit_code == 2 and "role must be one of admin, operator, viewer" in text(
        bad_role
    )
    no_tenant = create("--email", "a@example.com", tenant="nope")
    assert no_tenant.exit_code == 1 and "no tenant 'nope'" in text(no_tenant)

    assert create("--email", "a@example.com").exit_code == 0
    taken = create("--email", "A@example.com")
    assert taken.exit_code == 3 and "already a person" in text(taken)

    nobody = run("user", "disable", "--tenant", "acme", "--email", "nobody@example.com")
    assert nobody.exit_code == 1 and "no person 'nobody@example.com'" in text(nobody)
    assert "leadflow user list --tenant acme" in text(nobody)

    missing = run("user", "create", "--tenant", "acme")
    assert missing.exit_code == 2 and "--email" in text(missing)
