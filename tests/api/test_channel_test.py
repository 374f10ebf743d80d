"""`POST /api/v1/settings/channels/{channel}/test` against real loopback fakes: WAHA's session
status, the WhatsApp Cloud API phone number, the Messenger page, Chatwoot's profile, an SMTP
server (aiosmtpd) with and without a login. Unreachable, refused and wrong tokens are answers
(`ok: false` with the reason), an unknown channel is a 404, an unconfigured one a 409; nothing
is sent. IMAP against Dovecot: tests/mailbox/test_channel_test_imap.py."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from api.app import create_app
from models.db import Database
from models.settings import Settings
from models.tenant import ChatwootSettings, SmtpSettings, TenantSettings, WahaSettings
from tests.conftest import make_tenant
from tests.fakes.chatwoot import FakeChatwoot
from tests.fakes.meta import FakeMeta
from tests.fakes.smtp import SmtpServer
from tests.fakes.waha import FakeWaha

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


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def checked(
    http: httpx.AsyncClient, db: Database, channel: str, settings: TenantSettings
) -> dict[str, Any]:
    _, key = await make_tenant(db, settings=settings)
    response = await http.post(
        f"/api/v1/settings/channels/{channel}/test",
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"ok", "detail"}
    return body


async def test_waha_session_status(http: httpx.AsyncClient, sqlite_db: Database) -> None:
    with FakeWaha() as waha:
        ok = await checked(http, sqlite_db, "waha", TenantSettings(waha=waha.settings()))
        assert ok["ok"] is True and "WORKING" in ok["detail"], ok
        waha.session_status = "SCAN_QR_CODE"
        qr = await checked(http, sqlite_db, "waha", TenantSettings(waha=waha.settings()))
        assert qr["ok"] is False and "SCAN_QR_CODE" in qr["detail"] and "QR" in qr["detail"]
        wrong_key = await checked(
            http, sqlite_db, "waha", TenantSettings(waha=waha.settings(api_key="nope"))
        )
        assert wrong_key["ok"] is False and "HTTP 401" in wrong_key["detail"]
        assert "nope" not in wrong_key["detail"]
        no_session = await checked(
            http, sqlite_db, "waha", TenantSettings(waha=waha.settings(session="sales"))
        )
        assert no_session["ok"] is False and "'sales'" in no_session["detail"]
        assert [r.path for r in waha.requests] == ["/api/sessions/default"] * 3 + [
            "/api/sessions/sales"
        ]
        assert waha.sent == []  # a test sends nothing
    down = WahaSettings(base_url=f"http://127.0.0.1:{closed_port()}", api_key="k")
    unreachable = await checked(http, sqlite_db, "waha", TenantSettings(waha=down))
    assert unreachable["ok"] is False and "unreachable" in unreachable["detail"]
    # a stored URL the guard refuses (settings written before the check, or by hand)
    metadata = WahaSettings(base_url="http://169.254.169.254", api_key="k")
    refused = await checked(http, sqlite_db, "waha", TenantSettings(waha=metadata))
    assert refused["ok"] is False and "refused" in refused["detail"], refused


async def test_meta_phone_number_and_page(http: httpx.AsyncClient, sqlite_db: Database) -> None:
    with FakeMeta() as meta:
        whatsapp = await checked(
            http, sqlite_db, "whatsapp", TenantSettings(whatsapp=meta.whatsapp_settings())
        )
        assert whatsapp["ok"] is True, whatsapp
        assert meta.display_phone_number in whatsapp["detail"]
        assert meta.verified_name in whatsapp["detail"]
        bad_token = await checked(
            http,
            sqlite_db,
            "whatsapp",
            TenantSettings(whatsapp=meta.whatsapp_settings(access_token="expired")),
        )
        assert bad_token["ok"] is False and "HTTP 401" in bad_token["detail"]
        assert "Invalid OAuth access token" in bad_token["detail"]
        other_number = await checked(
            http,
            sqlite_db,
            "whatsapp",
            TenantSettings(whatsapp=meta.whatsapp_settings(phone_number_id="999")),
        )
        assert other_number["ok"] is False and "HTTP 400" in other_number["detail"]
        page = await checked(
            http, sqlite_db, "messenger", TenantSettings(messenger=meta.messenger_settings())
        )
        assert page["ok"] is True and meta.page_name in page["detail"], page
        assert meta.whatsapp_sent == [] and meta.messenger_sent == []


async def test_chatwoot_profile_and_account(http: httpx.AsyncClient, sqlite_db: Database) -> None:
    with FakeChatwoot(account_id=7) as chatwoot:
        ok = await checked(
            http, sqlite_db, "chatwoot", TenantSettings(chatwoot=chatwoot.settings())
        )
        assert ok["ok"] is True and "account 7" in ok["detail"], ok
        elsewhere = await checked(
            http,
            sqlite_db,
            "chatwoot",
            TenantSettings(chatwoot=chatwoot.settings(account_id=8)),
        )
        assert elsewhere["ok"] is False and "not in account 8" in elsewhere["detail"]
        wrong = await checked(
            http,
            sqlite_db,
            "chatwoot",
            TenantSettings(chatwoot=chatwoot.settings(api_token="wrong")),
        )
        assert wrong["ok"] is False and "HTTP 401" in wrong["detail"]
        assert chatwoot.messages == []


async def test_smtp_connect_ehlo_auth_quit(http: httpx.AsyncClient, sqlite_db: Database) -> None:
    with SmtpServer() as open_relay:
        ok = await checked(http, sqlite_db, "smtp", TenantSettings(smtp=open_relay.settings()))
        assert ok["ok"] is True and "EHLO" in ok["detail"] and "QUIT" in ok["detail"], ok
        assert open_relay.messages == []
    with SmtpServer(username="sales", password="s3cret") as server:
        logged_in = await checked(http, sqlite_db, "smtp", TenantSettings(smtp=server.settings()))
        assert logged_in["ok"] is True and "AUTH as sales" in logged_in["detail"], logged_in
        wrong = await checked(
            http, sqlite_db, "smtp", TenantSettings(smtp=server.settings(password="guess"))
        )
        assert wrong["ok"] is False and "535" in wrong["detail"], wrong
        assert "guess" not in wrong["detail"]
        # STARTTLS asked of a server that offers none: refused with the server's reason
        no_tls = await checked(
            http, sqlite_db, "smtp", TenantSettings(smtp=server.settings(starttls=True))
        )
        assert no_tls["ok"] is False, no_tls
        assert server.messages == []
    down = SmtpSettings(host="127.0.0.1", port=closed_port())
    unreachable = await checked(http, sqlite_db, "smtp", TenantSettings(smtp=down))
    assert unreachable["ok"] is False and "unreachable" in unreachable["detail"], unreachable
    private = SmtpSettings(host="10.11.12.13", port=25)
    refused = await checked(http, sqlite_db, "smtp", TenantSettings(smtp=private))
    assert refused["ok"] is False and "private" in refused["detail"], refused


async def test_unknown_unconfigured_and_unauthenticated(
    http: httpx.AsyncClient, sqlite_db: Database
) -> None:
    _, key = await make_tenant(
        sqlite_db,
        settings=TenantSettings(chatwoot=ChatwootSettings(base_url="http://127.0.0.1:9")),
    )
    headers = {"Authorization": f"Bearer {key}"}
    for channel, status in (
        ("telegram", 404),
        ("..", 404),
        ("waha", 409),  # no block at all
        ("chatwoot", 409),  # a block without its api_token
        ("imap", 409),
        ("smtp", 409),
    ):
        response = await http.post(f"/api/v1/settings/channels/{channel}/test", headers=headers)
        assert response.status_code == status, (channel, response.text)
    assert (await http.post("/api/v1/settings/channels/waha/test")).status_code == 401
    assert (
        await http.get("/api/v1/settings/channels/waha/test", headers=headers)
    ).status_code == 405
