"""WeaviateIndex end to end: the real weaviate-client (async) against the fake Weaviate over real
REST and gRPC on loopback, with provider vectors from the fake OpenAI embeddings endpoint."""

from __future__ import annotations

import random
import re
import socket
from decimal import Decimal
from typing import Any

import grpc
import pytest
import weaviate

from models.inventory import Fuel, InventoryItem, InventoryQuery, Transmission
from models.knowledge.embeddings import Embedder, OpenAIEmbedder
from models.knowledge.index import (
    IndexedDocument,
    KnowledgeBackendError,
    KnowledgeBackendUnavailable,
)
from models.knowledge.weaviate_index import WeaviateIndex, chunk_text, weaviate_tenant
from tests.fakes.llm import FakeOpenAI, hashed_embedding
from tests.fakes.weaviate import FakeWeaviate
from tests.knowledge_weaviate.conftest import IndexFactory

COLLECTION = "LeadflowKnowledge"


def car(key: str, make: str = "Volkswagen", model: str = "Golf", **fields: Any) -> InventoryItem:
    return InventoryItem(key=key, make=make, model=model, **fields)


def inventory(count: int = 60, seed: int = 7) -> list[InventoryItem]:
    """A varied stock: makes with accents and odd case, missing prices/years/mileages, sold cars."""
    rng = random.Random(seed)
    models = {
        "Volkswagen": ["Golf", "Polo", "Passat"],
        "Škoda": ["Octavia", "Fabia"],
        "BMW": ["3 Series", "X1"],
        "peugeot": ["208", "3008"],
        "Toyota": ["Corolla", "Yaris"],
    }
    items = []
    for i in range(count):
        make = rng.choice(list(models))
        items.append(
            InventoryItem(
                key=f"car-{i:03d}",
                make=make,
                model=rng.choice(models[make]),
                variant=rng.choice(["", "1.6 TDI", "GTI", "Hybrid Comfort"]),
                year=rng.choice([None, 2015, 2018, 2019, 2021, 2023]),
                price=rng.choice(
                    [
                        None,
                        Decimal("9999.99"),
                        *[Decimal(p) for p in (14500, 19990, 22000, 24999, 25000, 31000)],
                    ]
                ),
                fuel=rng.choice([None, *Fuel]),
                transmission=rng.choice([None, *Transmission]),
                mileage=rng.choice([None, 0, 12000, 45000, 90000, 150000]),
                colour=rng.choice(["", "black", "white", "red"]),
                url=f"https://dealer.example/cars/{i}",
                available=rng.random() > 0.15,
            )
        )
    return items


def reference(items: list[InventoryItem], query: InventoryQuery) -> list[str]:
    """The reference answer without text: `matches`, cheapest first, no price last, key order."""
    hits = [i for i in items if query.matches(i)]
    hits.sort(key=lambda i: (i.price is None, i.price or 0, i.key))
    return [i.key for i in hits][: query.limit]


# -- mapping and chunking ----------------------------------------------------------------------
def test_tenant_names_are_valid_and_distinct() -> None:
    assert weaviate_tenant("acme") == "t_acme"
    assert weaviate_tenant("ab") == "t_ab"
    assert weaviate_tenant("a").startswith("h_")  # "t_a" would be under 4 characters
    odd = ["ténant", "a b", "x" * 80, "", "acme/../b"]
    names = [weaviate_tenant(t) for t in odd]
    for name in [weaviate_tenant("acme"), *names]:
        assert 4 <= len(name) <= 64
        assert all(c.isascii() and (c.isalnum() or c in "_-") for c in name)
    assert len(set(names)) == len(names)
    assert all(n.startswith("h_") for n in names)


def test_chunks_cut_at_paragraphs_and_sentences() -> None:
    paragraph = "Our warranty covers the engine. " * 40  # ~1280 characters, one paragraph
    chunks = chunk_text(f"Opening hours.\n\n{paragraph}\n\nCall us.")
    assert all(len(c) <= 800 for c in chunks)
    assert chunks[0].startswith("Opening hours.")
    assert "".join(chunks).count("Our warranty covers the engine.") == 40
    assert chunk_text("") == [""]


