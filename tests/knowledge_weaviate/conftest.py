"""Fixtures for the Weaviate backend tests: a fake Weaviate (REST + gRPC on loopback), the fake
OpenAI embeddings endpoint, and a factory of `WeaviateIndex` instances closed after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from models.knowledge.embeddings import Embedder, OpenAIEmbedder
from models.knowledge.weaviate_index import WeaviateIndex
from tests.fakes.llm import FakeOpenAI
from tests.fakes.weaviate import FakeWeaviate

IndexFactory = Callable[..., WeaviateIndex]


@pytest.fixture
def fake_weaviate() -> Iterator[FakeWeaviate]:
    with FakeWeaviate() as fake:
        yield fake


@pytest.fixture
def fake_embeddings() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key="sk-embed") as fake:
        yield fake


@pytest.fixture
async def embedder(fake_embeddings: FakeOpenAI) -> AsyncIterator[OpenAIEmbedder]:
    # The guard is on: loopback is allowlisted here, as an operator would for a local provider.
    embedder = OpenAIEmbedder(
        fake_embeddings.base_url, api_key="sk-embed", batch_size=16, allowlist=["127.0.0.1"]
    )
    yield embedder
    await embedder.close()


@pytest.fixture
async def make_index(
    fake_weaviate: FakeWeaviate, embedder: OpenAIEmbedder
) -> AsyncIterator[IndexFactory]:
    """`make_index(**overrides)`: a WeaviateIndex on `fake_weaviate` (provider vectors from the
    fake embeddings endpoint unless overridden)."""
    made: list[WeaviateIndex] = []

    async def embedder_for(tenant_id: str) -> Embedder | None:
        return embedder

    def factory(**overrides: Any) -> WeaviateIndex:
        fake: FakeWeaviate = overrides.pop("fake", fake_weaviate)
        options: dict[str, Any] = {
            "grpc_port": fake.grpc_port,
            "embedder_for": embedder_for,
            "request_timeout": 20.0,
        }
        options.update(overrides)
        url = options.pop("url", fake.url)
        index = WeaviateIndex(url, **options)
        made.append(index)
        return index

    yield factory
    for index in made:
        await index.close()
