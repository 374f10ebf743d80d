"""Record EnrichmentJobWorkflow histories for the replay tests:
`uv run python -m tests.histories.record_enrichment enrichment_<version> [--signals]`.

Runs real jobs on a throwaway dev server with the real enrichment worker (every plugin loaded, as
`leadflow worker` builds it), the offline LLM provider and the fixture web on loopback, and writes
three histories next to this file:

    <prefix>_pause_resume.json     a job paused and resumed mid-way, then completed
    <prefix>_continue_as_new.json  the first run of a job with `records_per_run=3`: it ends in
                                   continue-as-new (the workflow's own threshold, made small)
    <prefix>_cancel.json           a job cancelled with records in flight

Job control goes through the workflow's updates, or with `--signals` through the signals that
jobs started before the updates existed still receive. Existing files are never overwritten: one
file per recorded version, so old shapes stay covered."""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from models import search_attributes
from models.db import Database, migrate
from models.enrichment import (
    QUERY_PROGRESS,
    SIGNAL_CANCEL,
    SIGNAL_PAUSE,
    SIGNAL_RESUME,
    WORKFLOW_NAME,
    CancelJob,
    EnrichmentJobInput,
    EnrichmentStep,
    JobProgress,
    PauseJob,
    ResumeJob,
    workflow_id,
)
from models.repo import enrichment as repo
from models.settings import Settings
from models.task_queues import ENRICHMENT
from tests.conftest import TEST_SECRET, make_tenant, temporal_cli_path
from tests.fakes.web import FakeWeb
from workers.devserver import SINGLE_PARTITION
from workers.worker import WorkerProcess

HERE = Path(__file__).parent
SETTLE_SECONDS = 60.0

# Update names, spelled here so that `--signals` also runs against code that predates them.
UPDATE_PAUSE = "pause_job"
UPDATE_RESUME = "resume_job"
UPDATE_CANCEL = "cancel_job"


def _csv(web: FakeWeb, names: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["company", "website"])
    writer.writeheader()
    writer.writerows({"company": n.title(), "website": web.site(n)} for n in names)
    return buffer.getvalue()


async def _until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    async def loop() -> None:
        while not await check():
            await asyncio.sleep(0.1)

    try:
        await asyncio.wait_for(loop(), SETTLE_SECONDS)
    except TimeoutError:
        raise RuntimeError(f"gave up waiting for {what}") from None


class Recorder:
    def __init__(self, client: Client, db: Database, web: FakeWeb, *, signals: bool) -> None:
        self.client = client
        self.db = db
        self.web = web
        self.signals = signals

    async def start(
        self, names: list[str], *, concurrency: int, records_per_run: int, heartbeat: float
    ) -> WorkflowHandle[Any, JobProgress]:
        tenant_id, _ = await make_tenant(self.db)
        job_id = uuid.uuid4().hex[:12]
        async with self.db.session() as session:
            await repo.create_job(
                session,
                job_id=job_id,
                tenant_id=tenant_id,
                filename="leads.csv",
                columns=["company", "website"],
                total=len(names),
                source=_csv(self.web, names),
                delimiter=",",
                concurrency=concurrency,
                steps=[s.value for s in EnrichmentStep],
                playbook=None,
            )
        return await self.client.start_workflow(
            WORKFLOW_NAME,
            EnrichmentJobInput(
                tenant_id=tenant_id,
                job_id=job_id,
                total=len(names),
                concurrency=concurrency,
                records_per_run=records_per_run,
                record_heartbeat_timeout_seconds=heartbeat,
            ),
            id=workflow_id(tenant_id, job_id),
            task_queue=ENRICHMENT,
            result_type=JobProgress,
        )

    async def progress(self, handle: WorkflowHandle[Any, JobProgress]) -> JobProgress:
        progress: JobProgress = await handle.query(QUERY_PROGRESS, result_type=JobProgress)
        return progress

    async def control(
        self,
        handle: WorkflowHandle[Any, JobProgress],
        signal: str,
        update: str,
        arg: PauseJob | ResumeJob | CancelJob,
    ) -> None:
        if self.signals:
            await handle.signal(signal, arg)
        else:
            await handle.execute_update(update, arg, id=f"record-{update}")

    async def pause_resume(self) -> WorkflowHandle[Any, JobProgress]:
        handle = await self.start(
            [f"pause-{i}" for i in range(8)], concurrency=2, records_per_run=500, heartbeat=30.0
        )

        async def two_done() -> bool:
            return (await self.progress(handle)).done >= 2

        await _until(two_done, "two records")
        await self.control(handle, SIGNAL_PAUSE, UPDATE_PAUSE, PauseJob(reason="recording"))

        async def drained() -> bool:
            p = await self.progress(handle)
            return p.status == "paused" and p.in_flight == 0

        await _until(drained, "the paused job to drain")
        await self.control(handle, SIGNAL_RESUME, UPDATE_RESUME, ResumeJob())
        await handle.result()
        return handle

    async def continue_as_new(self) -> WorkflowHandle[Any, JobProgress]:
        handle = await self.start(
            [f"can-{i}" for i in range(7)], concurrency=2, records_per_run=3, heartbeat=30.0
        )
        await handle.result()  # follows the runs to the last one
        # The first run is the one that ends in continue-as-new.
        return self.client.get_workflow_handle(
            handle.id, run_id=handle.first_execution_run_id, result_type=JobProgress
        )

    async def cancel(self) -> WorkflowHandle[Any, JobProgress]:
        handle = await self.start(
            [f"cancel-{i}" for i in range(20)], concurrency=3, records_per_run=500, heartbeat=2.0
        )

        async def started() -> bool:
            p = await self.progress(handle)
            return p.done >= 2 and p.in_flight > 0

        await _until(started, "records in flight")
        await self.control(handle, SIGNAL_CANCEL, UPDATE_CANCEL, CancelJob(reason="recording"))
        await handle.result()
        return handle