# -- creation on demand ------------------------------------------------------------------------
async def test_collection_and_tenant_are_created_on_first_write_once(
    make_index: IndexFactory, fake_weaviate: FakeWeaviate
) -> None:
    index = make_index()
    await index.check()
    assert fake_weaviate.collection(COLLECTION) is None  # nothing before the first write
    assert await index.search_items("acme", InventoryQuery()) == []  # a read creates nothing
    assert fake_weaviate.collection(COLLECTION) is not None  # ... but the collection
    assert fake_weaviate.tenants(COLLECTION) == {}

    await index.upsert_items("acme", [car("a1", price=Decimal(20000))])
    schema = fake_weaviate.collection(COLLECTION)
    assert schema is not None and schema["multiTenancyConfig"]["enabled"] is True
    assert schema["vectorConfig"]["default"]["vectorizer"] == {"none": {}}
    assert fake_weaviate.tenants(COLLECTION) == {"t_acme": "ACTIVE"}

    # A second instance (another worker: no cache) finds both and creates neither again.
    other = make_index()
    await other.upsert_items("acme", [car("a2", price=Decimal(21000))])
    posts = [r for r in fake_weaviate.requests if r.method == "POST"]
    assert [r.path for r in posts] == ["/v1/schema", f"/v1/schema/{COLLECTION}/tenants"]
    assert posts[1].json == [{"name": "t_acme", "activityStatus": "HOT"}]
    assert len(fake_weaviate.objects(COLLECTION, "t_acme")) == 2


async def test_two_tenants_are_isolated(
    make_index: IndexFactory, fake_weaviate: FakeWeaviate
) -> None:
    index = make_index()
    await index.upsert_items("acme", [car("same-key", price=Decimal(1000))])
    await index.upsert_items("globex", [car("same-key", price=Decimal(2000)), car("g2")])
    await index.upsert_documents(
        "globex", [IndexedDocument(document_id="d1", title="Hours", body="Open on Sundays")]
    )
    assert [m.key for m in await index.search_items("acme", InventoryQuery(limit=10))] == [
        "same-key"
    ]
    assert await index.search_documents("acme", "sundays", 5) == []
    assert [d.document_id for d in await index.search_documents("globex", "sundays", 5)] == ["d1"]
    acme = fake_weaviate.objects(COLLECTION, "t_acme")
    globex = fake_weaviate.objects(COLLECTION, "t_globex")
    assert [o.properties["price"] for o in acme] == [1000.0]
    assert len(globex) == 3
    assert {o.uuid for o in acme}.isdisjoint({o.uuid for o in globex})


# -- writes ------------------------------------------------------------------------------------
async def test_an_upsert_replaces_and_never_duplicates(
    make_index: IndexFactory, fake_weaviate: FakeWeaviate
) -> None:
    index = make_index()
    await index.upsert_items("acme", [car("k1", price=Decimal(20000), fuel="diesel")])
    await index.upsert_items("acme", [car("k1", price=Decimal("18500.50"), fuel="petrol")])
    stored = fake_weaviate.objects(COLLECTION, "t_acme")
    assert len(stored) == 1
    assert stored[0].properties["price"] == 18500.5
    assert stored[0].properties["fuel"] == "petrol"
    assert stored[0].properties["make_norm"] == "volkswagen"
    assert "year" not in stored[0].properties  # absent facts stay absent
    hits = await index.search_items("acme", InventoryQuery(fuel="diesel"))
    assert hits == []


async def test_deletes_remove_items_and_every_passage_of_a_document(
    make_index: IndexFactory, fake_weaviate: FakeWeaviate
) -> None:
    index = make_index()
    await index.delete_items("nobody", ["x"])  # a tenant that never wrote: no error
    await index.upsert_items("acme", [car("k1"), car("k2"), car("k3")])
    long_body = "\n\n".join(f"Paragraph {i}. " + "warranty terms apply " * 30 for i in range(4))
    await index.upsert_documents(
        "acme",
        [
            IndexedDocument(document_id="warranty", title="Warranty", body=long_body),
            IndexedDocument(document_id="hours", title="Hours", body="Open 9 to 5."),
        ],
    )
    passages = [
        o for o in fake_weaviate.objects(COLLECTION, "t_acme") if o.properties["kind"] == "document"
    ]
    assert sum(1 for p in passages if p.properties["document_id"] == "warranty") == 4

    # A shorter new version leaves no stale passages behind.
    await index.upsert_documents(
        "acme", [IndexedDocument(document_id="warranty", title="Warranty", body="Two years.")]
    )
    warranty = [
        o
        for o in fake_weaviate.objects(COLLECTION, "t_acme")
        if o.properties.get("document_id") == "warranty"
    ]
    assert [o.properties["text"] for o in warranty] == ["Two years."]

    await index.delete_items("acme", ["k1", "k3", "absent"])
    await index.delete_documents("acme", ["warranty", "absent"])
    left = fake_weaviate.objects(COLLECTION, "t_acme")
    assert sorted(o.properties.get("key") or o.properties["document_id"] for o in left) == [
        "hours",
        "k2",
    ]
    delete = fake_weaviate.calls("BatchDelete")[-1].request
    assert delete.tenant == "t_acme" and not delete.dry_run


