"""The inventory API: what the agent would find, the API-posted list (replace, upsert, remove),
sources with their schedules, and bad input answered with a clear 4xx that starts nothing. The
app runs with its real lifespan and the real dev server, without a worker: a run started here
stays queued, which is what the 409 test needs (the runs themselves: tests/ingestion/)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from api import deps
from api.app import create_app
from api.routes import inventory as inventory_routes
from models.db import Database, migrate
from models.inventory import InventoryItem, InventoryQuery, NewInventoryItem
from models.knowledge.index import (
    DocumentMatch,
    IndexedDocument,
    ItemMatch,
    KnowledgeBackendUnavailable,
)
from models.knowledge.ingestion import ingestion_workflow_id, source_schedule_id
from models.knowledge.service import KnowledgeService
from models.settings import Settings
from tests.conftest import TEST_SECRET, make_tenant

pytestmark = pytest.mark.timeout(120)

PUBLIC_FEED = "http://93.184.215.14/voorraad.json"  # a literal public address: no DNS needed
GOLF: dict[str, Any] = {
    "key": "VD-1",
    "make": "Volkswagen",
    "model": "Golf",
    "variant": "2.0 TDI Highline",
    "year": 2019,
    "price": 18950,
    "fuel": "Diesel",
    "transmission": "Handgeschakeld",
    "mileage": 96412,
    "url": "https://dealer.example/occasions/vd-1",
}
POLO: dict[str, Any] = {
    "key": "VD-2",
    "make": "Volkswagen",
    "model": "Polo",
    "price": 12500,
    "fuel": "benzine",
}
ID3: dict[str, Any] = {  # no key: keyed by its listing URL
    "make": "Volkswagen",
    "model": "ID.3",
    "price": 27900,
    "fuel": "electric",
    "url": "https://dealer.example/occasions/id3-blue?ref=list",
}


class App:
    def __init__(self, app: Any, http: httpx.AsyncClient, db: Database) -> None:
        self.app = app
        self.http = http
        self.db = db

    @property
    def state(self) -> deps.AppState:
        state: deps.AppState = self.app.state.leadflow
        return state

    async def tenant(self) -> tuple[str, dict[str, str]]:
        tenant_id, key = await make_tenant(self.db)
        return tenant_id, {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
async def api(
    temporal_client: Client, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[App]:
    data: Path = tmp_path_factory.mktemp("inventory-api")
    url = f"sqlite+aiosqlite:///{data / 'leadflow.db'}"
    migrate(url)
    db = Database(url)
    # No allowlist: sources on loopback or private addresses are refused, as in production.
    settings = Settings(data_dir=data, database_url=url, secret_key=TEST_SECRET, ssrf_allowlist=[])
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        app.state.leadflow.temporal = temporal_client  # the test server's client (its codec)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://leadflow.test") as h:
            yield App(app, h, db)
    await db.dispose()


# ---- items ------------------------------------------------------------------------------------


async def test_the_api_list_is_replaced_upserted_and_searched(api: App) -> None:
    tenant_id, auth = await api.tenant()
    # Items of a source are not the API's list: PUT leaves them alone.
    feed_car = NewInventoryItem(key="FEED-1", make="Skoda", model="Octavia", price=21000).keyed()
    await api.state.knowledge.apply_items(
        tenant_id=tenant_id, items=[feed_car], source_id="srcfeed", replace=True
    )

    put = await api.http.put("/api/v1/inventory", headers=auth, json={"items": [GOLF, POLO]})
    assert put.status_code == 200, put.text
    diff = put.json()
    assert (diff["received"], diff["added"], diff["removed"]) == (2, 2, 0)
    assert diff["search_index"] == "ok" and diff["search_index_reason"] is None

    cheaper = {**POLO, "price": 11900}
    again = await api.http.put("/api/v1/inventory", headers=auth, json={"items": [cheaper]})
    assert again.status_code == 200, again.text
    assert (again.json()["updated"], again.json()["removed"]) == (1, 1)
    assert again.json()["removed_keys"] == ["VD-1"]

    one = await api.http.post("/api/v1/inventory/items", headers=auth, json=ID3)
    assert one.status_code == 200, one.text
    assert one.json()["added"] == 1 and one.json()["added_keys"] == [ID3["url"]]  # keyed by URL
    many = await api.http.post("/api/v1/inventory/items", headers=auth, json={"items": [GOLF]})
    assert many.status_code == 200 and many.json()["added"] == 1
    assert many.json()["removed"] == 0  # upsert: nothing removed

    # What the agent would find: filters, scores, the backend that answered.
    found = await api.http.get(
        "/api/v1/inventory",
        headers=auth,
        params={"make": "volkswagen", "fuel": "diesel", "max_price": 25000},
    )
    assert found.status_code == 200, found.text
    assert found.json()["backend"] == "database"
    hits = found.json()["items"]
    assert [h["item"]["key"] for h in hits] == ["VD-1"]
    assert hits[0]["item"]["price"] == "18950.00" and hits[0]["item"]["fuel"] == "diesel"
    assert isinstance(hits[0]["score"], float)
    everything = await api.http.get("/api/v1/inventory", headers=auth, params={"limit": 50})
    assert {h["item"]["key"] for h in everything.json()["items"]} == {
        "VD-1",
        "VD-2",
        ID3["url"],
        "FEED-1",
    }
    texty = await api.http.get("/api/v1/inventory", headers=auth, params={"q": "octavia"})
    assert [h["item"]["key"] for h in texty.json()["items"]] == ["FEED-1"]

    # Removing by key, URLs included (a query parameter, so slashes are no problem).
    removed = await api.http.delete(
        "/api/v1/inventory/items", headers=auth, params={"key": ID3["url"]}
    )
    assert removed.status_code == 204, removed.text
    gone = await api.http.delete(
        "/api/v1/inventory/items", headers=auth, params={"key": ID3["url"]}
    )
    assert gone.status_code == 404
    assert gone.json() == {"error": "inventory item not found", "detail": ID3["url"]}

    # Another tenant sees none of it and removes nothing.
    _, other = await api.tenant()
    assert (await api.http.get("/api/v1/inventory", headers=other)).json()["items"] == []
    stolen = await api.http.delete("/api/v1/inventory/items", headers=other, params={"key": "VD-1"})
    assert stolen.status_code == 404


def _problems(response: httpx.Response) -> list[tuple[list[Any], str]]:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid request"
    return [(p["loc"], p["msg"]) for p in body["detail"]]


async def test_bad_items_are_refused_and_nothing_is_stored(api: App) -> None:
    tenant_id, auth = await api.tenant()
    unknown = await api.http.put(
        "/api/v1/inventory", headers=auth, json={"items": [{**GOLF, "horsepower": 150}]}
    )
    assert (["body", "items", 0, "horsepower"], "Extra inputs are not permitted") in _problems(
        unknown
    )
    top = await api.http.put("/api/v1/inventory", headers=auth, json={"items": [], "mode": "x"})
    assert [loc for loc, _ in _problems(top)] == [["body", "mode"]]
    too_many = await api.http.put(
        "/api/v1/inventory", headers=auth, json={"items": [POLO] * 20_001}
    )
    assert [loc for loc, _ in _problems(too_many)] == [["body", "items"]]
    bad_url = await api.http.put(
        "/api/v1/inventory",
        headers=auth,
        json={"items": [GOLF, {**POLO, "url": "javascript:alert(1)"}]},
    )
    assert _problems(bad_url) == [
        (["body", "items", 1, "url"], "Value error, must be an http(s) URL")
    ]
    no_make = await api.http.post("/api/v1/inventory/items", headers=auth, json={"model": "Golf"})
    assert no_make.status_code == 422
    negative = await api.http.post(
        "/api/v1/inventory/items", headers=auth, json={**GOLF, "price": -1}
    )
    assert negative.status_code == 422
    empty_key = await api.http.delete("/api/v1/inventory/items", headers=auth, params={"key": ""})
    assert empty_key.status_code == 422
    everything = await api.state.knowledge.search_items(
        tenant_id=tenant_id, query=InventoryQuery(available_only=False, limit=50)
    )
    assert everything == []


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"min_price": 30000, "max_price": 20000}, ["query"]),
        ({"limit": 51}, ["query", "limit"]),
        ({"limit": 0}, ["query", "limit"]),
        ({"max_price": "cheap"}, ["query", "max_price"]),
        ({"min_year": 1800}, ["query", "min_year"]),
        ({"fuel": "banana"}, ["query", "fuel"]),
        ({"transmission": "sideways"}, ["query", "transmission"]),
    ],
    ids=["price-range", "limit-high", "limit-zero", "price-text", "year", "fuel", "transmission"],
)
async def test_bad_searches_are_422(api: App, params: dict[str, Any], loc: list[Any]) -> None:
    _, auth = await api.tenant()
    response = await api.http.get("/api/v1/inventory", headers=auth, params=params)
    problems = _problems(response)
    assert [p[0][: len(loc)] for p in problems] == [loc], problems
    if "min_price" in params:
        assert "min_price is above max_price" in problems[0][1]


async def test_inventory_needs_an_api_key(api: App) -> None:
    for method, path in (
        ("GET", "/api/v1/inventory"),
        ("PUT", "/api/v1/inventory"),
        ("POST", "/api/v1/inventory/items"),
        ("GET", "/api/v1/inventory/sources"),
        ("POST", "/api/v1/inventory/sources/x/run"),
    ):
        response = await api.http.request(method, path)
        assert response.status_code == 401, (method, path)


# ---- a search backend that is down ------------------------------------------------------------


class DownIndex:
    """A mirroring backend (as Weaviate) that does not answer."""

    name = "weaviate"
    mirrors = True

    def _down(self) -> KnowledgeBackendUnavailable:
        return KnowledgeBackendUnavailable("weaviate at http://weaviate:8080: unreachable")

    async def check(self) -> None:
        raise self._down()

    async def upsert_documents(self, tenant_id: str, documents: Sequence[IndexedDocument]) -> None:
        raise self._down()

    async def delete_documents(self, tenant_id: str, document_ids: Sequence[str]) -> None:
        raise self._down()

    async def upsert_items(self, tenant_id: str, items: Sequence[InventoryItem]) -> None:
        raise self._down()

    async def delete_items(self, tenant_id: str, keys: Sequence[str]) -> None:
        raise self._down()

    async def search_documents(self, tenant_id: str, query: str, limit: int) -> list[DocumentMatch]:
        raise self._down()

    async def search_items(self, tenant_id: str, query: InventoryQuery) -> list[ItemMatch]:
        raise self._down()

    async def drop_tenant(self, tenant_id: str) -> None:
        raise self._down()

    async def close(self) -> None:
        return None


async def test_a_backend_that_is_down_is_named_and_stored_writes_say_pending(api: App) -> None:
    _, auth = await api.tenant()
    working = api.state._knowledge
    api.state._knowledge = KnowledgeService(api.db, DownIndex())
    try:
        put = await api.http.put("/api/v1/inventory", headers=auth, json={"items": [GOLF]})
        assert put.status_code == 202, put.text
        body = put.json()
        assert (body["added"], body["search_index"]) == (1, "pending")
        assert "weaviate at http://weaviate:8080: unreachable" in body["search_index_reason"]

        removed = await api.http.delete(
            "/api/v1/inventory/items", headers=auth, params={"key": "VD-1"}
        )
        assert removed.status_code == 202, removed.text
        assert removed.json()["removed_keys"] == ["VD-1"]

        search = await api.http.get("/api/v1/inventory", headers=auth)
        assert search.status_code == 503
        assert search.json() == {
            "error": "knowledge backend unavailable",
            "detail": "weaviate at http://weaviate:8080: unreachable",
        }
        docs = await api.http.get("/api/v1/knowledge/search", headers=auth, params={"q": "open"})
        assert docs.status_code == 503 and "weaviate" in docs.json()["detail"]
        added = await api.http.post(
            "/api/v1/knowledge", headers=auth, json={"title": "Hours", "body": "Open 9-18"}
        )
        assert added.status_code == 503
    finally:
        api.state._knowledge = working
    # Nothing half-made: the document refused by the backend was not kept.
    assert (await api.http.get("/api/v1/knowledge", headers=auth)).json() == []


# ---- sources ----------------------------------------------------------------------------------


async def _schedule_exists(client: Client, tenant_id: str, source_id: str) -> bool:
    try:
        await client.get_schedule_handle(source_schedule_id(tenant_id, source_id)).describe()
    except RPCError as exc:
        assert exc.status == RPCStatusCode.NOT_FOUND
        return False
    return True


async def test_a_source_is_created_read_changed_run_and_deleted(
    api: App, temporal_client: Client
) -> None:
    tenant_id, auth = await api.tenant()
    spec = {"name": "Voorraad", "kind": "json_feed", "url": PUBLIC_FEED, "items_path": "data"}
    created = await api.http.post("/api/v1/inventory/sources", headers=auth, json=spec)
    assert created.status_code == 201, created.text
    source = created.json()
    source_id = source["id"]
    assert source["spec"]["url"] == PUBLIC_FEED and source["every_minutes"] == 10
    assert source["items"] == 0 and source["last_run_at"] is None
    assert source["schedule"]["every_minutes"] == 10 and not source["schedule"]["paused"]
    assert await _schedule_exists(temporal_client, tenant_id, source_id)

    listed = await api.http.get("/api/v1/inventory/sources", headers=auth)
    assert [s["id"] for s in listed.json()["sources"]] == [source_id]
    got = await api.http.get(f"/api/v1/inventory/sources/{source_id}", headers=auth)
    assert got.status_code == 200 and len(got.json()["schedule"]["next_runs"]) == 3

    renamed = await api.http.patch(
        f"/api/v1/inventory/sources/{source_id}",
        headers=auth,
        json={"name": "Voorraad (nieuw)", "every_minutes": 5},
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "Voorraad (nieuw)"
    assert renamed.json()["schedule"]["every_minutes"] == 5

    # Run now: no worker here, so the run stays going and a second one is refused.
    run = await api.http.post(f"/api/v1/inventory/sources/{source_id}/run", headers=auth)
    assert run.status_code == 202, run.text
    assert run.json() == {
        "workflow_id": ingestion_workflow_id(tenant_id, source_id),
        "source_id": source_id,
    }
    second = await api.http.post(f"/api/v1/inventory/sources/{source_id}/run", headers=auth)
    assert second.status_code == 409
    assert second.json()["detail"] == ingestion_workflow_id(tenant_id, source_id)

    # Another tenant cannot see, change, run or delete it.
    _, other = await api.tenant()
    for method in ("GET", "PATCH", "DELETE"):
        response = await api.http.request(
            method, f"/api/v1/inventory/sources/{source_id}", headers=other, json={}
        )
        assert response.status_code == 404, method
    stolen_run = await api.http.post(f"/api/v1/inventory/sources/{source_id}/run", headers=other)
    assert stolen_run.status_code == 404

    deleted = await api.http.delete(f"/api/v1/inventory/sources/{source_id}", headers=auth)
    assert deleted.status_code == 204, deleted.text
    assert not await _schedule_exists(temporal_client, tenant_id, source_id)
    # Its run (queued: no worker here) was ended with it.
    ended = await temporal_client.get_workflow_handle(run.json()["workflow_id"]).describe()
    assert ended.status == WorkflowExecutionStatus.TERMINATED
    assert (await api.http.get("/api/v1/inventory/sources", headers=auth)).json() == {"sources": []}


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ({"url": "http://127.0.0.1:8080/feed.json"}, "loopback"),
        ({"url": "http://169.254.169.254/latest/meta-data"}, "cloud metadata"),
        ({"url": "http://10.1.2.3/feed.json"}, "private"),
        ({"url": "http://dealer.localhost/feed.json"}, "local name"),
        ({"url": "ftp://dealer.example/feed.json"}, "must be an http(s) URL"),
        ({"colour": "red"}, "Extra inputs are not permitted"),
        ({"every_minutes": 0}, "greater than or equal to 1"),
        ({"kind": "xml_feed"}, "Input should be"),
        ({"delimiter": ";"}, "delimiter is for kind 'csv_feed'"),
        ({"mapping": {"horsepower": "pk"}}, "unknown item fields"),
    ],
    ids=[
        "loopback",
        "metadata",
        "private",
        "local-name",
        "ftp",
        "unknown-field",
        "interval",
        "kind",
        "delimiter",
        "mapping",
    ],
)
async def test_bad_sources_are_refused_and_start_nothing(
    api: App, temporal_client: Client, spec: dict[str, Any], error: str
) -> None:
    _, auth = await api.tenant()
    body = {"name": "Voorraad", "kind": "json_feed", "url": PUBLIC_FEED, **spec}
    response = await api.http.post("/api/v1/inventory/sources", headers=auth, json=body)
    assert response.status_code == 422, response.text
    assert error in str(response.json()["detail"])
    assert (await api.http.get("/api/v1/inventory/sources", headers=auth)).json() == {"sources": []}


async def test_bad_changes_and_unknown_sources(api: App) -> None:
    _, auth = await api.tenant()
    spec = {"name": "Voorraad", "kind": "json_feed", "url": PUBLIC_FEED}
    source_id = (await api.http.post("/api/v1/inventory/sources", headers=auth, json=spec)).json()[
        "id"
    ]
    path = f"/api/v1/inventory/sources/{source_id}"
    for patch, error in (
        ({"url": "http://127.0.0.1/feed.json"}, "loopback"),
        ({"every_minutes": 0}, "greater than or equal to 1"),
        ({"horsepower": 1}, "Extra inputs are not permitted"),
        ({"selectors": {"item": "article", "fields": {"make": ".make"}}}, "selectors are for"),
    ):
        response = await api.http.patch(path, headers=auth, json=patch)
        assert response.status_code == 422, (patch, response.text)
        assert error in str(response.json()["detail"]), patch
    unchanged = (await api.http.get(path, headers=auth)).json()
    assert unchanged["spec"]["url"] == PUBLIC_FEED and unchanged["every_minutes"] == 10

    for method, unknown in (
        ("GET", "/api/v1/inventory/sources/srcnope"),
        ("PATCH", "/api/v1/inventory/sources/srcnope"),
        ("DELETE", "/api/v1/inventory/sources/srcnope"),
        ("POST", "/api/v1/inventory/sources/srcnope/run"),
    ):
        response = await api.http.request(method, unknown, headers=auth, json={})
        assert response.status_code == 404, (method, response.text)
        assert response.json() == {"error": "inventory source not found", "detail": "srcnope"}
    assert (await api.http.delete(path, headers=auth)).status_code == 204


async def test_a_source_whose_schedule_cannot_be_made_is_not_kept(
    api: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, auth = await api.tenant()

    async def refuse(*_: Any, **__: Any) -> None:
        raise RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")

    monkeypatch.setattr(inventory_routes, "ensure_source_schedule", refuse)
    spec = {"name": "Voorraad", "kind": "json_feed", "url": PUBLIC_FEED}
    response = await api.http.post("/api/v1/inventory/sources", headers=auth, json=spec)
    assert response.status_code == 503
    assert response.json()["error"] == "Temporal is unavailable"
    assert "could not create the source's schedule" in response.json()["detail"]
    assert (await api.http.get("/api/v1/inventory/sources", headers=auth)).json() == {"sources": []}