async def main(prefix: str, *, signals: bool) -> None:
    targets = {
        kind: HERE / f"{prefix}_{kind}.json"
        for kind in ("pause_resume", "continue_as_new", "cancel")
    }
    existing = [str(t) for t in targets.values() if t.exists()]
    if existing:
        # One file per recorded version, never overwritten: old shapes stay covered.
        raise SystemExit(f"{', '.join(existing)} exist(s); record a new version under a new name")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli_path(),
        data_converter=pydantic_data_converter,
        search_attributes=search_attributes.ALL,
        dev_server_log_level="error",
        dev_server_extra_args=[
            "--dynamic-config-value",
            "frontend.enableUpdateWorkflowExecution=true",
            *SINGLE_PARTITION,
        ],
    )
    try:
        with tempfile.TemporaryDirectory() as tmp, FakeWeb(latency=0.2) as web:
            url = f"sqlite+aiosqlite:///{tmp}/db.sqlite"
            migrate(url)
            db = Database(url)
            settings = Settings(
                database_url=url,
                data_dir=Path(tmp),
                secret_key=TEST_SECRET,
                ssrf_allowlist=["127.0.0.1"],
                duckduckgo_url=web.search_url,
                fetch_timeout_seconds=2.0,
            )
            worker = WorkerProcess(settings, queues=[ENRICHMENT], client=env.client)
            await worker.start()
            task = asyncio.create_task(worker.run())
            try:
                recorder = Recorder(env.client, db, web, signals=signals)
                for kind, record in (
                    ("pause_resume", recorder.pause_resume),
                    ("continue_as_new", recorder.continue_as_new),
                    ("cancel", recorder.cancel),
                ):
                    handle = await record()
                    history = await handle.fetch_history()
                    targets[kind].write_text(history.to_json())
                    print(f"wrote {targets[kind]} ({len(history.events)} events)")
            finally:
                worker.stop()
                await task
                await db.dispose()
    finally:
        await env.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prefix", help="e.g. enrichment_v2 (files <prefix>_<kind>.json)")
    parser.add_argument(
        "--signals",
        action="store_true",
        help="pause/resume/cancel by signal (the shape of jobs started before the updates)",
    )
    args = parser.parse_args()
    if not args.prefix.startswith("enrichment_") or args.prefix.endswith(".json"):
        raise SystemExit("the prefix is enrichment_<version>, without .json")
    asyncio.run(main(args.prefix, signals=args.signals))
