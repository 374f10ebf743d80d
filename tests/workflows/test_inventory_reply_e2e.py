"""End to end: a lead's WhatsApp question about a car is answered from the tenant's inventory.

The real stack on loopback — the API taking the WAHA webhook, the worker with every plugin on
the real Temporal dev server, the knowledge service on the database backend and on Weaviate (a
fake speaking Weaviate's REST and gRPC, driven by the real weaviate-client) — with the offline
rules and with a hosted provider (the real OpenAI SDK against a fake model server that reads
the prompt's <inventory> block as a model would). The reply at the fake WAHA must carry the
real cars' prices and links, and nothing else of the stock."""

from __future__ import annotations

import os
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from temporalio.client import Client

from models.conversation import conversation_workflow_id
from models.inventory import InventoryItem, NewInventoryItem
from models.knowledge.service import KnowledgeService, build_index
from models.repo import usage as usage_repo
from models.settings import Settings
from models.tenant import TenantSettings
from tests.fakes.llm import FakeOpenAI
from tests.fakes.llm_brain import rules_brain
from tests.fakes.waha import FakeWaha
from tests.fakes.weaviate import FakeWeaviate
from tests.stack import live_stack

LEAD = "31655501234@c.us"
SHOP = "https://autohuis-vandijk.example/occasions"

STOCK: list[InventoryItem] = [
    NewInventoryItem(key=key, make="Volkswagen", model=model, variant=variant, year=year,
                     fuel=fuel, mileage=km, price=Decimal(price), url=f"{SHOP}/{key}").keyed()
    for key, model, variant, year, fuel, km, price in [
        ("vw-golf-18", "Golf", "1.6 TDI Comfortline", 2018, "diesel", 98_000, "16450"),
        ("vw-golf-19", "Golf", "2.0 TDI Highline", 2019, "diesel", 61_000, "18950"),
        ("vw-golf-20", "Golf", "2.0 TDI Style", 2020, "diesel", 45_500, "21990"),
        ("vw-golf-21", "Golf", "2.0 TDI R-Line", 2021, "diesel", 30_000, "24750"),
        ("vw-golf-22", "Golf", "2.0 TDI GTD", 2022, "diesel", 12_000, "26900"),
        ("vw-golf-tsi", "Golf", "1.5 TSI Life", 2021, "petrol", 20_000, "21450"),
        ("vw-polo-20", "Polo", "1.0 TSI", 2020, "petrol", 40_000, "14950"),
    ]
]  # fmt: skip


@pytest.fixture(params=["offline", "openai_compatible"])
def model_settings(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    if request.param == "offline":
        yield {}
        return
    with FakeOpenAI(api_key=None, brain=rules_brain) as fake:
        yield {
            "llm_provider": "openai_compatible",
            "openai_compatible_base_url": fake.base_url,
            "llm_model": "fake-model",
        }


async def test_a_whatsapp_question_about_a_golf_diesel_is_answered_from_the_inventory(
    temporal_client: Client,
    settings_factory: Any,
    sqlite_url: str,
    fake_waha: FakeWaha,
    model_settings: dict[str, Any],
) -> None:
    settings: Settings = settings_factory(sqlite_url, debounce_seconds=0.3, **model_settings)
    await _answered_from_the_inventory(temporal_client, settings, fake_waha)


async def test_the_same_answer_comes_from_the_weaviate_backend(
    temporal_client: Client, settings_factory: Any, sqlite_url: str, fake_waha: FakeWaha
) -> None:
    """LEADFLOW_WEAVIATE_URL set: the worker's knowledge service searches Weaviate (BM25 and
    filters; no vectors, which this test does not need), and the reply is the same."""
    with FakeWeaviate() as weaviate:
        settings: Settings = settings_factory(
            sqlite_url,
            debounce_seconds=0.3,
            weaviate_url=weaviate.url,
            weaviate_grpc_port=weaviate.grpc_port,
            weaviate_vectors="none",
        )
        await _answered_from_the_inventory(temporal_client, settings, fake_waha)
        # The items reached Weaviate (the tenant's own tenant there) and were searched there.
        collection = settings.weaviate_collection
        stored = [len(weaviate.objects(collection, t)) for t in weaviate.tenants(collection)]
        assert stored == [len(STOCK)], stored
        assert any("Search" in call.method for call in weaviate.grpc_calls)


def build_index_name(settings: Settings) -> str:
    return "weaviate" if settings.weaviate_url else "database"


async def _answered_from_the_inventory(
    temporal_client: Client, settings: Settings, fake_waha: FakeWaha
) -> None:
    async with live_stack(
        temporal_client,
        settings,
        tenant_settings=TenantSettings(playbook="car_dealership", waha=fake_waha.settings()),
    ) as stack:
        # The service the API would use, on the backend the settings choose.
        knowledge = KnowledgeService(stack.db, build_index(settings, stack.db))
        try:
            diff = await knowledge.apply_items(tenant_id=stack.tenant_id, items=STOCK, replace=True)
        finally:
            await knowledge.index.close()
        assert diff.added == len(STOCK)

        raw, headers = fake_waha.message_webhook(
            from_=LEAD, body="Hi! Do you have a Golf diesel under €25,000?"
        )
        response = await stack.http.post(
            f"/webhooks/waha/{stack.tenant_id}",
            content=raw,
            headers={**headers, "content-type": "application/json"},
        )
        assert response.status_code in (200, 202), response.text
        await stack.wait_for(
            lambda: [b for b in fake_waha.sent if b.get("chatId") == LEAD], what="the reply"
        )
        [sent] = [b for b in fake_waha.sent if b.get("chatId") == LEAD]
        text = sent["text"]
        if os.environ.get("LEADFLOW_SHOW_REPLIES"):
            print(
                f"\n--- reply at WAHA ({settings.llm_provider}, {build_index_name(settings)}) ---"
            )
            print(text)
        # The three cheapest Golf diesels within the budget, with their real prices and links.
        for key, price in (("vw-golf-18", "€16,450"), ("vw-golf-19", "€18,950")):
            assert price in text and f"{SHOP}/{key}" in text, text
        assert "€21,990" in text and f"{SHOP}/vw-golf-20" in text
        # Not a fourth car, not one over budget, not another model or fuel.
        for absent in ("€24,750", "€26,900", "€21,450", "€14,950", "Polo", "petrol"):
            assert absent not in text, (absent, text)

        # What the reply cited is on record: the model call's ledger row names the items.
        conv_id = conversation_workflow_id(stack.tenant_id, "waha", LEAD)
        async with stack.db.session() as session:
            rows = await usage_repo.calls_for_conversation(session, conversation_id=conv_id)
        [reply_row] = [r for r in rows if r.step == "reply"]
        assert reply_row.output is not None
        assert reply_row.output["inventory"] == ["vw-golf-18", "vw-golf-19", "vw-golf-20"]
