"""The Weaviate backend as the settings configure it: where it is, how vectors are made, and
whose embeddings API each tenant's vectors come from.

With LEADFLOW_WEAVIATE_VECTORS=provider a tenant's vectors come from the first OpenAI-style link
of its analysis chain (openai, or an openai_compatible server such as Ollama or vLLM), with
LEADFLOW_WEAVIATE_EMBEDDING_MODEL; a tenant whose chain has none (Anthropic has no embeddings
API; the offline rules have no model) is searched by BM25 alone. The resolution is cached for a
minute per tenant, so a changed key or provider applies within it."""

from __future__ import annotations

import time

from models.db import Database
from models.knowledge.embeddings import Embedder, OpenAIEmbedder
from models.knowledge.weaviate_index import WeaviateIndex
from models.llm_config import ResolvedLink, resolve_chain
from models.repo import tenants as tenant_repo
from models.settings import Settings

EMBEDDING_PROVIDERS = ("openai", "openai_compatible")
OPENAI_API = "https://api.openai.com/v1"
CACHE_SECONDS = 60.0


class TenantEmbedders:
    """`embedder_for(tenant_id)` of the Weaviate index: one embedder per endpoint, key and
    model, shared by the tenants that use it."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self._settings = settings
        self._db = db
        self._links: dict[str, tuple[float, ResolvedLink | None]] = {}
        self._embedders: dict[tuple[str, str | None, str], OpenAIEmbedder] = {}

    async def _link(self, tenant_id: str) -> ResolvedLink | None:
        now = time.monotonic()
        cached = self._links.get(tenant_id)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        async with self._db.session() as session:
            tenant = await tenant_repo.get_tenant(session, tenant_id=tenant_id)
        tenant_llm = None
        if tenant is not None:
            secret = self._settings.secret_key.get_secret_value()
            tenant_llm = tenant_repo.tenant_settings(tenant, secret_key=secret).llm
        links, _problems = resolve_chain(
            "analysis", self._settings, tenant_llm, set(EMBEDDING_PROVIDERS)
        )
        link = links[0] if links else None
        self._links[tenant_id] = (now, link)
        return link

    async def __call__(self, tenant_id: str) -> Embedder | None:
        link = await self._link(tenant_id)
        if link is None:
            return None
        base_url = link.base_url or OPENAI_API
        model = self._settings.weaviate_embedding_model
        key = (base_url, link.api_key, model)
        embedder = self._embedders.get(key)
        if embedder is None:
            embedder = OpenAIEmbedder(
                base_url,
                api_key=link.api_key,
                model=model,
                allowlist=self._settings.ssrf_allowlist,
            )
            self._embedders[key] = embedder
        return embedder

    async def close(self) -> None:
        embedders, self._embedders = list(self._embedders.values()), {}
        for embedder in embedders:
            await embedder.close()


def weaviate_index(settings: Settings, db: Database) -> WeaviateIndex:
    if not settings.weaviate_url:
        raise ValueError("LEADFLOW_WEAVIATE_URL is not set")
    api_key = settings.weaviate_api_key.get_secret_value() if settings.weaviate_api_key else None
    return WeaviateIndex(
        settings.weaviate_url,
        api_key=api_key,
        grpc_port=settings.weaviate_grpc_port,
        collection=settings.weaviate_collection,
        vectors=settings.weaviate_vectors,
        vectorizer_module=settings.weaviate_vectorizer,
        alpha=settings.weaviate_alpha,
        embedder_for=TenantEmbedders(settings, db)
        if settings.weaviate_vectors == "provider"
        else None,
    )
