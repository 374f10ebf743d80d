"""`leadflow up`'s demo admin: made once for the demo tenant with a generated password kept in
the data dir (0600, beside demo-api-key), printed in the banner as the console's sign-in, and
left alone on later starts (a changed password stays changed). The whole `up` is tested in
tests/workers/test_up.py; this is the start-up step on its own, on a real SQLite database."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from models import users
from models.db import Database, migrate
from models.settings import Settings
from tests.conftest import TEST_SECRET
from workers import cli


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    url = f"sqlite+aiosqlite:///{data_dir / 'leadflow.db'}"
    migrate(url)
    return Settings(data_dir=data_dir, database_url=url, secret_key=TEST_SECRET)


def _signs_in(settings: Settings, password: str) -> bool:
    async def check() -> bool:
        db = Database(settings.resolved_database_url)
        try:
            async with db.session() as session:
                signed = await users.sign_in(
                    session, tenant_id=cli.DEMO_TENANT, email=cli.DEMO_ADMIN, password=password
                )
                return signed is not None and signed.user.role == "admin"
        finally:
            await db.dispose()

    return asyncio.run(check())


def test_the_demo_admin_is_made_once_and_printed(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    key = asyncio.run(cli._demo_tenant(settings))
    path = settings.data_dir / cli.DEMO_ADMIN_PASSWORD_FILE
    password = path.read_text().strip()
    assert len(password) >= users.PASSWORD_MIN
    assert path.stat().st_mode & 0o077 == 0
    assert _signs_in(settings, password)

    capsys.readouterr()
    cli._banner(
        "http://127.0.0.1:8000",
        "http://127.0.0.1:8233",
        "127.0.0.1:7233",
        key,
        workers=1,
        logs=settings.data_dir / "logs",
        metrics="http://127.0.0.1:8000/metrics",
        sign_in=cli._demo_sign_in(settings),
    )
    printed = capsys.readouterr().out
    line = re.search(r"Console: (\S+) — sign in as (\S+) / (\S+)", printed)
    assert line, printed
    assert line.groups() == ("http://127.0.0.1:8000/", cli.DEMO_ADMIN, password)
    assert re.search(r"Demo API key\s+" + re.escape(key), printed), printed

    # a second start changes nothing, even after the admin chose a password of their own
    async def change_password() -> None:
        db = Database(settings.resolved_database_url)
        try:
            async with db.session() as session:
                admin = await users.get_user_by_email(
                    session, tenant_id=cli.DEMO_TENANT, email=cli.DEMO_ADMIN
                )
                await users.update_user(
                    session,
                    tenant_id=cli.DEMO_TENANT,
                    user_id=admin.id,
                    password="mine and only mine",
                )
        finally:
            await db.dispose()

    asyncio.run(change_password())
    assert asyncio.run(cli._demo_tenant(settings)) == key
    assert path.read_text().strip() == password
    assert _signs_in(settings, "mine and only mine") and not _signs_in(settings, password)


def test_without_the_password_file_the_banner_says_where_to_look(settings: Settings) -> None:
    asyncio.run(cli._demo_tenant(settings))
    (settings.data_dir / cli.DEMO_ADMIN_PASSWORD_FILE).unlink()
    asyncio.run(cli._demo_tenant(settings))  # the tenant has its admin: none is added
    assert not (settings.data_dir / cli.DEMO_ADMIN_PASSWORD_FILE).exists()
    assert "leadflow user list --tenant demo" in cli._demo_sign_in(settings)
