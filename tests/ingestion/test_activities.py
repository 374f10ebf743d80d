"""The ingestion activity for real (database, guarded HTTP client, parser, knowledge service)
against the fake dealer site on loopback, outside Temporal (ActivityEnvironment): what a run
applies and records, and which failures are final and which are retried."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.ingestion import IngestionActivities
from models.db import Database
from models.inventory import InventoryQuery
from models.knowledge.database_index import DatabaseIndex
from models.knowledge.ingestion import (
    ERROR_INDEX_UNAVAILABLE,
    ERROR_SOURCE_FORMAT,
    ERROR_SOURCE_NOT_FOUND,
    ERROR_SOURCE_REFUSED,
    ERROR_SOURCE_UNAVAILABLE,
    ERROR_WOULD_EMPTY,
    IngestResult,
    IngestSourceInput,
)
from models.knowledge.service import KnowledgeService
from models.knowledge_sources import SourceSpec
from models.knowledge_tables import KnowledgeSourceRow
from models.netguard import guarded_client
from models.repo import inventory as inventory_repo
from models.repo import knowledge_sources as source_repo
from tests.conftest import make_tenant
from tests.fakes.dealer import JSON, FakeDealerSite, make_inventory
from tests.models.test_inventory_service import FlakyIndex

pytestmark = pytest.mark.timeout(120)

LOOPBACK = ["127.0.0.1"]


@pytest.fixture(scope="module")
def site() -> Iterator[FakeDealerSite]:
    with FakeDealerSite(make_inventory(30, seed=3)) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with guarded_client(LOOPBACK) as client:
        yield client


class Setup:
    def __init__(self, db: Database, http: httpx.AsyncClient, tenant_id: str) -> None:
        self.db = db
        self.tenant_id = tenant_id
        self.knowledge = KnowledgeService(db, DatabaseIndex(db))
        self.acts = IngestionActivities(db, http, self.knowledge)
        self.heartbeats: list[object] = []

    async def source(self, spec: SourceSpec) -> str:
        async with self.db.session() as session:
            row = await source_repo.create_source(session, tenant_id=self.tenant_id, spec=spec)
        return row.id

    async def run(self, source_id: str) -> IngestResult:
        env = ActivityEnvironment()
        env.on_heartbeat = lambda *details: self.heartbeats.extend(details)
        return await env.run(
            self.acts.ingest_inventory_source,
            IngestSourceInput(tenant_id=self.tenant_id, source_id=source_id),
        )

    async def fails(self, source_id: str) -> ApplicationError:
        with pytest.raises(ApplicationError) as caught:
            await self.run(source_id)
        return caught.value

    async def row(self, source_id: str) -> KnowledgeSourceRow:
        async with self.db.session() as session:
            row = await source_repo.get_source(
                session, tenant_id=self.tenant_id, source_id=source_id
            )
        assert row is not None
        return row

    async def live(self) -> dict[str, int]:
        async with self.db.session() as session:
            return await inventory_repo.counts(session, tenant_id=self.tenant_id)


@pytest.fixture
async def setup(sqlite_db: Database, http: httpx.AsyncClient) -> Setup:
    tenant_id, _ = await make_tenant(sqlite_db)
    return Setup(sqlite_db, http, tenant_id)


async def test_a_listing_page_is_applied_and_vanished_cars_are_removed(
    setup: Setup, site: FakeDealerSite
) -> None:
    source_id = await setup.source(site.listing_spec())
    first = await setup.run(source_id)
    assert first.format == "json-ld" and first.source_name == "Occasions"
    assert (first.diff.received, first.diff.added, first.diff.removed) == (30, 30, 0)
    assert first.bytes > 0 and first.skipped == 0 and setup.heartbeats
    assert await setup.live() == {source_id: 30}
    row = await setup.row(source_id)
    assert row.last_result is not None and row.last_result["diff"]["added"] == 30
    assert row.last_error is None and row.last_run_at is not None

    gone, sold, cheaper = site.keys()[1:4]
    site.remove_car(gone)
    site.sell(sold)
    site.change_car(cheaper, price=9_999)
    try:
        second = await setup.run(source_id)
    finally:
        site.inventory[:] = make_inventory(30, seed=3)
    assert (second.diff.added, second.diff.updated, second.diff.removed) == (0, 2, 1)
    assert second.diff.removed_keys == (gone,)
    assert set(second.diff.updated_keys) == {sold, cheaper}
    assert await setup.live() == {source_id: 29}
    hits = await setup.knowledge.search_items(
        tenant_id=setup.tenant_id, query=InventoryQuery(limit=50)
    )
    offered = {h.item.key for h in hits}
    assert gone not in offered and sold not in offered and cheaper in offered


@pytest.mark.parametrize(
    ("kind", "format"), [("csv", "csv"), ("json", "json"), ("plain", "selectors")]
)
async def test_feeds_and_selectors_read_the_same_cars(
    setup: Setup, site: FakeDealerSite, kind: str, format: str
) -> None:
    spec = {"csv": site.csv_spec, "json": site.json_spec, "plain": site.plain_spec}[kind]()
    source_id = await setup.source(spec)
    result = await setup.run(source_id)
    assert result.format == format and result.diff.added == 30 and result.skipped == 0
    assert set(result.diff.added_keys) <= set(site.keys())


async def test_a_feed_that_suddenly_lists_nothing_removes_nothing(
    setup: Setup, site: FakeDealerSite
) -> None:
    source_id = await setup.source(site.json_spec())
    assert (await setup.run(source_id)).diff.added == 30
    site.serve("/feed.json", '{"dealer": "Van Dijk", "vehicles": []}', content_type=JSON)
    try:
        error = await setup.fails(source_id)
    finally:
        site.restore("/feed.json")
    assert error.type == ERROR_WOULD_EMPTY and error.non_retryable
    assert "lists no items" in error.message and "30 items" in error.message
    assert "nothing was removed" in error.message
    assert await setup.live() == {source_id: 30}
    row = await setup.row(source_id)
    assert row.last_error == error.message  # final: recorded without "retrying"
    assert row.last_result is not None and row.last_result["diff"]["added"] == 30


async def test_an_empty_feed_of_a_new_source_is_no_error(
    setup: Setup, site: FakeDealerSite
) -> None:
    source_id = await setup.source(site.json_spec())
    site.serve("/feed.json", '{"vehicles": []}', content_type=JSON)
    try:
        result = await setup.run(source_id)
    finally:
        site.restore("/feed.json")
    assert result.diff.received == 0 and await setup.live() == {}


async def test_an_unreadable_document_is_final(setup: Setup, site: FakeDealerSite) -> None:
    source_id = await setup.source(site.json_spec())
    site.serve_broken("/feed.json")
    try:
        error = await setup.fails(source_id)
    finally:
        site.restore("/feed.json")
    assert error.type == ERROR_SOURCE_FORMAT and error.non_retryable
    assert error.message.startswith("Voorraad JSON: cannot read")
    assert (await setup.row(source_id)).last_error == error.message


async def test_http_errors_say_whether_to_retry(setup: Setup, site: FakeDealerSite) -> None:
    source_id = await setup.source(site.json_spec())
    site.fail_next(1, status=503, path="/feed.json")
    unavailable = await setup.fails(source_id)
    assert unavailable.type == ERROR_SOURCE_UNAVAILABLE and not unavailable.non_retryable
    assert "HTTP 503" in unavailable.message
    assert (await setup.row(source_id)).last_error == f"{unavailable.message} (attempt 1; retrying)"

    site.fail_next(1, status=404, path="/feed.json")
    missing = await setup.fails(source_id)
    assert missing.type == ERROR_SOURCE_REFUSED and missing.non_retryable
    assert "HTTP 404" in missing.message

    # The next good run clears the error.
    assert (await setup.run(source_id)).diff.added == 30
    assert (await setup.row(source_id)).last_error is None


async def test_a_loopback_source_is_refused_without_the_allowlist(
    sqlite_db: Database, site: FakeDealerSite
) -> None:
    tenant_id, _ = await make_tenant(sqlite_db)
    async with guarded_client([]) as strict:
        setup = Setup(sqlite_db, strict, tenant_id)
        source_id = await setup.source(site.json_spec())
        error = await setup.fails(source_id)
    assert error.type == ERROR_SOURCE_REFUSED and error.non_retryable
    assert "loopback" in error.message


async def test_a_deleted_source_is_final(setup: Setup) -> None:
    error = await setup.fails("src-gone")
    assert error.type == ERROR_SOURCE_NOT_FOUND and error.non_retryable


async def test_a_source_deleted_during_its_run_leaves_no_items(
    setup: Setup, site: FakeDealerSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    source_id = await setup.source(site.json_spec())
    fetch = setup.acts._fetch

    async def fetch_then_deleted(spec: SourceSpec) -> tuple[bytes, str, str]:
        fetched = await fetch(spec)
        # The API deletes the source (row, then its items: none yet) while this run fetched.
        async with setup.db.session() as session:
            await source_repo.delete_source(session, tenant_id=setup.tenant_id, source_id=source_id)
        return fetched

    monkeypatch.setattr(setup.acts, "_fetch", fetch_then_deleted)
    error = await setup.fails(source_id)
    assert error.type == ERROR_SOURCE_NOT_FOUND and error.non_retryable
    assert "deleted during the run" in error.message
    assert await setup.live() == {}


async def test_a_search_backend_that_is_down_is_retried_and_catches_up(
    sqlite_db: Database, http: httpx.AsyncClient, site: FakeDealerSite
) -> None:
    tenant_id, _ = await make_tenant(sqlite_db)
    setup = Setup(sqlite_db, http, tenant_id)
    index = FlakyIndex()  # a mirroring backend, as Weaviate
    setup.knowledge = KnowledgeService(sqlite_db, index)
    setup.acts = IngestionActivities(sqlite_db, http, setup.knowledge)
    source_id = await setup.source(site.json_spec())
    assert (await setup.run(source_id)).diff.added == 30
    assert len(index.items) == 30

    gone = site.keys()[0]
    site.remove_car(gone)
    index.down = True
    try:
        error = await setup.fails(source_id)
    finally:
        site.inventory[:] = make_inventory(30, seed=3)
    assert error.type == ERROR_INDEX_UNAVAILABLE and not error.non_retryable
    assert error.message.startswith("search backend flaky:") and "unreachable" in error.message
    assert (await setup.row(source_id)).last_error == f"{error.message} (attempt 1; retrying)"
    assert gone in index.items  # stored in the database, not yet in the backend

    # The retry's first step pushes what is pending, before fetching again.
    index.down = False
    site.remove_car(gone)
    try:
        again = await setup.run(source_id)
    finally:
        site.inventory[:] = make_inventory(30, seed=3)
    assert (again.diff.removed, again.diff.unchanged) == (0, 29)
    assert gone not in index.items and len(index.items) == 29
