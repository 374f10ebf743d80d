"""The real stack for end-to-end tests: a migrated database, a tenant, the worker process with
every plugin (as `leadflow worker` builds it) and the API served on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from api.app import create_app
from models.db import Database
from models.settings import Settings
from models.tenant import TenantSettings
from tests.conftest import make_tenant, migrate_sqlite
from tests.live_stack import serve_app
from workers.worker import WorkerProcess


@dataclass
class LiveStack:
    settings: Settings
    db: Database
    client: Client
    tenant_id: str
    api_key: str
    api_url: str
    http: httpx.AsyncClient
    worker: WorkerProcess | None = None
    worker_task: asyncio.Task[None] | None = None
    queues: Sequence[str] | None = None
    started: list[str] = field(default_factory=list)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    async def start_worker(self) -> None:
        self.worker = WorkerProcess(self.settings, queues=self.queues, client=self.client)
        await self.worker.start()
        self.worker_task = asyncio.create_task(self.worker.run())

    async def stop_worker(self, *, abrupt: bool = False) -> None:
        """Stop the worker; `abrupt` cancels it mid-flight like a killed process would stop."""
        if self.worker is None or self.worker_task is None:
            return
        if abrupt:
            self.worker_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.worker_task
            with contextlib.suppress(Exception):
                await self.worker.close()
        else:
            self.worker.stop()
            await self.worker_task
        self.worker, self.worker_task = None, None

    async def wait_for(
        self, predicate: Any, *, timeout: float = 30.0, interval: float = 0.1, what: str = ""
    ) -> Any:
        """Poll an async or sync predicate until it returns something truthy."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = predicate()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
            await asyncio.sleep(interval)

    async def terminate_all(self) -> None:
        """Leave nothing running on the shared dev server for later tests to trip over."""
        for query in (
            f'LeadflowTenant="{self.tenant_id}"',
            f'WorkflowId STARTS_WITH "crm:{self.tenant_id}:"',
            f'WorkflowId STARTS_WITH "enrich:{self.tenant_id}:"',
        ):
            with contextlib.suppress(RPCError):
                async for wf in self.client.list_workflows(query):
                    if wf.status == WorkflowExecutionStatus.RUNNING:
                        with contextlib.suppress(RPCError):
                            await self.client.get_workflow_handle(wf.id).terminate("test over")
        for workflow_id in self.started:
            with contextlib.suppress(RPCError):
                await self.client.get_workflow_handle(workflow_id).terminate("test over")


@contextlib.asynccontextmanager
async def live_stack(
    client: Client,
    settings: Settings,
    *,
    tenant_settings: TenantSettings | None = None,
    queues: Sequence[str] | None = None,
    start_worker: bool = True,
) -> AsyncIterator[LiveStack]:
    migrate_sqlite(settings.resolved_database_url)  # a fresh SQLite file: a template copy
    db = Database(settings.resolved_database_url)
    tenant_id, key = await make_tenant(
        db, tenant_id=f"t-{uuid.uuid4().hex[:8]}", settings=tenant_settings
    )
    app = create_app(settings)
    async with serve_app(app) as url:
        app.state.leadflow.temporal = client
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            stack = LiveStack(
                settings=settings,
                db=db,
                client=client,
                tenant_id=tenant_id,
                api_key=key,
                api_url=url,
                http=http,
                queues=queues,
            )
            try:
                if start_worker:
                    await stack.start_worker()
                yield stack
            finally:
                await stack.terminate_all()
                await stack.stop_worker(abrupt=True)
                await db.dispose()