async def test_a_collection_without_multi_tenancy_is_an_error_naming_weaviate(
    make_index: IndexFactory, fake_weaviate: FakeWeaviate
) -> None:
    # Someone created the collection without multi-tenancy: the index says so instead of
    # writing into it (the server would refuse every object of a tenant).
    client = weaviate.connect_to_custom(
        http_host="127.0.0.1",
        http_port=fake_weaviate.http_port,
        http_secure=False,
        grpc_host="127.0.0.1",
        grpc_port=fake_weaviate.grpc_port,
        grpc_secure=False,
        skip_init_checks=True,
    )
    try:
        client.collections.create_from_dict(
            {"class": COLLECTION, "properties": [{"name": "kind", "dataType": ["text"]}]}
        )
    finally:
        client.close()
    index = make_index()
    with pytest.raises(KnowledgeBackendError) as caught:
        await index.upsert_items("acme", [car("k1")])
    assert "Weaviate" in str(caught.value)
    assert "multi-tenancy is disabled" in str(caught.value)
    assert not isinstance(caught.value, KnowledgeBackendUnavailable)
    assert fake_weaviate.calls("BatchObjects") == []  # refused before writing anything


async def test_a_collection_made_for_another_vector_mode_is_refused(
    make_index: IndexFactory,
) -> None:
    with FakeWeaviate(modules={"text2vec-openai": {}}) as fake:
        await make_index(fake=fake).upsert_items("acme", [car("k1")])  # provider vectors
        module = make_index(fake=fake, vectors="module", embedder_for=None)
        with pytest.raises(KnowledgeBackendError, match="made by 'none', not 'text2vec-openai'"):
            await module.search_items("acme", InventoryQuery())


# -- search ------------------------------------------------------------------------------------
async def test_structured_filters_equal_the_reference_filter(
    make_index: IndexFactory, fake_weaviate: FakeWeaviate
) -> None:
    items = inventory()
    index = make_index(vectors="none", embedder_for=None)
    await index.upsert_items("acme", items)
    rng = random.Random(11)
    queries = [
        InventoryQuery(limit=50),
        InventoryQuery(limit=50, available_only=False),
        InventoryQuery(make="SKODA", limit=50),  # accents and case do not matter
        InventoryQuery(make="Peugeot", model="3008", limit=50),
        InventoryQuery(make="volkswagen", fuel="diesel", max_price=Decimal(25000), limit=50),
        InventoryQuery(min_price=Decimal("9999.99"), max_price=Decimal("9999.99"), limit=50),
        InventoryQuery(min_year=2019, max_mileage=45000, transmission="automatic", limit=50),
        InventoryQuery(make="Tesla", limit=50),
        InventoryQuery(limit=3),
    ]
    makes = ["volkswagen", "Škoda", "bmw", "PEUGEOT", "toyota"]
    for _ in range(40):
        queries.append(
            InventoryQuery(
                make=rng.choice([None, *makes]),
                fuel=rng.choice([None, *Fuel]),
                transmission=rng.choice([None, *Transmission]),
                min_price=rng.choice([None, Decimal(10000), Decimal("14500")]),
                max_price=rng.choice([None, Decimal(25000), Decimal("24999.99"), Decimal(40000)]),
                min_year=rng.choice([None, 2018, 2021]),
                max_mileage=rng.choice([None, 0, 45000, 100000]),
                available_only=rng.random() > 0.3,
                limit=rng.choice([3, 10, 50]),
            )
        )
    nonempty = 0
    for query in queries:
        expected = reference(items, query)
        got = [m.key for m in await index.search_items("acme", query)]
        assert got == expected, query
        nonempty += bool(expected)
    assert nonempty >= 15  # the comparison is not vacuous


