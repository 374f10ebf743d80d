"""`POST /api/v1/settings/channels/imap/test` against a real Dovecot (tests/mailbox/conftest.py):
LOGIN, SELECT the folder, LOGOUT; a wrong password, a missing folder and a closed port are
`ok: false` with the reason. The other channels: tests/api/test_channel_test.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from api.app import create_app
from models.db import Database
from models.settings import Settings
from models.tenant import TenantSettings
from tests.api.test_channel_test import closed_port
from tests.conftest import make_tenant
from tests.mailbox.conftest import Dovecot, mail

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def http(
    sqlite_db: Database, sqlite_url: str, settings_factory: Callable[..., Settings]
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings_factory(sqlite_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://leadflow.test") as c:
            yield c


async def _test(
    http: httpx.AsyncClient, db: Database, settings: TenantSettings
) -> dict[str, object]:
    _, key = await make_tenant(db, settings=settings)
    response = await http.post(
        "/api/v1/settings/channels/imap/test", headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def test_imap_login_select_logout(
    http: httpx.AsyncClient, sqlite_db: Database, dovecot: Dovecot
) -> None:
    user = dovecot.user()
    await dovecot.append(user, mail(subject="Hello"))
    ok = await _test(http, sqlite_db, TenantSettings(imap=dovecot.settings(user)))
    assert ok["ok"] is True, ok
    assert f"logged in as {user}" in str(ok["detail"]) and "1 messages" in str(ok["detail"])

    wrong = await _test(
        http, sqlite_db, TenantSettings(imap=dovecot.settings(user, password="guess"))
    )
    assert wrong["ok"] is False and "login refused" in str(wrong["detail"]), wrong
    assert "guess" not in str(wrong["detail"])
    no_folder = await _test(
        http, sqlite_db, TenantSettings(imap=dovecot.settings(user, mailbox="Leads"))
    )
    assert no_folder["ok"] is False, no_folder
    down = await _test(
        http,
        sqlite_db,
        TenantSettings(imap=dovecot.settings(user, port=closed_port())),
    )
    assert down["ok"] is False and "connect" in str(down["detail"]), down
