"""End to end on the Weaviate backend: the same WhatsApp question as
test_inventory_reply_e2e.py, with LEADFLOW_WEAVIATE_URL set. The API, the worker and the test
reach a fake Weaviate through the real weaviate-client (REST + gRPC on loopback); the stock's
vectors come from the tenant's provider's embeddings endpoint (a fake OpenAI-compatible server
that also answers the turn's model calls). The reply must cite the same cars and prices."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from temporalio.client import Client

from models.knowledge.service import KnowledgeService, build_index
from models.settings import Settings
from models.tenant import TenantSettings
from tests.fakes.llm import FakeOpenAI
from tests.fakes.llm_brain import rules_brain
from tests.fakes.waha import FakeWaha
from tests.fakes.weaviate import FakeWeaviate
from tests.stack import live_stack
from tests.workflows.test_inventory_reply_e2e import LEAD, SHOP, STOCK


@pytest.fixture
def weaviate() -> Iterator[FakeWeaviate]:
    with FakeWeaviate() as fake:
        yield fake


@pytest.fixture
def model() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key=None, brain=rules_brain) as fake:
        yield fake


async def test_the_golf_question_is_answered_from_weaviate(
    temporal_client: Client,
    settings_factory: Any,
    sqlite_url: str,
    fake_waha: FakeWaha,
    weaviate: FakeWeaviate,
    model: FakeOpenAI,
) -> None:
    settings: Settings = settings_factory(
        sqlite_url,
        llm_provider="openai_compatible",
        openai_compatible_base_url=model.base_url,
        llm_model="fake-model",
        weaviate_url=weaviate.url,
        weaviate_grpc_port=weaviate.grpc_port,
        weaviate_vectors="provider",
        # The tenant's provider is on loopback here; operators allow such hosts explicitly.
        ssrf_allowlist=["127.0.0.1"],
    )
    async with live_stack(
        temporal_client,
        settings,
        tenant_settings=TenantSettings(playbook="car_dealership", waha=fake_waha.settings()),
    ) as stack:
        knowledge = KnowledgeService(stack.db, build_index(settings, stack.db))
        try:
            assert knowledge.backend == "weaviate"
            diff = await knowledge.apply_items(tenant_id=stack.tenant_id, items=STOCK, replace=True)
            assert diff.added == len(STOCK)
            # The stock went to Weaviate as objects with vectors from the embeddings API.
            assert model.embedding_requests

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
            for key, price in (
                ("vw-golf-18", "€16,450"),
                ("vw-golf-19", "€18,950"),
                ("vw-golf-20", "€21,990"),
            ):
                assert price in text and f"{SHOP}/{key}" in text, text
            for absent in ("€24,750", "€26,900", "€21,450", "€14,950", "Polo"):
                assert absent not in text, (absent, text)
            # The worker searched Weaviate (gRPC Search), not the database.
            assert weaviate.calls("Search")

            # What the operator's API answers is what the agent found.
            listed = await stack.http.get(
                "/api/v1/inventory",
                params={
                    "make": "Volkswagen",
                    "model": "Golf",
                    "fuel": "diesel",
                    "max_price": "25000",
                },
                headers=stack.auth,
            )
            assert listed.status_code == 200, listed.text
            body = listed.json()
            assert body["backend"] == "weaviate"
            assert [hit["item"]["key"] for hit in body["items"]][:3] == [
                "vw-golf-18",
                "vw-golf-19",
                "vw-golf-20",
            ]
        finally:
            await knowledge.index.close()
