"""OpenAIEmbedder against the fake OpenAI embeddings endpoint on loopback, through the SSRF
guard."""

from __future__ import annotations

import pytest

from models.knowledge.embeddings import EmbeddingError, OpenAIEmbedder
from models.knowledge.index import KnowledgeBackendUnavailable
from tests.fakes.llm import FakeOpenAI, hashed_embedding


async def test_texts_are_embedded_in_batches_and_in_order(fake_embeddings: FakeOpenAI) -> None:
    embedder = OpenAIEmbedder(
        fake_embeddings.base_url,
        api_key="sk-embed",
        model="text-embedding-3-small",
        batch_size=2,
        allowlist=["127.0.0.1"],
    )
    try:
        texts = ["golf diesel", "opening hours", "warranty", "golf petrol", "financing"]
        vectors = await embedder.embed(texts)
    finally:
        await embedder.close()
    assert vectors == [pytest.approx(hashed_embedding(t)) for t in texts]
    bodies = [r.json for r in fake_embeddings.embedding_requests]
    assert [b["input"] for b in bodies] == [texts[0:2], texts[2:4], texts[4:5]]
    assert {b["model"] for b in bodies} == {"text-embedding-3-small"}
    assert fake_embeddings.requests == []  # the chat endpoint's record is untouched
    # Similar texts are nearer than unrelated ones: what hybrid ranking relies on.
    golf_diesel, _, _, golf_petrol, financing = vectors
    similar = sum(a * b for a, b in zip(golf_diesel, golf_petrol, strict=True))
    unrelated = sum(a * b for a, b in zip(golf_diesel, financing, strict=True))
    assert similar > unrelated


async def test_a_refused_key_is_an_embedding_error(fake_embeddings: FakeOpenAI) -> None:
    embedder = OpenAIEmbedder(fake_embeddings.base_url, api_key="wrong", allowlist=["127.0.0.1"])
    try:
        with pytest.raises(EmbeddingError, match="answered 401"):
            await embedder.embed(["x"])
    finally:
        await embedder.close()


async def test_a_loopback_endpoint_is_refused_without_the_allowlist(
    fake_embeddings: FakeOpenAI,
) -> None:
    embedder = OpenAIEmbedder(fake_embeddings.base_url, api_key="sk-embed")
    try:
        with pytest.raises(EmbeddingError, match="refused"):
            await embedder.embed(["x"])
    finally:
        await embedder.close()
    assert fake_embeddings.embedding_requests == []


async def test_an_unreachable_endpoint_is_unavailable() -> None:
    with FakeOpenAI() as gone:
        url = gone.base_url
    embedder = OpenAIEmbedder(url, api_key="sk", allowlist=["127.0.0.1"])
    try:
        with pytest.raises(KnowledgeBackendUnavailable, match="cannot be reached"):
            await embedder.embed(["x"])
    finally:
        await embedder.close()