async def test_hybrid_puts_the_obviously_relevant_document_first(
    make_index: IndexFactory, fake_weaviate: FakeWeaviate, fake_embeddings: FakeOpenAI
) -> None:
    index = make_index()
    await index.upsert_documents(
        "acme",
        [
            IndexedDocument(
                document_id="hours",
                title="Opening hours",
                body="The showroom is open Monday to Saturday from 9:00 to 18:00. "
                "On Sundays we are closed.",
            ),
            IndexedDocument(
                document_id="warranty",
                title="Warranty",
                body="Every used car comes with a 12 month warranty on engine and gearbox.",
            ),
            IndexedDocument(
                document_id="finance",
                title="Financing",
                body="We offer financing over 12 to 72 months with a small down payment.",
            ),
        ],
    )
    hits = await index.search_documents("acme", "Are you open on Saturday?", 3)
    assert hits[0].document_id == "hours"
    assert hits[0].score > hits[-1].score
    assert "Saturday" in hits[0].snippet
    hits = await index.search_documents("acme", "warranty on the gearbox", 1)
    assert [h.document_id for h in hits] == ["warranty"]

    # What went over the wire: a hybrid search with the query's vector and alpha set.
    search = fake_weaviate.calls("Search")[-1].request
    assert search.tenant == "t_acme"
    assert search.hybrid_search.query == "warranty on the gearbox"
    assert search.hybrid_search.alpha == 0.5
    assert search.hybrid_search.fusion_type == search.hybrid_search.FUSION_TYPE_RELATIVE_SCORE
    assert list(search.hybrid_search.targets.target_vectors) == ["default"]
    assert len(search.hybrid_search.vector_bytes) == 64 * 4  # 64 float32s
    assert fake_embeddings.embedding_requests[-1].json["input"] == ["warranty on the gearbox"]


async def test_item_search_ranks_by_text_within_the_filters(make_index: IndexFactory) -> None:
    index = make_index()
    await index.upsert_items(
        "acme",
        [
            car("golf-gti", variant="GTI", colour="red", price=Decimal(30000), fuel="petrol"),
            car("golf-tdi", variant="1.6 TDI", colour="black", price=Decimal(19000), fuel="diesel"),
            car("golf-e", variant="e-Golf", price=Decimal(15000), fuel="electric"),
            car("polo", model="Polo", price=Decimal(9000), fuel="petrol"),
        ],
    )
    hits = await index.search_items(
        "acme", InventoryQuery(make="volkswagen", model="golf", text="red GTI", limit=3)
    )
    assert hits[0].key == "golf-gti"
    assert sorted(h.key for h in hits) == ["golf-e", "golf-gti", "golf-tdi"]  # polo filtered out


async def test_provider_vectors_come_from_the_embeddings_endpoint(
    make_index: IndexFactory, fake_weaviate: FakeWeaviate, fake_embeddings: FakeOpenAI
) -> None:
    index = make_index()
    item = car("k1", variant="GTI", price=Decimal(30000))
    await index.upsert_items("acme", [item])
    stored = fake_weaviate.objects(COLLECTION, "t_acme")[0]
    expected = hashed_embedding(f"{item.title()}\n{item.describe()}")
    assert stored.vectors["default"] == pytest.approx(expected, abs=1e-6)
    request = fake_embeddings.embedding_requests[0]
    assert request.headers["authorization"] == "Bearer sk-embed"
    assert request.json["input"] == [f"{item.title()}\n{item.describe()}"]
    batch = fake_weaviate.calls("BatchObjects")[0].request
    assert [v.name for v in batch.objects[0].vectors] == ["default"]


async def test_module_mode_sends_text_and_lets_weaviate_vectorize(
    make_index: IndexFactory, fake_embeddings: FakeOpenAI
) -> None:
    with FakeWeaviate(modules={"text2vec-openai": {"name": "OpenAI Module"}}) as fake:
        index = make_index(fake=fake, vectors="module", embedder_for=None)
        await index.check()
        await index.upsert_documents(
            "acme",
            [
                IndexedDocument(document_id="hours", title="Hours", body="Open on Saturday."),
                IndexedDocument(document_id="cars", title="Cars", body="Diesel estates."),
            ],
        )
        vector_config = fake.collection(COLLECTION)["vectorConfig"]["default"]  # type: ignore[index]
        assert "text2vec-openai" in vector_config["vectorizer"]
        assert vector_config["vectorizer"]["text2vec-openai"]["properties"] == ["title", "text"]
        batch = fake.calls("BatchObjects")[0].request
        assert all(not o.vector_bytes and not o.vectors for o in batch.objects)
        assert all("default" in o.vectors for o in fake.objects(COLLECTION, "t_acme"))

        hits = await index.search_documents("acme", "saturday", 2)
        assert hits[0].document_id == "hours"
        hybrid = fake.calls("Search")[-1].request.hybrid_search
        assert hybrid.alpha == 0.5
        assert not hybrid.vector_bytes and not hybrid.HasField("near_vector")
        assert fake_embeddings.embedding_requests == []


