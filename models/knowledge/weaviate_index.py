"""The Weaviate knowledge backend: one multi-tenant collection, one Weaviate tenant per leadflow
tenant, hybrid search (BM25 + vectors) and property filters, through weaviate-client v4's async
client (REST for schema and tenants, gRPC for search, batch writes and deletes).

Objects have `kind` "document" (a passage of a document: document_id, title, text, chunk) or
"item" (one inventory item: its fields, plus `make_norm`/`model_norm` for case- and
accent-insensitive equality, and `text` = `item.describe()`). Uuids are deterministic
(`generate_uuid5` of `{tenant}:item:{key}` / `{tenant}:document:{id}:{chunk}`), so a batch write
replaces the previous copy: an upsert never duplicates.

Vectors (`vectors=`): "provider" — leadflow embeds with the tenant's model provider
(`embedder_for(tenant_id)`; None = that provider has no embeddings, so that tenant is searched by
BM25 alone); "module" — the collection is created with a Weaviate vectorizer module and queries
send only text; "none" — BM25 only.

A configured Weaviate that cannot be reached, or refuses us, raises KnowledgeBackendUnavailable
naming Weaviate and its URL; any other failure KnowledgeBackendError. Never a silent fallback."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any, Literal, cast
from urllib.parse import urlsplit

import httpx
import weaviate
from grpc import RpcError
from weaviate.classes.config import Configure, DataType, Property, Tokenization
from weaviate.classes.data import DataObject
from weaviate.classes.init import AdditionalConfig, Auth, Timeout
from weaviate.classes.query import Filter, HybridFusion, MetadataQuery, Sort
from weaviate.collections import CollectionAsync
from weaviate.collections.classes.filters import _Filters
from weaviate.exceptions import (
    InsufficientPermissionsError,
    UnexpectedStatusCodeError,
    WeaviateBaseError,
    WeaviateClosedClientError,
    WeaviateConnectionError,
    WeaviateGRPCUnavailableError,
    WeaviateStartUpError,
    WeaviateTimeoutError,
)
from weaviate.util import generate_uuid5

from models.inventory import (
    InventoryItem,
    InventoryQuery,
    plain_text,  # the one normalisation `same_text` uses
)
from models.knowledge.embeddings import Embedder
from models.knowledge.index import (
    DocumentMatch,
    IndexedDocument,
    ItemMatch,
    KnowledgeBackendError,
    KnowledgeBackendUnavailable,
)

VectorMode = Literal["provider", "module", "none"]
EmbedderFor = Callable[[str], Awaitable[Embedder | None]]
Scoped = CollectionAsync[Any, Any]

DEFAULT_COLLECTION = "LeadflowKnowledge"
DEFAULT_GRPC_PORT = 50051
VECTOR_NAME = "default"
CHUNK_SIZE = 800
WRITE_BATCH = 200  # objects per BatchObjects call: small messages, quick retries
DELETE_BATCH = 500  # ids per delete filter
QUERY_MAXIMUM_RESULTS = 10_000  # the server's cap per delete: re-run while it is reached
DOCUMENT_CANDIDATES = 4  # passages fetched per wanted document (several may share a document)
_TENANT_NAME = re.compile(r"^[A-Za-z0-9_-]{4,64}$")
_DIRECT_ID = re.compile(r"^[A-Za-z0-9_-]{1,62}$")
_UNAVAILABLE_CODES = ("UNAVAILABLE", "UNAUTHENTICATED", "PERMISSION_DENIED", "DEADLINE_EXCEEDED")


def weaviate_tenant(tenant_id: str) -> str:
    """The Weaviate tenant name of a leadflow tenant: `t_<id>` when the id is made of
    `A-Za-z0-9_-` and fits, else `h_<sha256 prefix>`. Weaviate allows `A-Za-z0-9_-`, 4 to 64
    characters; the two prefixes keep the forms from ever colliding."""
    if _DIRECT_ID.match(tenant_id):
        name = f"t_{tenant_id}"
        if len(name) >= 4:
            return name
    return "h_" + hashlib.sha256(tenant_id.encode()).hexdigest()[:40]


def chunk_text(text: str, size: int = CHUNK_SIZE) -> list[str]:
    """Passages of at most about `size` characters, cut at paragraph, then sentence, then word
    boundaries (a passage is what a hit's snippet shows and what one vector stands for)."""
    pieces: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        if len(paragraph) <= size:
            pieces.append(paragraph)
            continue
        for sentence in re.split(r"(?<=[.!?])\s+", paragraph):
            while len(sentence) > size:
                cut = sentence.rfind(" ", 0, size)
                cut = cut if cut > size // 2 else size
                pieces.append(sentence[:cut].strip())
                sentence = sentence[cut:].strip()
            if sentence:
                pieces.append(sentence)
    chunks: list[str] = []
    for piece in pieces:
        if chunks and len(chunks[-1]) + 2 + len(piece) <= size:
            chunks[-1] = f"{chunks[-1]}\n\n{piece}"
        else:
            chunks.append(piece)
    return chunks or [""]


def _properties() -> list[Property]:
    # FIELD tokenization: exact equality for ids and normalised values; WORD for what BM25 reads.
    def field(name: str) -> Property:
        return Property(
            name=name,
            data_type=DataType.TEXT,
            tokenization=Tokenization.FIELD,
            index_searchable=False,
            skip_vectorization=True,
        )

    def words(name: str, *, vectorize: bool = False) -> Property:
        return Property(
            name=name,
            data_type=DataType.TEXT,
            tokenization=Tokenization.WORD,
            skip_vectorization=not vectorize,
            vectorize_property_name=False,
        )

    def number(name: str, data_type: DataType) -> Property:
        return Property(name=name, data_type=data_type, skip_vectorization=True)

    return [
        field("kind"),
        field("document_id"),
        words("title", vectorize=True),
        words("text", vectorize=True),
        number("chunk", DataType.INT),
        field("key"),
        words("make"),
        words("model"),
        words("variant"),
        field("make_norm"),
        field("model_norm"),
        number("year", DataType.INT),
        number("price", DataType.NUMBER),
        field("currency"),
        field("fuel"),
        field("transmission"),
        number("mileage", DataType.INT),
        words("colour"),
        field("url"),
        field("image_url"),
        number("available", DataType.BOOL),
    ]


def _item_properties(item: InventoryItem) -> dict[str, Any]:
    props: dict[str, Any] = {
        "kind": "item",
        "key": item.key,
        "title": item.title(),
        "text": item.describe(),
        "make": item.make,
        "model": item.model,
        "variant": item.variant,
        "make_norm": plain_text(item.make),
        "model_norm": plain_text(item.model),
        "currency": item.currency,
        "colour": item.colour,
        "url": item.url,
        "image_url": item.image_url,
        "available": item.available,
    }
    # Absent facts stay absent (null): a range filter then excludes them, as the reference does.
    if item.year is not None:
        props["year"] = item.year
    if item.price is not None:
        props["price"] = float(item.price)  # `number` property: the filter value is a float too
    if item.fuel is not None:
        props["fuel"] = item.fuel.value
    if item.transmission is not None:
        props["transmission"] = item.transmission.value
    if item.mileage is not None:
        props["mileage"] = item.mileage
    return props


def _money(value: Decimal) -> float:
    return float(value)


class WeaviateIndex:
    """`KnowledgeIndex` on Weaviate. The client connects on first use (and again after a
    failure); `close()` releases it. One instance serves every tenant; it belongs to one event
    loop (the gRPC channel does)."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        grpc_port: int | None = None,
        collection: str = DEFAULT_COLLECTION,
        vectors: VectorMode = "provider",
        vectorizer_module: str = "text2vec-openai",
        vectorizer_options: Mapping[str, Any] | None = None,
        alpha: float = 0.5,
        embedder_for: EmbedderFor | None = None,
        headers: Mapping[str, str] | None = None,
        request_timeout: float = 30.0,
    ) -> None:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"Weaviate URL must be http(s)://host[:port], not {url!r}")
        if parts.path not in ("", "/") or parts.query:
            # The client builds every path from the host and port: a prefix would be dropped.
            raise ValueError(f"Weaviate URL must have no path or query, not {url!r}")
        if vectors not in ("provider", "module", "none"):
            raise ValueError(f"vectors must be 'provider', 'module' or 'none', not {vectors!r}")
        if vectors == "provider" and embedder_for is None:
            raise ValueError("vectors='provider' needs embedder_for")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError("alpha must be between 0 and 1")
        self.url = url.strip().rstrip("/")
        self._secure = parts.scheme == "https"
        self._host = parts.hostname
        self._http_port = parts.port or (443 if self._secure else 80)
        self._grpc_port = grpc_port or DEFAULT_GRPC_PORT
        self._api_key = api_key
        self.collection_name = collection[:1].upper() + collection[1:]
        self.vectors: VectorMode = vectors
        self.vectorizer_module = vectorizer_module
        self._vectorizer_options = dict(vectorizer_options or {})
        self.alpha = alpha
        self._embedder_for = embedder_for
        self._headers = dict(headers or {})
        self._request_timeout = request_timeout
        self._client: weaviate.WeaviateAsyncClient | None = None
        self._connect_lock = asyncio.Lock()
        self._collection_ready = False
        self._tenants: set[str] = set()

    @property
    def name(self) -> str:
        return "weaviate"

    def __repr__(self) -> str:
        return f"WeaviateIndex({self.url!r}, collection={self.collection_name!r})"

    # -- errors --------------------------------------------------------------------------------
    def _where(self) -> str:
        return f"Weaviate at {self.url} (gRPC port {self._grpc_port})"

    def _forget_on(self, text: str) -> None:
        """A tenant or the collection removed behind our back (an operator, another
        deployment): forget what is cached so the next write creates them again. The texts are
        real servers' (weaviate/weaviate#4931, weaviate/recipes#69, weaviate/weaviate#5745)."""
        if "tenant not found" in text:
            self._tenants.clear()
        if "could not find class" in text or "not present in schema" in text:
            self._collection_ready = False
            self._tenants.clear()

    def _translate(self, action: str, exc: BaseException) -> KnowledgeBackendError:
        text = str(exc).strip() or type(exc).__name__
        self._forget_on(text)
        message = f"{self._where()}: {action} failed: {text}"
        if isinstance(
            exc,
            WeaviateConnectionError
            | WeaviateStartUpError
            | WeaviateGRPCUnavailableError
            | WeaviateTimeoutError
            | WeaviateClosedClientError
            | InsufficientPermissionsError
            | TimeoutError
            | OSError
            | httpx.TransportError,
        ):
            return KnowledgeBackendUnavailable(message)
        if isinstance(exc, UnexpectedStatusCodeError) and exc.status_code in (401, 403, 503):
            return KnowledgeBackendUnavailable(message)
        if any(code in text for code in _UNAVAILABLE_CODES):
            # gRPC failures reach us as WeaviateQueryError/WeaviateBatchError text.
            return KnowledgeBackendUnavailable(message)
        return KnowledgeBackendError(message)

    @asynccontextmanager
    async def _calling(self, action: str) -> AsyncIterator[None]:
        """Every client call runs in here: bounded in time (the client retries gRPC UNAVAILABLE
        with 1, 2, 4... s of backoff, about a minute in all) and its errors translated."""
        try:
            async with asyncio.timeout(self._request_timeout):
                yield
        except KnowledgeBackendError:
            raise
        except (WeaviateBaseError, TimeoutError, OSError, httpx.HTTPError, RpcError) as exc:
            if isinstance(exc, TimeoutError) and not str(exc):
                exc = TimeoutError(f"no answer within {self._request_timeout:g} s")
            raise self._translate(action, exc) from exc

    # -- connection ----------------------------------------------------------------------------
    async def _connected(self) -> weaviate.WeaviateAsyncClient:
        async with self._connect_lock:
            if self._client is not None and self._client.is_connected():
                return self._client
            client = weaviate.use_async_with_custom(
                http_host=self._host,
                http_port=self._http_port,
                http_secure=self._secure,
                grpc_host=self._host,
                grpc_port=self._grpc_port,
                grpc_secure=self._secure,
                headers=self._headers or None,
                additional_config=AdditionalConfig(
                    timeout=Timeout(
                        init=10, query=self._request_timeout, insert=self._request_timeout
                    )
                ),
                auth_credentials=Auth.api_key(self._api_key) if self._api_key else None,
                # The client's own init checks also ask pypi.org for its newest version on every
                # connect; a worker must not phone out. The checks that matter (REST meta is
                # always read; HTTP live + the gRPC health check) are made below instead.
                skip_init_checks=True,
            )
            try:
                async with self._calling("connecting"):
                    await client.connect()
                    if not await client.is_live():
                        raise KnowledgeBackendUnavailable(
                            f"{self._where()}: not live (HTTP /v1/.well-known/live or the "
                            "gRPC health check failed)"
                        )
            except BaseException:
                await client.close()
                raise
            self._client = client
            return client

    async def check(self) -> None:
        client = await self._connected()
        async with self._calling("the readiness check"):
            if not await client.is_ready():
                raise KnowledgeBackendUnavailable(
                    f"{self._where()}: not ready (GET /v1/.well-known/ready)"
                )
            if self.vectors == "module":
                meta = await client.get_meta()
                modules = cast(Mapping[str, Any], meta.get("modules") or {})
                if self.vectorizer_module not in modules:
                    raise KnowledgeBackendUnavailable(
                        f"{self._where()}: the vectorizer module {self.vectorizer_module} is not "
                        f"enabled (modules: {', '.join(sorted(modules)) or 'none'})"
                    )

    async def close(self) -> None:
        client, self._client = self._client, None
        self._collection_ready = False
        self._tenants.clear()
        if client is not None:
            await client.close()
        # The embedders' HTTP pools, when the callable owns any (TenantEmbedders does).
        close_embedders = getattr(self._embedder_for, "close", None)
        if close_embedders is not None:
            await close_embedders()

    # -- schema and tenants --------------------------------------------------------------------
    def _vector_config(self) -> Any:
        if self.vectors == "module":
            factory_name = self.vectorizer_module.replace("-", "_")
            factory = getattr(Configure.Vectors, factory_name, None)
            if factory is None:
                raise KnowledgeBackendError(
                    f"weaviate-client has no vectorizer module named {self.vectorizer_module}"
                )
            return factory(
                name=VECTOR_NAME,
                source_properties=["title", "text"],
                **self._vectorizer_options,
            )
        return Configure.Vectors.self_provided(name=VECTOR_NAME)

    async def _collection(self) -> Scoped:
        client = await self._connected()
        if not self._collection_ready:
            async with self._calling(f"creating collection {self.collection_name}"):
                if not await client.collections.exists(self.collection_name):
                    try:
                        await client.collections.create(
                            self.collection_name,
                            properties=_properties(),
                            vector_config=self._vector_config(),
                            multi_tenancy_config=Configure.multi_tenancy(enabled=True),
                            # is_none filters (items without a price) need the null state.
                            inverted_index_config=Configure.inverted_index(index_null_state=True),
                        )
                    except UnexpectedStatusCodeError:
                        # Another worker may have created it meanwhile: that is success.
                        if not await client.collections.exists(self.collection_name):
                            raise
                config = await client.collections.use(self.collection_name).config.get()
            self._check_collection(config)
            self._collection_ready = True
        return client.collections.use(self.collection_name)

    def _check_collection(self, config: Any) -> None:
        """A collection made by someone else (another deployment, another `vectors` mode, by
        hand) must still fit what this backend sends, or every call would fail obscurely."""
        problems: list[str] = []
        if not config.multi_tenancy_config.enabled:
            problems.append("multi-tenancy is disabled")
        if not config.inverted_index_config.index_null_state:
            problems.append("indexNullState is off (needed to filter items without a price)")
        named = (config.vector_config or {}).get(VECTOR_NAME)
        expected = self.vectorizer_module if self.vectors == "module" else "none"
        if named is None:
            problems.append(f"it has no vector named {VECTOR_NAME!r}")
        else:
            vectorizer = named.vectorizer.vectorizer
            found = str(getattr(vectorizer, "value", vectorizer))
            if found != expected:
                problems.append(
                    f"its vector {VECTOR_NAME!r} is made by {found!r}, not {expected!r} "
                    f"(vectors={self.vectors!r})"
                )
        if problems:
            raise KnowledgeBackendError(
                f"{self._where()}: collection {self.collection_name} does not fit this "
                f"deployment: {'; '.join(problems)}. Use another collection name, or delete it "
                "and re-ingest."
            )

    async def _tenant(self, tenant_id: str, *, create: bool) -> Scoped | None:
        """The tenant-scoped collection; None when the tenant does not exist and `create` is
        False (a read of a tenant that never wrote finds nothing)."""
        collection = await self._collection()
        name = weaviate_tenant(tenant_id)
        if name not in self._tenants:
            async with self._calling(f"looking up tenant {name}"):
                exists = await collection.tenants.exists(name)
                if not exists and not create:
                    return None
                if not exists:
                    try:
                        await collection.tenants.create([name])
                    except UnexpectedStatusCodeError:
                        if not await collection.tenants.exists(name):
                            raise
            self._tenants.add(name)
        return collection.with_tenant(name)

    async def drop_tenant(self, tenant_id: str) -> None:
        """Remove the tenant's Weaviate tenant and everything indexed for it: for a tenant that
        is erased, or whose embedding model changed (a shard's vectors have one dimension, so
        the new model's vectors need a fresh shard; re-upsert afterwards)."""
        collection = await self._collection()
        name = weaviate_tenant(tenant_id)
        async with self._calling(f"removing tenant {name}"):
            await collection.tenants.remove([name])
        self._tenants.discard(name)

    # -- vectors -------------------------------------------------------------------------------
    async def _embedder(self, tenant_id: str) -> Embedder | None:
        if self.vectors != "provider" or self._embedder_for is None:
            return None
        return await self._embedder_for(tenant_id)

    @staticmethod
    def _vector_text(props: Mapping[str, Any]) -> str:
        return f"{props.get('title', '')}\n{props.get('text', '')}".strip()

    # -- writes --------------------------------------------------------------------------------
    async def _write(self, tenant_id: str, objects: list[tuple[str, dict[str, Any]]]) -> None:
        if not objects:
            return
        scoped = await self._tenant(tenant_id, create=True)
        assert scoped is not None  # create=True never answers None
        embedder = await self._embedder(tenant_id)
        for start in range(0, len(objects), WRITE_BATCH):
            batch = objects[start : start + WRITE_BATCH]
            vectors: list[list[float]] | None = None
            if embedder is not None:
                vectors = await embedder.embed([self._vector_text(p) for _, p in batch])
            data = [
                DataObject(
                    properties=props,
                    uuid=uuid,
                    vector={VECTOR_NAME: vectors[i]} if vectors is not None else None,
                )
                for i, (uuid, props) in enumerate(batch)
            ]
            async with self._calling(f"writing {len(data)} objects"):
                result = await scoped.data.insert_many(data)
            if result.errors:
                sample = "; ".join(sorted({e.message for e in result.errors.values()})[:3])
                self._forget_on(sample)
                raise KnowledgeBackendError(
                    f"{self._where()}: {len(result.errors)} of {len(data)} objects were not "
                    f"written: {sample}"
                )

    async def _delete(self, tenant_id: str, where: _Filters, action: str) -> None:
        scoped = await self._tenant(tenant_id, create=False)
        if scoped is None:
            return
        while True:
            async with self._calling(action):
                result = await scoped.data.delete_many(where=where)
            if result.failed:
                raise KnowledgeBackendError(
                    f"{self._where()}: {action}: {result.failed} of {result.matches} failed"
                )
            if result.matches < QUERY_MAXIMUM_RESULTS:
                return

    def _uuid(self, tenant_id: str, *parts: object) -> str:
        return generate_uuid5(":".join([weaviate_tenant(tenant_id), *map(str, parts)]))

    async def upsert_documents(self, tenant_id: str, documents: Sequence[IndexedDocument]) -> None:
        objects: list[tuple[str, dict[str, Any]]] = []
        counts: dict[str, int] = {}
        for document in documents:
            chunks = chunk_text(document.body)
            counts[document.document_id] = len(chunks)
            for index, chunk in enumerate(chunks):
                uuid = self._uuid(tenant_id, "document", document.document_id, index)
                props = {
                    "kind": "document",
                    "document_id": document.document_id,
                    "title": document.title,
                    "text": chunk,
                    "chunk": index,
                }
                objects.append((uuid, props))
        await self._write(tenant_id, objects)
        # Passages beyond the new length belong to an older, longer version: remove them (after
        # the write, so a search never finds the document missing).
        for document_id, count in counts.items():
            await self._delete(
                tenant_id,
                Filter.all_of(
                    [
                        Filter.by_property("kind").equal("document"),
                        Filter.by_property("document_id").equal(document_id),
                        Filter.by_property("chunk").greater_or_equal(count),
                    ]
                ),
                f"deleting stale passages of document {document_id}",
            )

    async def delete_documents(self, tenant_id: str, document_ids: Sequence[str]) -> None:
        ids = list(dict.fromkeys(document_ids))
        for start in range(0, len(ids), DELETE_BATCH):
            await self._delete(
                tenant_id,
                Filter.all_of(
                    [
                        Filter.by_property("kind").equal("document"),
                        Filter.by_property("document_id").contains_any(
                            ids[start : start + DELETE_BATCH]
                        ),
                    ]
                ),
                "deleting documents",
            )

    async def upsert_items(self, tenant_id: str, items: Sequence[InventoryItem]) -> None:
        latest = {item.key: item for item in items}  # the last copy of a key wins
        await self._write(
            tenant_id,
            [
                (self._uuid(tenant_id, "item", key), _item_properties(item))
                for key, item in latest.items()
            ],
        )

    async def delete_items(self, tenant_id: str, keys: Sequence[str]) -> None:
        uuids = [self._uuid(tenant_id, "item", key) for key in dict.fromkeys(keys)]
        for start in range(0, len(uuids), DELETE_BATCH):
            await self._delete(
                tenant_id,
                Filter.by_id().contains_any(uuids[start : start + DELETE_BATCH]),
                "deleting items",
            )

    # -- reads ---------------------------------------------------------------------------------
    async def _hybrid(
        self,
        scoped: Scoped,
        tenant_id: str,
        text: str,
        filters: _Filters,
        limit: int,
        action: str,
    ) -> list[Any]:
        embedder = await self._embedder(tenant_id)
        vector: list[float] | None = None
        if embedder is not None:
            vector = (await embedder.embed([text]))[0]
        # Alpha is always sent: the server default (0.75) and the client's (0.7) differ by
        # version. Without any vector source the search is BM25 alone (alpha 0).
        alpha = self.alpha if (vector is not None or self.vectors == "module") else 0.0
        async with self._calling(action):
            response = await scoped.query.hybrid(
                query=text,
                alpha=alpha,
                vector=vector,
                target_vector=VECTOR_NAME if alpha > 0 else None,
                query_properties=["title", "text"],
                fusion_type=HybridFusion.RELATIVE_SCORE,
                filters=filters,
                limit=limit,
                return_metadata=MetadataQuery(score=True),
                return_properties=["key", "document_id", "text"],
            )
        return list(response.objects)

    async def search_documents(self, tenant_id: str, query: str, limit: int) -> list[DocumentMatch]:
        if not query.strip() or limit < 1:
            return []
        scoped = await self._tenant(tenant_id, create=False)
        if scoped is None:
            return []
        hits = await self._hybrid(
            scoped,
            tenant_id,
            query,
            Filter.by_property("kind").equal("document"),
            limit * DOCUMENT_CANDIDATES,
            "searching documents",
        )
        best: dict[str, DocumentMatch] = {}
        for hit in hits:  # best first: the first passage of a document is its best
            document_id = str(hit.properties.get("document_id") or "")
            if document_id and document_id not in best:
                best[document_id] = DocumentMatch(
                    document_id=document_id,
                    snippet=str(hit.properties.get("text") or ""),
                    score=float(hit.metadata.score or 0.0),
                )
        return list(best.values())[:limit]

    @staticmethod
    def _item_filters(query: InventoryQuery) -> list[_Filters]:
        """`InventoryQuery.matches` as Weaviate filters (tested against it)."""
        filters: list[_Filters] = [Filter.by_property("kind").equal("item")]
        if query.available_only:
            filters.append(Filter.by_property("available").equal(True))
        if query.make is not None:
            filters.append(Filter.by_property("make_norm").equal(plain_text(query.make)))
        if query.model is not None:
            filters.append(Filter.by_property("model_norm").equal(plain_text(query.model)))
        if query.fuel is not None:
            filters.append(Filter.by_property("fuel").equal(query.fuel.value))
        if query.transmission is not None:
            filters.append(Filter.by_property("transmission").equal(query.transmission.value))
        if query.min_price is not None:
            filters.append(Filter.by_property("price").greater_or_equal(_money(query.min_price)))
        if query.max_price is not None:
            filters.append(Filter.by_property("price").less_or_equal(_money(query.max_price)))
        if query.min_year is not None:
            filters.append(Filter.by_property("year").greater_or_equal(query.min_year))
        if query.max_mileage is not None:
            filters.append(Filter.by_property("mileage").less_or_equal(query.max_mileage))
        return filters

    async def _by_price(
        self, scoped: Scoped, filters: list[_Filters], limit: int, exclude: set[str]
    ) -> list[ItemMatch]:
        """Items passing the filters, cheapest first, items without a price last (two queries,
        so the order does not depend on where the server sorts nulls)."""
        found: list[ItemMatch] = []
        for priced in (True, False):
            remaining = limit - len(found)
            if remaining <= 0:
                break
            # Ask for enough to skip the keys already answered by the text search.
            wanted = remaining + len(exclude)
            where = Filter.all_of([*filters, Filter.by_property("price").is_none(not priced)])
            sort = (
                Sort.by_property("price", ascending=True).by_property("key", ascending=True)
                if priced
                else Sort.by_property("key", ascending=True)
            )
            async with self._calling("searching items"):
                response = await scoped.query.fetch_objects(
                    filters=where, sort=sort, limit=wanted, return_properties=["key"]
                )
            for obj in response.objects:
                key = str(obj.properties.get("key") or "")
                if key and key not in exclude and len(found) < limit:
                    found.append(ItemMatch(key=key, score=0.0))
                    exclude.add(key)
        return found

    async def search_items(self, tenant_id: str, query: InventoryQuery) -> list[ItemMatch]:
        scoped = await self._tenant(tenant_id, create=False)
        if scoped is None:
            return []
        filters = self._item_filters(query)
        matches: list[ItemMatch] = []
        if query.text.strip():
            hits = await self._hybrid(
                scoped,
                tenant_id,
                query.text,
                Filter.all_of(filters),
                query.limit,
                "searching items",
            )
            for hit in hits:
                key = str(hit.properties.get("key") or "")
                if key:
                    matches.append(ItemMatch(key=key, score=float(hit.metadata.score or 0.0)))
        if len(matches) < query.limit:
            # Items that pass every filter but share no word with the text (BM25 alone finds
            # none of them) still count: after the text's hits, cheapest first.
            seen = {m.key for m in matches}
            matches.extend(await self._by_price(scoped, filters, query.limit - len(matches), seen))
        return matches[: query.limit]
