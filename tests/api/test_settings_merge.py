"""Tenant settings through the API: PATCH deep-merges (a one-field change keeps the channel's
secrets, so its webhooks stay signed), masks keep stored secrets, bad values are a 422 naming
the field, the CLI merges the same way, allow_unsigned_webhooks decides whether a channel
without a secret takes unsigned webhooks, and /ready warns about tenants that do."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from api.app import create_app
from api.webhooks.common import UNSIGNED_REFUSED
from models.db import Database
from models.repo import tenants as tenant_repo
from models.settings import Settings
from models.tenant import TenantSettings, WahaSettings, dump_settings
from models.tenant_settings_merge import MASK, SettingsRejected, merge_settings
from tests.api.webhooks.conftest import waha_sign
from tests.conftest import TEST_SECRET, make_tenant

pytestmark = pytest.mark.timeout(120)

WAHA_MESSAGE = (
    Path(__file__).resolve().parents[2] / "docs" / "examples" / "waha-message.json"
).read_bytes()
JSON = {"Content-Type": "application/json"}


@pytest.fixture
async def api(
    sqlite_db: Database,
    sqlite_url: str,
    settings_factory: Callable[..., Settings],
    temporal_address: str,
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings_factory(sqlite_url, temporal_address=temporal_address))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://leadflow.test") as http:
            yield http


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def stored(db: Database, tenant_id: str) -> dict[str, Any]:
    async with db.session() as session:
        tenant = await tenant_repo.get_tenant(session, tenant_id=tenant_id)
        assert tenant is not None
        await session.refresh(tenant)
        return dump_settings(tenant_repo.tenant_settings(tenant, secret_key=TEST_SECRET))


WAHA = {
    "base_url": "http://waha:3000",
    "api_key": "waha-key-s3cret",
    "webhook_secret": "hmac-s3cret",
}


async def test_patching_one_field_keeps_the_channels_secrets_and_its_webhooks_signed(
    api: httpx.AsyncClient, sqlite_db: Database
) -> None:
    tid, key = await make_tenant(sqlite_db, allow_unsigned_webhooks=False)
    assert (await api.patch("/api/v1/settings", headers=auth(key), json={"waha": WAHA})).is_success

    one_field = await api.patch(
        "/api/v1/settings", headers=auth(key), json={"waha": {"session": "sales"}}
    )
    assert one_field.status_code == 200, one_field.text
    assert one_field.json()["waha"] == {
        "base_url": "http://waha:3000",
        "api_key": MASK,
        "session": "sales",
        "webhook_secret": MASK,
    }
    assert (await stored(sqlite_db, tid))["waha"] == {**WAHA, "session": "sales"}

    # The webhook secret survived, so an unsigned webhook is still refused; a signed one passes.
    unsigned = await api.post(f"/webhooks/waha/{tid}", content=WAHA_MESSAGE, headers=JSON)
    assert unsigned.status_code == 401 and unsigned.json()["error"] == "missing signature"
    signed = await api.post(
        f"/webhooks/waha/{tid}",
        content=WAHA_MESSAGE,
        headers={**JSON, **waha_sign("hmac-s3cret", WAHA_MESSAGE)},
    )
    assert signed.status_code == 202, signed.text


async def test_masks_nulls_and_put(api: httpx.AsyncClient, sqlite_db: Database) -> None:
    tid, key = await make_tenant(sqlite_db)
    await api.patch("/api/v1/settings", headers=auth(key), json={"waha": WAHA})

    # What GET shows, sent back through PATCH with one change: the masks keep the secrets.
    shown = (await api.get("/api/v1/settings", headers=auth(key))).json()
    shown["waha"]["session"] = "sales"
    assert (await api.patch("/api/v1/settings", headers=auth(key), json=shown)).is_success
    assert (await stored(sqlite_db, tid))["waha"] == {**WAHA, "session": "sales"}

    # A mask where nothing is stored is not a secret: it is never stored.
    chatwoot = await api.patch(
        "/api/v1/settings",
        headers=auth(key),
        json={"chatwoot": {"base_url": "https://cw.example", "api_token": MASK}},
    )
    assert chatwoot.status_code == 200, chatwoot.text
    assert "api_token" not in (await stored(sqlite_db, tid))["chatwoot"]

    # null removes a secret, a block, or resets a field to its default.
    await api.patch("/api/v1/settings", headers=auth(key), json={"timezone": "Europe/Amsterdam"})
    removed = await api.patch(
        "/api/v1/settings",
        headers=auth(key),
        json={"waha": {"webhook_secret": None}, "chatwoot": None, "timezone": None},
    )
    assert removed.status_code == 200, removed.text
    after = await stored(sqlite_db, tid)
    assert after["waha"] == {
        "base_url": "http://waha:3000",
        "api_key": "waha-key-s3cret",
        "session": "sales",
    }
    assert "chatwoot" not in after and after["timezone"] == "UTC"

    # PUT replaces the whole settings (the session goes back to its default), masks still keep.
    put = await api.put(
        "/api/v1/settings",
        headers=auth(key),
        json={"waha": {"base_url": "http://waha2:3000", "api_key": MASK}},
    )
    assert put.status_code == 200, put.text
    assert (await stored(sqlite_db, tid))["waha"] == {
        "base_url": "http://waha2:3000",
        "api_key": "waha-key-s3cret",
        "session": "default",
    }


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"timezone": "Mars/Olympus"}, ["timezone"]),
        ({"waha": {"base_url": "ftp://waha:3000"}}, ["waha", "base_url"]),
        ({"waha": {"base_url": "file:///etc/passwd"}}, ["waha", "base_url"]),
        ({"chatwoot": {"base_url": "http://"}}, ["chatwoot", "base_url"]),
        ({"whatsapp": {"graph_url": "graph.facebook.com"}}, ["whatsapp", "graph_url"]),
        (
            {"llm": {"openai_compatible_base_url": "gopher://x"}},
            ["llm", "openai_compatible_base_url"],
        ),
        # What the connection guard would refuse anyway is refused when saved, with its reason.
        ({"waha": {"base_url": "http://169.254.169.254/"}}, ["waha", "base_url"]),
        ({"chatwoot": {"base_url": "http://10.0.0.7:3000"}}, ["chatwoot", "base_url"]),
        ({"waha": {"base_url": "http://[::ffff:169.254.169.254]/"}}, ["waha", "base_url"]),
        (
            {"whatsapp": {"graph_url": "http://metadata.google.internal/"}},
            ["whatsapp", "graph_url"],
        ),
        ({"smtp": {"from_address": "sales at acme"}}, ["smtp", "from_address"]),
        ({"specialists": [{"name": "S", "role": "r", "email": "s@"}]}, ["specialists", 0, "email"]),
        (
            {"specialists": [{"name": "S", "role": "r", "whatsapp": "12"}]},
            ["specialists", 0, "whatsapp"],
        ),
    ],
    ids=[
        "timezone",
        "ftp-url",
        "file-url",
        "no-host",
        "no-scheme",
        "llm-url",
        "metadata-address",
        "private-address",
        "ipv4-mapped-ipv6",
        "internal-name",
        "smtp-from",
        "specialist-email",
        "specialist-phone",
    ],
)
async def test_bad_values_are_a_422_naming_the_field(
    api: httpx.AsyncClient, sqlite_db: Database, body: dict[str, Any], loc: list[str | int]
) -> None:
    tid, key = await make_tenant(sqlite_db)
    before = await stored(sqlite_db, tid)
    for method in ("patch", "put"):
        response = await getattr(api, method)("/api/v1/settings", headers=auth(key), json=body)
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "invalid settings"
        assert [p["loc"] for p in response.json()["detail"]] == [loc]
        assert response.json()["detail"][0]["msg"]
    assert await stored(sqlite_db, tid) == before


async def test_good_values_pass(api: httpx.AsyncClient, sqlite_db: Database) -> None:
    _, key = await make_tenant(sqlite_db)
    response = await api.patch(
        "/api/v1/settings",
        headers=auth(key),
        json={
            "timezone": "Europe/Amsterdam",
            "smtp": {"from_address": "sales@acme.example"},
            "specialists": [
                {"name": "S", "role": "r", "email": "s@acme.example", "whatsapp": "+31612345678"},
                {"name": "G", "role": "r", "whatsapp": "120363012345678901@g.us"},
            ],
        },
    )
    assert response.status_code == 200, response.text


async def test_status_names_the_missing_fields_of_a_channel(
    api: httpx.AsyncClient, sqlite_db: Database
) -> None:
    _, key = await make_tenant(sqlite_db, allow_unsigned_webhooks=False)
    await api.patch(
        "/api/v1/settings",
        headers=auth(key),
        json={"waha": {"webhook_secret": "s"}, "chatwoot": {"api_token": "t"}},
    )
    status = await api.get("/api/v1/settings/status", headers=auth(key))
    assert status.status_code == 200
    body = status.json()
    assert body["channels"] == {
        "waha": {"configured": False, "missing": ["api_key"]},
        "chatwoot": {"configured": True, "missing": []},
    }
    assert body["unsigned_webhooks"] == []
    assert body["warnings"] == ["waha is not configured: api_key missing"]


async def test_unsigned_webhooks_only_when_the_tenant_allows_them(
    api: httpx.AsyncClient, sqlite_db: Database
) -> None:
    refused_tid, _ = await make_tenant(sqlite_db, allow_unsigned_webhooks=False)
    allowed_tid, _ = await make_tenant(sqlite_db, allow_unsigned_webhooks=True)
    # The default of a new tenant is "refused".
    assert TenantSettings().allow_unsigned_webhooks is False

    refused = await api.post(f"/webhooks/waha/{refused_tid}", content=WAHA_MESSAGE, headers=JSON)
    assert refused.status_code == 401
    assert refused.json()["error"] == UNSIGNED_REFUSED
    assert "waha.webhook_secret" in refused.json()["detail"]
    for path in ("whatsapp", "messenger", "chatwoot"):
        other = await api.post(f"/webhooks/{path}/{refused_tid}", content=b"{}", headers=JSON)
        assert (other.status_code, other.json()["error"]) == (401, UNSIGNED_REFUSED), path

    accepted = await api.post(f"/webhooks/waha/{allowed_tid}", content=WAHA_MESSAGE, headers=JSON)
    assert accepted.status_code == 202, accepted.text

    # /ready warns about the tenant that accepts unsigned webhooks, and only about it.
    ready = await api.get("/ready")
    assert ready.status_code == 200, ready.text
    warnings = ready.json()["warnings"]
    assert any(w.startswith(f"tenant {allowed_tid} accepts unsigned webhooks") for w in warnings)
    assert not any(refused_tid in w for w in warnings)


async def test_the_cli_and_the_api_merge_alike(
    api: httpx.AsyncClient,
    sqlite_db: Database,
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    start = TenantSettings(waha=WahaSettings.model_validate(WAHA), timezone="Europe/Amsterdam")
    by_api, key = await make_tenant(sqlite_db, settings=start)
    by_cli, _ = await make_tenant(sqlite_db, settings=start)
    update: dict[str, Any] = {
        "waha": {"session": "sales", "api_key": MASK},
        "timezone": None,
        "specialists": [],
    }

    api_answer = await api.patch("/api/v1/settings", headers=auth(key), json=update)
    assert api_answer.status_code == 200, api_answer.text

    monkeypatch.setenv("LEADFLOW_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("LEADFLOW_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(tmp_path / "data"))
    file = tmp_path / "update.json"
    file.write_text(json.dumps(update))
    from workers.cli import app

    result = await asyncio.to_thread(
        CliRunner().invoke, app, ["tenant", "configure", by_cli, "--file", str(file)]
    )
    assert result.exit_code == 0, result.output

    expected = dump_settings(merge_settings(start.model_copy(), update))
    assert await stored(sqlite_db, by_api) == await stored(sqlite_db, by_cli)
    api_stored = await stored(sqlite_db, by_api)
    assert api_stored["waha"] == expected["waha"] == {**WAHA, "session": "sales"}
    assert api_stored["timezone"] == "UTC"


def test_merge_rejections_describe_their_fields() -> None:
    with pytest.raises(SettingsRejected) as caught:
        merge_settings(TenantSettings(), {"waha": {"base_url": "ftp://x"}, "timezone": "Nowhere"})
    assert caught.value.describe().splitlines() == [
        "timezone: 'Nowhere' is not an IANA time zone (e.g. Europe/Amsterdam)",
        "waha.base_url: 'ftp://x' must be an http:// or https:// URL",
    ]