async def test_module_mode_needs_the_module_in_the_server(make_index: IndexFactory) -> None:
    index = make_index(vectors="module", embedder_for=None)  # the default fake has no modules
    with pytest.raises(KnowledgeBackendUnavailable, match="text2vec-openai is not enabled"):
        await index.check()
    with pytest.raises(KnowledgeBackendError, match=re.escape("Weaviate at http://127.0.0.1")):
        await index.upsert_items("acme", [car("k1")])


async def test_bm25_alone_when_the_tenants_provider_has_no_embeddings(
    make_index: IndexFactory, fake_weaviate: FakeWeaviate, fake_embeddings: FakeOpenAI
) -> None:
    async def no_embeddings(tenant_id: str) -> Embedder | None:
        return None

    index = make_index(embedder_for=no_embeddings)
    await index.upsert_documents(
        "acme",
        [
            IndexedDocument(document_id="hours", title="Hours", body="Open on Saturday."),
            IndexedDocument(document_id="cars", title="Cars", body="Diesel estates."),
        ],
    )
    assert all(o.vectors == {} for o in fake_weaviate.objects(COLLECTION, "t_acme"))
    hits = await index.search_documents("acme", "saturday", 5)
    assert [h.document_id for h in hits] == ["hours"]  # BM25 alone: no match, no hit
    hybrid = fake_weaviate.calls("Search")[-1].request.hybrid_search
    assert hybrid.alpha == 0.0
    assert not hybrid.HasField("near_vector") and not hybrid.vector_bytes
    assert fake_embeddings.embedding_requests == []


async def test_alpha_is_sent_explicitly_to_newer_servers_too(make_index: IndexFactory) -> None:
    # From 1.36.6 the client sends `alpha_param` (unset = the server's 0.75): an explicit 0.0
    # must still arrive as set, or a BM25-only tenant would silently get vector search.
    async def no_embeddings(tenant_id: str) -> Embedder | None:
        return None

    with FakeWeaviate(version="1.37.0") as fake:
        index = make_index(fake=fake, embedder_for=no_embeddings)
        await index.upsert_documents(
            "acme", [IndexedDocument(document_id="d", title="Hours", body="Open on Saturday.")]
        )
        assert [h.document_id for h in await index.search_documents("acme", "saturday", 1)] == ["d"]
        hybrid = fake.calls("Search")[-1].request.hybrid_search
        assert hybrid.use_alpha_param and hybrid.HasField("alpha_param")
        assert hybrid.alpha_param == 0.0


async def test_dropping_a_tenant_removes_what_it_indexed(
    make_index: IndexFactory, fake_weaviate: FakeWeaviate
) -> None:
    index = make_index()
    await index.upsert_items("acme", [car("k1")])
    await index.upsert_items("globex", [car("k1")])
    await index.drop_tenant("acme")
    assert sorted(fake_weaviate.tenants(COLLECTION)) == ["t_globex"]
    assert fake_weaviate.objects(COLLECTION, "t_acme") == []
    assert await index.search_items("acme", InventoryQuery()) == []
    await index.upsert_items("acme", [car("k2")])  # recreated on the next write
    assert [m.key for m in await index.search_items("acme", InventoryQuery())] == ["k2"]


async def test_a_tenant_removed_behind_our_back_is_recreated_after_one_error(
    make_index: IndexFactory, fake_weaviate: FakeWeaviate
) -> None:
    index = make_index()
    await index.upsert_items("acme", [car("k1")])
    other = make_index()
    await other.drop_tenant("acme")  # another worker (or an operator) removes it
    with pytest.raises(KnowledgeBackendError, match='tenant not found: "t_acme"'):
        await index.upsert_items("acme", [car("k2")])
    await index.upsert_items("acme", [car("k2")])
    assert [o.properties["key"] for o in fake_weaviate.objects(COLLECTION, "t_acme")] == ["k2"]


