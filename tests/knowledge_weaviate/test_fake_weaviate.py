"""The fake Weaviate itself, driven by the real (sync) weaviate-client and plain HTTP: what the
backend tests rely on it to get right, and that it refuses what it does not model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import weaviate
from weaviate.classes.config import Configure, DataType, Property, Tokenization
from weaviate.classes.data import DataObject
from weaviate.classes.query import Filter, MetadataQuery
from weaviate.classes.tenants import Tenant, TenantActivityStatus
from weaviate.exceptions import WeaviateQueryError
from weaviate.util import generate_uuid5

from tests.fakes.weaviate import FakeWeaviate


@pytest.fixture
def client(fake_weaviate: FakeWeaviate) -> Iterator[weaviate.WeaviateClient]:
    client = weaviate.connect_to_custom(
        http_host="127.0.0.1",
        http_port=fake_weaviate.http_port,
        http_secure=False,
        grpc_host="127.0.0.1",
        grpc_port=fake_weaviate.grpc_port,
        grpc_secure=False,
        skip_init_checks=True,
    )
    yield client
    client.close()


def _articles(client: weaviate.WeaviateClient) -> weaviate.collections.Collection[Any, Any]:
    collection = client.collections.create(
        "Articles",
        properties=[
            Property(name="body", data_type=DataType.TEXT),
            Property(name="tag", data_type=DataType.TEXT, tokenization=Tokenization.FIELD),
            Property(name="n", data_type=DataType.INT),
            Property(name="p", data_type=DataType.NUMBER),
        ],
        multi_tenancy_config=Configure.multi_tenancy(enabled=True),
    )
    collection.tenants.create([Tenant(name="tenantA")])
    return collection


def test_bm25_ranks_by_rare_terms_and_term_frequency(client: weaviate.WeaviateClient) -> None:
    articles = _articles(client).with_tenant("tenantA")
    bodies = {
        "common": "the car the car the car",
        "rare": "a panoramic roof",
        "red": "a red car",
        "blue": "blue car for sale",
        "none": "nothing relevant here at all",
    }
    articles.data.insert_many(
        [
            DataObject(properties={"body": b, "tag": k}, uuid=generate_uuid5(k))
            for k, b in bodies.items()
        ]
    )
    result = articles.query.bm25(query="panoramic car", return_metadata=MetadataQuery(score=True))
    ranked = [o.properties["tag"] for o in result.objects]
    # One rare term beats a common term three times (idf), and a repeated term beats a single
    # one in a document of similar length (tf).
    assert ranked[0] == "rare"
    assert ranked.index("common") < ranked.index("red")
    assert sorted(map(str, ranked)) == ["blue", "common", "rare", "red"]  # no shared term: no hit
    scores = [o.metadata.score or 0.0 for o in result.objects]
    assert scores == sorted(scores, reverse=True)


def test_cursor_filters_and_deletes(client: weaviate.WeaviateClient) -> None:
    articles = _articles(client).with_tenant("tenantA")
    articles.data.insert_many(
        [DataObject(properties={"body": f"doc {i}", "n": i, "p": i / 2}) for i in range(7)]
    )
    seen: list[str] = []
    page = articles.query.fetch_objects(limit=3)
    while page.objects:
        seen.extend(str(o.uuid) for o in page.objects)
        page = articles.query.fetch_objects(limit=3, after=page.objects[-1].uuid)
    assert len(seen) == len(set(seen)) == 7

    between = Filter.by_property("n").greater_or_equal(2) & Filter.by_property("p").less_than(2.5)
    assert sorted(
        int(str(o.properties["n"])) for o in articles.query.fetch_objects(filters=between).objects
    ) == [2, 3, 4]
    either = Filter.any_of(
        [Filter.by_property("n").equal(0), Filter.by_property("body").like("*6")]
    )
    assert sorted(
        int(str(o.properties["n"])) for o in articles.query.fetch_objects(filters=either).objects
    ) == [0, 6]

    dry = articles.data.delete_many(where=between, dry_run=True, verbose=True)
    assert (dry.matches, dry.successful, len(dry.objects or [])) == (3, 0, 3)
    done = articles.data.delete_many(where=between)
    assert (done.matches, done.successful) == (3, 3)
    assert len(articles.query.fetch_objects().objects) == 4


def test_what_the_server_refuses_is_refused(client: weaviate.WeaviateClient) -> None:
    articles = _articles(client)
    with pytest.raises(
        WeaviateQueryError, match="multi-tenancy enabled, but request was without tenant"
    ):
        articles.query.fetch_objects()
    scoped = articles.with_tenant("tenantA")
    with pytest.raises(WeaviateQueryError, match='cannot use "valueInt" on type "number"'):
        scoped.query.fetch_objects(filters=Filter.by_property("p").greater_than(1))
    with pytest.raises(WeaviateQueryError, match="does not model near_text"):
        scoped.query.near_text(query="cars")
    result = scoped.data.insert_many(
        [DataObject(properties={"body": "ok"}), DataObject(properties={"colour": "red"})]
    )
    assert list(result.errors) == [1]
    assert "no such prop with name 'colour'" in result.errors[1].message
    with pytest.raises(WeaviateQueryError, match='tenant not found: "tenantB"'):
        articles.with_tenant("tenantB").query.fetch_objects()


def test_tenants_endpoints(client: weaviate.WeaviateClient, fake_weaviate: FakeWeaviate) -> None:
    articles = _articles(client)
    articles.tenants.create([Tenant(name="tenantB"), Tenant(name="tenantC")])
    articles.tenants.update([Tenant(name="tenantB", activity_status=TenantActivityStatus.INACTIVE)])
    tenants = articles.tenants.get()  # gRPC TenantsGet
    assert sorted(tenants) == ["tenantA", "tenantB", "tenantC"]
    assert tenants["tenantB"].activity_status == TenantActivityStatus.INACTIVE
    articles.tenants.remove(["tenantC", "tenantX"])  # unknown names are ignored
    assert articles.tenants.exists("tenantA") and not articles.tenants.exists("tenantC")
    with pytest.raises(WeaviateQueryError, match="is not active"):
        articles.with_tenant("tenantB").query.fetch_objects()
    put = next(r for r in fake_weaviate.requests if r.method == "PUT")
    assert put.json == [{"name": "tenantB", "activityStatus": "COLD"}]  # the client's spelling
    assert client.collections.exists("Articles") and not client.collections.exists("Nope")


def test_auto_tenant_creation_on_batch_writes(client: weaviate.WeaviateClient) -> None:
    auto = client.collections.create(
        "Auto",
        properties=[Property(name="body", data_type=DataType.TEXT)],
        multi_tenancy_config=Configure.multi_tenancy(enabled=True, auto_tenant_creation=True),
    )
    result = auto.with_tenant("newTenant").data.insert_many([DataObject(properties={"body": "x"})])
    assert not result.errors
    assert auto.tenants.exists("newTenant")


def test_rest_auth_readiness_and_failure_injection() -> None:
    with FakeWeaviate(api_key="secret") as fake:
        assert httpx.get(f"{fake.url}/v1/meta").status_code == 401
        meta = httpx.get(f"{fake.url}/v1/meta", headers={"authorization": "Bearer secret"})
        assert meta.json()["version"] == "1.32.0"
        assert httpx.get(f"{fake.url}/v1/.well-known/ready").status_code == 200
        assert httpx.get(f"{fake.url}/v1/.well-known/openid-configuration").status_code == 404
        fake.ready = False
        assert httpx.get(f"{fake.url}/v1/.well-known/ready").status_code == 503
        fake.rest_failures.add(1, status=500, body={"error": [{"message": "boom"}]})
        assert httpx.get(f"{fake.url}/v1/.well-known/live").status_code == 500
        assert httpx.get(f"{fake.url}/v1/.well-known/live").status_code == 200
