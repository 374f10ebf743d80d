"""The worker process: loads plugins, builds activities with their clients, runs one Temporal
worker per task queue until asked to stop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Literal

import httpx
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.plugin_api import PluginContext
from models.db import Database, migrate
from models.netguard import guarded_client
from models.settings import Settings
from models.task_queues import ALL as ALL_QUEUES
from workers.client import connect, ensure_search_attributes
from workers.metrics_http import serve_worker_metrics
from workers.plugins import discover, registry_of, worker_plugins
from workers.versioning import deployment_config

log = logging.getLogger("leadflow.worker")

# Re-importing these per workflow run would cost time and memory for no determinism gain.
PASSTHROUGH_MODULES = (
    "pydantic",
    "pydantic_core",
    "annotated_types",
    "models",
    "yaml",
    "httpx",
    "opentelemetry",
)


SandboxMode = Literal["strict", "passthrough", "off"]


def workflow_runner(mode: SandboxMode = "strict") -> WorkflowRunner:
    """The runner of workflow code (LEADFLOW_WORKFLOW_SANDBOX).

    Measured per replay of a recorded 3-turn conversation (bench/README.md): the strict sandbox
    re-executes the workflow module per run and enters the sandbox once per payload to find its
    serialization context; passing every module through removes the re-imports but keeps the
    run-time refusal of non-deterministic calls; `off` removes both."""
    if mode == "off":
        return UnsandboxedWorkflowRunner()
    restrictions = SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES)
    if mode == "passthrough":
        # Safe for leadflow's workflow modules: they hold no module-level mutable state, so
        # sharing them between runs shares nothing a run could change.
        restrictions = restrictions.with_passthrough_all_modules()
    return SandboxedWorkflowRunner(restrictions=restrictions)


class WorkerProcess:
    """Everything a worker owns; `start()` builds it, `run()` serves until `stop()`."""

    def __init__(
        self,
        settings: Settings,
        *,
        queues: Sequence[str] | None = None,
        client: Client | None = None,
    ) -> None:
        self.settings = settings
        self.queues = tuple(queues or ALL_QUEUES)
        unknown = set(self.queues) - set(ALL_QUEUES)
        if unknown:
            raise ValueError(
                f"unknown task queue(s) {sorted(unknown)}; choose from {', '.join(ALL_QUEUES)}"
            )
        self._client = client
        # Here, not in start(): a half-configured version is refused like an unknown queue
        # (`leadflow worker` prints the ValueError and exits), before anything connects.
        self._deployment = deployment_config(settings)
        self._stop = asyncio.Event()
        self.workers: list[Worker] = []
        self.db: Database | None = None
        self.http: httpx.AsyncClient | None = None
        self.ctx: PluginContext | None = None

    async def start(self) -> None:
        url = self.settings.resolved_database_url
        await asyncio.to_thread(migrate, url)
        self.db = Database(url)
        # Tenants supply most of the URLs this client reaches (websites, CRM and channel base
        # URLs): every connection is guarded and no cookie outlives its request.
        self.http = guarded_client(
            self.settings.ssrf_allowlist,
            timeout=httpx.Timeout(30.0, connect=10.0),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )
        plugins = discover()
        ctx = PluginContext(
            settings=self.settings, db=self.db, http=self.http, registry=registry_of(plugins)
        )
        self.ctx = ctx
        per_queue = worker_plugins(plugins, ctx)
        client = self._client or await connect(self.settings, role="worker")
        if self._client is None:
            # The process is this worker (`leadflow worker`): it serves its own /metrics. One
            # given a client lives inside another program (tests, recorders) that owns the port.
            serve_worker_metrics(self.settings)
        try:
            await ensure_search_attributes(client)
        except RPCError as exc:
            # Temporal Cloud and the time-skipping test server manage attributes elsewhere.
            log.warning("could not register search attributes (%s); register them yourself", exc)
        for queue in self.queues:
            temporal_plugins = per_queue.get(queue)
            if not temporal_plugins:
                log.warning("no plugin provides anything for task queue %s; skipped", queue)
                continue
            self.workers.append(
                Worker(
                    client,
                    task_queue=queue,
                    plugins=temporal_plugins,
                    workflow_runner=workflow_runner(self.settings.workflow_sandbox),
                    max_concurrent_activities=self.settings.worker_max_concurrent_activities,
                    max_concurrent_workflow_tasks=self.settings.worker_max_concurrent_workflow_tasks,
                    max_concurrent_local_activities=self.settings.worker_max_concurrent_activities,
                    max_cached_workflows=self.settings.worker_max_cached_workflows,
                    graceful_shutdown_timeout=timedelta(seconds=10),
                    deployment_config=self._deployment,
                )
            )
        if not self.workers:
            raise RuntimeError("no worker to run: no plugin provides the requested task queues")

    async def run(self) -> None:
        if not self.workers:
            await self.start()
        async with contextlib.AsyncExitStack() as stack:
            for worker in self.workers:
                await stack.enter_async_context(worker)
            log.info("workers running on %s", ", ".join(w.task_queue for w in self.workers))
            # Everything imported and built so far lives as long as the process: keep it out of
            # the cyclic collector's scans. Full collections then look at what the turns create
            # only: less CPU per turn and no pauses of a few hundred milliseconds (issue 8).
            gc.freeze()
            await self._stop.wait()
        await self.close()

    def stop(self) -> None:
        self._stop.set()

    async def close(self) -> None:
        if self.ctx is not None and self.ctx.agent is not None:
            await self.ctx.agent.aclose()
        if self.ctx is not None and self.ctx.knowledge is not None:
            # Weaviate's gRPC channel and HTTP pool; the database index holds nothing.
            await self.ctx.knowledge.index.close()
        if self.http is not None:
            await self.http.aclose()
        if self.db is not None:
            await self.db.dispose()
