"""The dev server `up` starts keeps its search attributes cached
(workers/devserver.py CACHED_SEARCH_ATTRIBUTES) instead of re-reading them on every use: the
attributes registered by its flags must still be usable at once, by a start, an upsert and a
visibility query, on the real server `up` runs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.worker import Worker

from models import search_attributes as sa
from tests.live_stack import free_port
from workers.devserver import CACHED_SEARCH_ATTRIBUTES, start_dev_server, stop_dev_server

pytestmark = pytest.mark.timeout(120)


@workflow.defn(sandboxed=False)
class Scored:
    @workflow.run
    async def run(self, score: int) -> None:
        workflow.upsert_search_attributes(
            [sa.LEAD_SCORE.value_set(score), sa.LEAD_QUALITY.value_set("HOT")]
        )
        await workflow.wait_condition(lambda: False, timeout=timedelta(seconds=30))


@pytest.fixture
async def up_dev_server(tmp_path: Path) -> AsyncIterator[tuple[str, list[str]]]:
    port = free_port()
    proc = await asyncio.to_thread(
        start_dev_server,
        data_dir=tmp_path / "temporal",
        ip="127.0.0.1",
        port=port,
        ui_port=free_port(),
        namespace="default",
        log_file=tmp_path / "temporal.log",
    )
    try:
        yield f"127.0.0.1:{port}", [str(arg) for arg in proc.args]  # type: ignore[union-attr]
    finally:
        await asyncio.to_thread(stop_dev_server, proc)


async def test_registered_attributes_work_at_once_with_the_cache(
    up_dev_server: tuple[str, list[str]],
) -> None:
    address, argv = up_dev_server
    assert CACHED_SEARCH_ATTRIBUTES[1] in argv  # the server under test is the cached one
    client = await Client.connect(address)
    queue = f"sa-{uuid.uuid4().hex[:8]}"
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=queue, workflows=[Scored]):
        handle = await client.start_workflow(
            Scored.run,
            87,
            id=f"scored-{tenant}",
            task_queue=queue,
            search_attributes=TypedSearchAttributes([SearchAttributePair(sa.TENANT, tenant)]),
        )
        query = f"{sa.TENANT.name}='{tenant}' AND {sa.LEAD_SCORE.name} > 80"
        found: list[str] = []
        for _ in range(100):  # visibility is written after the task: poll the query, not a sleep
            found = [w.id async for w in client.list_workflows(query)]
            if found:
                break
            await asyncio.sleep(0.1)
        assert found == [handle.id]
        described = await handle.describe()
        assert described.typed_search_attributes[sa.LEAD_QUALITY] == "HOT"
        assert described.typed_search_attributes[sa.TENANT] == tenant
        await handle.terminate()
