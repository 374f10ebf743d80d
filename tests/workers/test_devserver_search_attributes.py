"""The dev server `up` starts (workers/devserver.py) takes leadflow's search attributes from
its flags at once: a start, an upsert and a visibility query by them work on a fresh data dir.
(A data dir an older server created is tests/workers/test_up_supervised.py.)"""

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
from workers.devserver import start_dev_server, stop_dev_server

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
async def up_dev_server(tmp_path: Path) -> AsyncIterator[str]:
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
        yield f"127.0.0.1:{port}"
    finally:
        await asyncio.to_thread(stop_dev_server, proc)


async def test_leadflow_attributes_work_at_once(up_dev_server: str) -> None:
    client = await Client.connect(up_dev_server)
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
