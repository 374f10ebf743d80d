"""The API's `/metrics`: unauthenticated, Prometheus text, and every webhook answer counted by
provider and status — refusals (404, 422, 401) and paths no provider serves included."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.metrics_middleware import webhook_providers
from models.db import Database
from models.settings import Settings
from models.tenant import TenantSettings, WahaSettings
from tests.conftest import make_tenant


@pytest.fixture
async def http(
    sqlite_db: Database, sqlite_url: str, settings_factory: Callable[..., Settings]
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings_factory(sqlite_url, temporal_address="127.0.0.1:1"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://leadflow.test") as c:
            yield c


def acks(provider: str, status: int) -> float:
    value = REGISTRY.get_sample_value(
        "leadflow_webhook_acks_total", {"provider": provider, "status": str(status)}
    )
    return value or 0.0


def timed(provider: str) -> float:
    value = REGISTRY.get_sample_value("leadflow_webhook_ack_seconds_count", {"provider": provider})
    return value or 0.0


def test_every_webhook_router_is_a_known_provider() -> None:
    assert webhook_providers() == {
        "waha", "whatsapp", "messenger", "chatwoot", "email", "hubspot", "pipedrive",
        "gohighlevel", "mailgun", "sendgrid", "postmark",
    }  # fmt: skip


async def test_refusals_are_counted_by_provider_and_status(
    http: httpx.AsyncClient, sqlite_db: Database
) -> None:
    before = {
        ("waha", 404): acks("waha", 404),
        ("waha", 422): acks("waha", 422),
        ("waha", 401): acks("waha", 401),
        ("whatsapp", 404): acks("whatsapp", 404),
        ("other", 404): acks("other", 404),
    }
    waha_timed = timed("waha")
    signed, _ = await make_tenant(
        sqlite_db,
        settings=TenantSettings(
            waha=WahaSettings(base_url="http://127.0.0.1:9", webhook_secret="s3cret")
        ),
    )
    json = {"content-type": "application/json"}
    assert (
        await http.post("/webhooks/waha/nobody", content=b"{}", headers=json)
    ).status_code == 404
    assert (
        await http.post(f"/webhooks/waha/{signed}", content=b"[", headers=json)
    ).status_code in (
        401,  # the signature is checked before the body is parsed
        422,
    )
    unsigned, _ = await make_tenant(sqlite_db)
    response = await http.post(f"/webhooks/waha/{unsigned}", content=b"{not json", headers=json)
    assert response.status_code == 422
    response = await http.post("/webhooks/whatsapp/nobody", content=b"{}", headers=json)
    assert response.status_code == 404
    # Not a provider: counted, under "other" (the path's text is not a label).
    response = await http.post("/webhooks/evil-$(rm)/x", content=b"{}", headers=json)
    assert response.status_code == 404

    assert acks("waha", 404) == before[("waha", 404)] + 1
    assert acks("waha", 401) + acks("waha", 422) == (
        before[("waha", 401)] + before[("waha", 422)] + 2
    )
    assert acks("whatsapp", 404) == before[("whatsapp", 404)] + 1
    assert acks("other", 404) == before[("other", 404)] + 1
    assert timed("waha") == waha_timed + 3


async def test_metrics_needs_no_key_and_is_prometheus_text(
    http: httpx.AsyncClient, sqlite_db: Database
) -> None:
    await http.post(
        "/webhooks/waha/nobody", content=b"{}", headers={"content-type": "application/json"}
    )
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    # leadflow's own series, with the API's database gauges read for this scrape
    assert families["leadflow_webhook_acks"].type == "counter"
    assert any(
        s.labels == {"provider": "waha", "status": "404"} and s.value >= 1
        for s in families["leadflow_webhook_acks"].samples
    )
    assert families["leadflow_webhook_ack_seconds"].type == "histogram"
    assert families["leadflow_inbox_backlog"].samples[0].value == 0
    qualities = {s.labels["quality"] for s in families["leadflow_leads_by_quality"].samples}
    assert qualities == {"hot", "warm", "lukewarm", "cold", "unknown"}
    # The worker-side series are declared in every process, so a dashboard finds them at 0.
    for name in ("leadflow_turns", "leadflow_escalations", "leadflow_outbox_sends"):
        assert families[name].type == "counter"
    assert "/metrics" in (await http.get("/openapi.json")).json()["paths"]