# -- auth and failures -------------------------------------------------------------------------
async def test_the_api_key_is_sent_and_a_wrong_one_is_refused(make_index: IndexFactory) -> None:
    with FakeWeaviate(api_key="wv-secret") as fake:
        index = make_index(fake=fake, api_key="wv-secret")
        await index.upsert_items("acme", [car("k1")])
        assert [m.key for m in await index.search_items("acme", InventoryQuery())] == ["k1"]
        meta = next(r for r in fake.requests if r.path == "/v1/meta")
        assert meta.headers["authorization"] == "Bearer wv-secret"
        assert fake.calls("Search")[-1].metadata["authorization"] == "Bearer wv-secret"

        for key in ("wrong", None):
            refused = make_index(fake=fake, api_key=key)
            with pytest.raises(KnowledgeBackendUnavailable) as caught:
                await refused.check()
            assert "Weaviate" in str(caught.value) and fake.url in str(caught.value)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_an_unreachable_weaviate_is_an_error_naming_it(make_index: IndexFactory) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    index = make_index(url=url, grpc_port=_closed_port())
    with pytest.raises(KnowledgeBackendUnavailable) as caught:
        await index.check()
    assert "Weaviate" in str(caught.value) and url in str(caught.value)
    with pytest.raises(KnowledgeBackendUnavailable):
        await index.search_items("acme", InventoryQuery())


async def test_grpc_failures_are_errors_naming_weaviate(
    make_index: IndexFactory, fake_weaviate: FakeWeaviate
) -> None:
    # REST answers but nothing listens on the gRPC port: the health check fails.
    index = make_index(grpc_port=_closed_port())
    with pytest.raises(
        KnowledgeBackendUnavailable, match=re.escape("Weaviate at http://127.0.0.1")
    ):
        await index.check()

    index = make_index()
    await index.upsert_items("acme", [car("k1")])
    fake_weaviate.fail_next("Search", 1, grpc.StatusCode.INTERNAL, "shard is read-only")
    with pytest.raises(KnowledgeBackendError, match="shard is read-only") as caught:
        await index.search_items("acme", InventoryQuery(text="golf"))
    assert "Weaviate" in str(caught.value)
    # One UNAVAILABLE is retried by the client itself (after 1 s): the search succeeds.
    fake_weaviate.fail_next("Search", 1, grpc.StatusCode.UNAVAILABLE, "restarting")
    assert [m.key for m in await index.search_items("acme", InventoryQuery())] == ["k1"]
    fake_weaviate.fail_next("BatchObjects", 1, grpc.StatusCode.PERMISSION_DENIED, "read only key")
    with pytest.raises(KnowledgeBackendUnavailable, match="Weaviate"):
        await index.upsert_items("acme", [car("k2")])


async def test_a_weaviate_that_goes_away_is_an_error_within_the_request_timeout(
    make_index: IndexFactory,
) -> None:
    fake = FakeWeaviate().start()
    try:
        index = make_index(fake=fake, request_timeout=3.0)
        await index.upsert_items("acme", [car("k1")])
    finally:
        fake.stop()
    with pytest.raises(
        KnowledgeBackendUnavailable, match=re.escape("Weaviate at http://127.0.0.1")
    ):
        await index.search_items("acme", InventoryQuery(text="golf"))


def test_bad_configuration_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="http"):
        WeaviateIndex("weaviate:8080", vectors="none")
    with pytest.raises(ValueError, match="no path"):
        WeaviateIndex("http://weaviate:8080/v1", vectors="none")
    with pytest.raises(ValueError, match="embedder_for"):
        WeaviateIndex("http://weaviate:8080", vectors="provider")
    with pytest.raises(ValueError, match="alpha"):
        WeaviateIndex("http://weaviate:8080", vectors="none", alpha=1.5)


# -- closing ----------------------------------------------------------------------------------
async def test_close_releases_the_client_and_the_embedders_pools(
    make_index: IndexFactory, fake_embeddings: FakeOpenAI
) -> None:
    """A worker that stops closes its index (workers/worker.py): the gRPC/HTTP client, and the
    embedders' HTTP pools when the index's `embedder_for` owns them (TenantEmbedders does)."""
    owned: list[OpenAIEmbedder] = []

    class Owning:
        async def __call__(self, tenant_id: str) -> Embedder | None:
            if not owned:
                owned.append(
                    OpenAIEmbedder(
                        fake_embeddings.base_url, api_key="sk-embed", allowlist=["127.0.0.1"]
                    )
                )
            return owned[0]

        async def close(self) -> None:
            for embedder in owned:
                await embedder.close()

    index = make_index(embedder_for=Owning())
    await index.upsert_items("acme", [car("c1", price=Decimal(19000))])
    assert owned and not owned[0]._http.is_closed
    await index.close()
    assert owned[0]._http.is_closed
    await index.close()  # twice is harmless (the fixture closes it again)
