"""Inventory sources end to end on the real dev server (the time-skipping server has no
Schedules): the API creates the source and its Schedule, the real worker runs the ingestion
workflow with the real activities against the fake dealer site on loopback, vanished cars stop
being offered, a feed that suddenly lists nothing removes nothing, and deleting the source
deletes its schedule and its items. One stack (database, worker, API) for the module."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.service import RPCError, RPCStatusCode

from models.erasure import delete_tenant
from models.knowledge.ingestion import (
    IngestResult,
    ingestion_workflow_id,
    source_schedule_id,
)
from models.knowledge.schedules import (
    delete_tenant_schedules,
    describe_source_schedule,
    ensure_source_schedule,
    pause_source_schedule,
    unpause_source_schedule,
)
from models.repo import inventory as inventory_repo
from models.settings import Settings
from models.task_queues import ENRICHMENT
from tests.conftest import TEST_SECRET, make_tenant
from tests.fakes.dealer import JSON, FakeDealerSite, make_inventory
from tests.stack import LiveStack, live_stack

pytestmark = pytest.mark.timeout(180)

STOCK = 40
GOLF = {"key": "API-1", "make": "Volkswagen", "model": "Golf", "price": 18950}


@pytest.fixture(scope="module")
def site() -> Iterator[FakeDealerSite]:
    with FakeDealerSite(make_inventory(STOCK, seed=11)) as running:
        yield running


@pytest.fixture(scope="module")
async def stack(
    temporal_client: Client, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveStack]:
    data: Path = tmp_path_factory.mktemp("ingestion")
    settings = Settings(
        data_dir=data,
        database_url=f"sqlite+aiosqlite:///{data / 'leadflow.db'}",
        secret_key=TEST_SECRET,
        ssrf_allowlist=["127.0.0.1"],  # the dealer site is on loopback
    )
    async with live_stack(temporal_client, settings, queues=[ENRICHMENT]) as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh_stock(site: FakeDealerSite) -> Iterator[None]:
    yield
    site.restore()
    with site.lock:
        site.inventory[:] = make_inventory(STOCK, seed=11)


async def _create(stack: LiveStack, spec: dict[str, Any]) -> dict[str, Any]:
    created = await stack.http.post("/api/v1/inventory/sources", headers=stack.auth, json=spec)
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


async def _run_now(stack: LiveStack, source_id: str) -> str:
    started = await stack.http.post(
        f"/api/v1/inventory/sources/{source_id}/run", headers=stack.auth
    )
    assert started.status_code == 202, started.text
    workflow_id: str = started.json()["workflow_id"]
    return workflow_id


async def _result(stack: LiveStack, workflow_id: str) -> IngestResult:
    handle = stack.client.get_workflow_handle(workflow_id, result_type=IngestResult)
    result: IngestResult = await handle.result()
    return result


async def _source(stack: LiveStack, source_id: str) -> dict[str, Any]:
    got = await stack.http.get(f"/api/v1/inventory/sources/{source_id}", headers=stack.auth)
    assert got.status_code == 200, got.text
    body: dict[str, Any] = got.json()
    return body


async def _offered(stack: LiveStack, **params: Any) -> list[str]:
    found = await stack.http.get(
        "/api/v1/inventory", headers=stack.auth, params={"limit": 50, **params}
    )
    assert found.status_code == 200, found.text
    return [hit["item"]["key"] for hit in found.json()["items"]]


async def test_a_source_is_fetched_on_its_schedule_and_vanished_cars_are_removed(
    stack: LiveStack, site: FakeDealerSite
) -> None:
    spec = site.listing_spec().model_dump(mode="json", exclude={"every_minutes"})
    source = await _create(stack, spec)
    source_id = source["id"]
    schedule = source["schedule"]
    # The deployment's default interval, and the next runs a real schedule has computed.
    assert source["every_minutes"] == 10 and schedule["every_minutes"] == 10
    assert schedule["schedule_id"] == source_schedule_id(stack.tenant_id, source_id)
    assert not schedule["paused"] and len(schedule["next_runs"]) == 3
    times = [datetime.fromisoformat(t) for t in schedule["next_runs"]]
    assert [b - a for a, b in itertools.pairwise(times)] == [timedelta(minutes=10)] * 2

    # Run now: the real worker fetches the page through the guarded client.
    workflow_id = await _run_now(stack, source_id)
    assert workflow_id == ingestion_workflow_id(stack.tenant_id, source_id)
    first = await _result(stack, workflow_id)
    assert (first.format, first.diff.added, first.diff.removed) == ("json-ld", STOCK, 0)
    golf = await _offered(stack, make="volkswagen", model="Golf", fuel="diesel", max_price=25000)
    assert "VD-00001" in golf
    shown = await _source(stack, source_id)
    assert shown["items"] == STOCK and shown["last_error"] is None
    assert shown["last_result"]["diff"]["added"] == STOCK

    # The schedule's own action (as when it fires): the workflow it starts removes what vanished.
    site.remove_car("VD-00001")
    site.sell("VD-00002")
    handle = stack.client.get_schedule_handle(schedule["schedule_id"])
    await handle.trigger()

    async def scheduled_run() -> str | None:
        view = await describe_source_schedule(
            stack.client, tenant_id=stack.tenant_id, source_id=source_id
        )
        return view.recent_runs[0].workflow_id if view.recent_runs else None

    scheduled_id = await stack.wait_for(scheduled_run, what="the triggered run")
    assert scheduled_id.startswith(ingestion_workflow_id(stack.tenant_id, source_id))
    second = await _result(stack, scheduled_id)
    assert (second.diff.removed, second.diff.updated, second.diff.added) == (1, 1, 0)
    assert second.diff.removed_keys == ("VD-00001",)
    offered = await _offered(stack)
    assert "VD-00001" not in offered and "VD-00002" not in offered
    assert (await _source(stack, source_id))["items"] == STOCK - 1

    # Paused with a note (Temporal shows it), then running again.
    paused = await stack.http.patch(
        f"/api/v1/inventory/sources/{source_id}",
        headers=stack.auth,
        json={"paused": True, "note": "dealer moves to a new website"},
    )
    assert paused.status_code == 200, paused.text
    assert paused.json()["schedule"]["paused"] is True
    assert paused.json()["schedule"]["note"] == "dealer moves to a new website"
    assert paused.json()["spec"]["paused"] is True
    resumed = await stack.http.patch(
        f"/api/v1/inventory/sources/{source_id}",
        headers=stack.auth,
        json={"paused": False, "every_minutes": 30},
    )
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["schedule"]["paused"] is False
    assert resumed.json()["schedule"]["every_minutes"] == 30

    # Deleting the source deletes its schedule and its items.
    deleted = await stack.http.delete(f"/api/v1/inventory/sources/{source_id}", headers=stack.auth)
    assert deleted.status_code == 204, deleted.text
    with pytest.raises(RPCError) as gone:
        await handle.describe()
    assert gone.value.status == RPCStatusCode.NOT_FOUND
    assert await _offered(stack, include_unavailable=True) == []
    missing = await stack.http.get(f"/api/v1/inventory/sources/{source_id}", headers=stack.auth)
    assert missing.status_code == 404


async def test_a_feed_that_suddenly_lists_nothing_fails_the_run_and_removes_nothing(
    stack: LiveStack, site: FakeDealerSite
) -> None:
    source = await _create(stack, site.json_spec(every_minutes=60).model_dump(mode="json"))
    source_id = source["id"]
    assert source["schedule"]["every_minutes"] == 60
    first = await _result(stack, await _run_now(stack, source_id))
    assert first.diff.added == STOCK

    site.serve("/feed.json", '{"vehicles": []}', content_type=JSON)
    with pytest.raises(WorkflowFailureError) as failed:
        await _result(stack, await _run_now(stack, source_id))
    assert "lists no items" in str(failed.value.cause)
    shown = await _source(stack, source_id)
    assert shown["items"] == STOCK
    assert "lists no items" in shown["last_error"] and "nothing was removed" in shown["last_error"]
    assert shown["last_result"]["diff"]["added"] == STOCK  # the last good run stays
    assert len(await _offered(stack)) == STOCK

    deleted = await stack.http.delete(f"/api/v1/inventory/sources/{source_id}", headers=stack.auth)
    assert deleted.status_code == 204


async def test_schedule_functions_pause_unpause_update_and_delete_for_a_tenant(
    stack: LiveStack,
) -> None:
    tenant_id = f"t-{uuid.uuid4().hex[:8]}"  # schedules need no row: these are Temporal's side
    for source_id in ("srca", "srcb"):
        await ensure_source_schedule(
            stack.client,
            tenant_id=tenant_id,
            source_id=source_id,
            name="Occasions",
            every_minutes=10,
            paused=False,
        )
    await pause_source_schedule(
        stack.client, tenant_id=tenant_id, source_id="srca", note="holiday closure"
    )
    view = await describe_source_schedule(stack.client, tenant_id=tenant_id, source_id="srca")
    assert (view.paused, view.note) == (True, "holiday closure")
    # An update that keeps the pause keeps its note; the interval changes.
    await ensure_source_schedule(
        stack.client,
        tenant_id=tenant_id,
        source_id="srca",
        name="Occasions",
        every_minutes=15,
        paused=True,
    )
    view = await describe_source_schedule(stack.client, tenant_id=tenant_id, source_id="srca")
    assert (view.paused, view.note, view.every_minutes) == (True, "holiday closure", 15)
    await unpause_source_schedule(stack.client, tenant_id=tenant_id, source_id="srca")
    view = await describe_source_schedule(stack.client, tenant_id=tenant_id, source_id="srca")
    assert not view.paused and view.next_runs

    # Tenant deletion: every schedule of the tenant, another tenant's left alone.
    other = f"t-{uuid.uuid4().hex[:8]}"
    await ensure_source_schedule(
        stack.client,
        tenant_id=other,
        source_id="srca",
        name="Occasions",
        every_minutes=10,
        paused=False,
    )
    deleted = await delete_tenant_schedules(
        stack.client, tenant_id=tenant_id, source_ids=["srca", "srcb"]
    )
    assert deleted == 2
    for source_id in ("srca", "srcb"):
        gone = await describe_source_schedule(
            stack.client, tenant_id=tenant_id, source_id=source_id
        )
        assert not gone.exists
    kept = await describe_source_schedule(stack.client, tenant_id=other, source_id="srca")
    assert kept.exists
    await delete_tenant_schedules(stack.client, tenant_id=other, source_ids=["srca"])


async def test_deleting_a_tenant_deletes_its_sources_schedules_and_items(
    stack: LiveStack, site: FakeDealerSite
) -> None:
    tenant_id, key = await make_tenant(stack.db)
    auth = {"Authorization": f"Bearer {key}"}
    created = await stack.http.post(
        "/api/v1/inventory/sources",
        headers=auth,
        json=site.csv_spec().model_dump(mode="json"),
    )
    assert created.status_code == 201, created.text
    source_id = created.json()["id"]
    started = await stack.http.post(f"/api/v1/inventory/sources/{source_id}/run", headers=auth)
    assert (await _result(stack, started.json()["workflow_id"])).diff.added == STOCK
    put = await stack.http.put("/api/v1/inventory", headers=auth, json={"items": [GOLF]})
    assert put.status_code == 200, put.text

    async with stack.db.session() as session:
        done = await delete_tenant(stack.client, session, tenant_id=tenant_id)
    assert done.schedules == 1
    assert done.rows["inventory_items"] == STOCK + 1 and done.rows["knowledge_sources"] == 1
    view = await describe_source_schedule(stack.client, tenant_id=tenant_id, source_id=source_id)
    assert not view.exists
    async with stack.db.session() as session:
        assert await inventory_repo.counts(session, tenant_id=tenant_id) == {}
