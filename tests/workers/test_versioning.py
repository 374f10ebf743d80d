"""Worker Versioning: the settings that turn it on, and a rollout on a real dev server.

The rollout runs on a dev server of its own: a task queue with a current deployment version
sends its tasks to versioned workers only, so the shared session server's queues (which every
other test polls with unversioned workers) must never get one."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType, RoutingConfigUpdateState
from temporalio.api.workflowservice.v1 import (
    DescribeWorkerDeploymentRequest,
    DescribeWorkerDeploymentResponse,
    SetWorkerDeploymentCurrentVersionRequest,
)
from temporalio.client import Client, WorkflowHandle
from temporalio.common import VersioningBehavior
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from typer.testing import CliRunner

from models import search_attributes
from models.conversation import conversation_workflow_id
from models.db import Database, migrate
from models.enrichment import (
    UPDATE_RESUME,
    EnrichmentJobInput,
    EnrichmentStep,
    JobControlResult,
    JobProgress,
    JobStatus,
    RecordOptions,
    ResumeJob,
    workflow_id,
)
from models.repo import enrichment as repo
from models.settings import Settings
from models.task_queues import ENRICHMENT
from models.tenant import TenantSettings
from tests.conftest import make_tenant, temporal_cli_path
from tests.fakes.waha import FakeWaha
from tests.stack import live_stack
from workers.cli import app
from workers.client import data_converter
from workers.devserver import SINGLE_PARTITION
from workers.versioning import VersioningMisconfigured, deployment_config
from workers.worker import WorkerProcess
from workflows.enrichment import EnrichmentJobWorkflow

pytestmark = pytest.mark.timeout(240)

SETTLE = 90.0
LEAD = "31687654321@c.us"


# ---- the settings ----------------------------------------------------------------------------


def test_unversioned_by_default(settings_factory: Callable[..., Settings], sqlite_url: str) -> None:
    assert deployment_config(settings_factory(sqlite_url)) is None


def test_a_name_and_a_build_id_make_an_auto_upgrade_version(
    settings_factory: Callable[..., Settings], sqlite_url: str
) -> None:
    config = deployment_config(
        settings_factory(
            sqlite_url, worker_deployment_name="leadflow", worker_build_id="2026.11.28-a"
        )
    )
    assert config is not None
    assert config.version.to_canonical_string() == "leadflow.2026.11.28-a"
    assert config.use_worker_versioning
    assert config.default_versioning_behavior is VersioningBehavior.AUTO_UPGRADE


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"worker_deployment_name": "leadflow"}, "LEADFLOW_WORKER_BUILD_ID is not set"),
        ({"worker_build_id": "abc123"}, "LEADFLOW_WORKER_DEPLOYMENT_NAME is not set"),
        ({"worker_deployment_name": "  ", "worker_build_id": "abc"}, "DEPLOYMENT_NAME is not set"),
        (
            {"worker_deployment_name": "lead.flow", "worker_build_id": "abc"},
            "'lead.flow' may not contain a dot",
        ),
    ],
)
def test_half_a_configuration_is_refused_naming_what_is_wrong(
    settings_factory: Callable[..., Settings],
    sqlite_url: str,
    overrides: dict[str, str],
    named: str,
) -> None:
    with pytest.raises(VersioningMisconfigured, match=named):
        deployment_config(settings_factory(sqlite_url, **overrides))


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADFLOW_WORKER_DEPLOYMENT_NAME", "leadflow")
    monkeypatch.setenv("LEADFLOW_WORKER_BUILD_ID", "sha-1f2e3d")
    settings = Settings()
    assert (settings.worker_deployment_name, settings.worker_build_id) == ("leadflow", "sha-1f2e3d")


@pytest.fixture
def root_logging() -> Iterator[None]:
    """`leadflow worker` routes the root logger to the CliRunner's stream, which closes when the
    command ends: later tests' records would hit a closed file. Put the root logger back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)


@pytest.mark.usefixtures("root_logging")
def test_leadflow_worker_refuses_half_a_version_before_connecting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LEADFLOW_SECRET_KEY", "versioning-test-secret")
    monkeypatch.setenv("LEADFLOW_PAYLOAD_KEYS", "7ZitmTi9GtSiUxeEz1OFhX7SrA6pDxU9yaXhW6uhdlQ=")
    monkeypatch.setenv("LEADFLOW_TEMPORAL_ADDRESS", "127.0.0.1:9")  # never reached
    monkeypatch.setenv("LEADFLOW_WORKER_BUILD_ID", "sha-1f2e3d")
    monkeypatch.setenv("COLUMNS", "240")
    result = CliRunner().invoke(app, ["worker"])
    assert result.exit_code != 0
    said = " ".join(result.output.split())
    assert "LEADFLOW_WORKER_DEPLOYMENT_NAME is not set" in said, result.output
    assert "Traceback" not in result.output


# ---- a rollout on a real dev server ------------------------------------------------------------


@pytest.fixture(scope="module")
async def versioned_env() -> AsyncIterator[WorkflowEnvironment]:
    keys = os.environ.setdefault(
        "LEADFLOW_PAYLOAD_KEYS", "7ZitmTi9GtSiUxeEz1OFhX7SrA6pDxU9yaXhW6uhdlQ="
    )
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli_path(),
        data_converter=data_converter(keys),
        search_attributes=search_attributes.ALL,
        dev_server_log_level="error",
        dev_server_extra_args=[*SINGLE_PARTITION],
    )
    try:
        yield env
    finally:
        await env.shutdown()


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    async def loop() -> None:
        while not await check():
            await asyncio.sleep(0.2)

    try:
        await asyncio.wait_for(loop(), SETTLE)
    except TimeoutError:
        raise AssertionError(f"never: {what}") from None


async def set_current(client: Client, deployment: str, build_id: str) -> None:
    """What `temporal worker deployment set-current-version` does, once the version's workers
    poll (a version exists on the server once a worker of it has polled); returns when the
    server says the new routing reached every task queue of the version (it propagates
    asynchronously: until then a task may still go to the previous version)."""

    async def described() -> DescribeWorkerDeploymentResponse | None:
        try:
            return await client.workflow_service.describe_worker_deployment(
                DescribeWorkerDeploymentRequest(
                    namespace=client.namespace, deployment_name=deployment
                )
            )
        except RPCError:
            return None

    async def polled() -> bool:
        answer = await described()
        return answer is not None and any(
            v.deployment_version.build_id == build_id
            for v in answer.worker_deployment_info.version_summaries
        )

    async def routed() -> bool:
        answer = await described()
        if answer is None:
            return False
        info = answer.worker_deployment_info
        return bool(
            info.routing_config.current_deployment_version.build_id == build_id
            and info.routing_config_update_state
            == RoutingConfigUpdateState.ROUTING_CONFIG_UPDATE_STATE_COMPLETED
        )

    async def made_current() -> bool:
        try:
            await client.workflow_service.set_worker_deployment_current_version(
                SetWorkerDeploymentCurrentVersionRequest(
                    namespace=client.namespace,
                    deployment_name=deployment,
                    build_id=build_id,
                    identity="test_versioning",
                )
            )
        except RPCError as exc:
            # Refused while a task queue of the current version has no poller of this one yet
            # ("missing active task queues"): its workers are still starting.
            if exc.status != RPCStatusCode.FAILED_PRECONDITION:
                raise
            return False
        return True

    await until(polled, f"{deployment}.{build_id} polls")
    await until(made_current, f"{deployment}.{build_id} accepted as current")
    await until(routed, f"{deployment}.{build_id} is current on every task queue")


async def task_versions(
    handle: WorkflowHandle[Any, Any], *, after_last_signal: bool = False
) -> list[str]:
    """The build id that completed each workflow task, in order (the history records it);
    with `after_last_signal`, only the tasks after the last signal (the last message)."""
    out: list[str] = []
    async for event in handle.fetch_history_events():
        if (
            after_last_signal
            and event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        ):
            out = []
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            out.append(event.workflow_task_completed_event_attributes.deployment_version.build_id)
    return out


@pytest.fixture
def make_settings(
    settings_factory: Callable[..., Settings], sqlite_url: str
) -> Callable[[str, str], Settings]:
    def make(deployment: str, build_id: str) -> Settings:
        return settings_factory(
            sqlite_url, worker_deployment_name=deployment, worker_build_id=build_id
        )

    return make


@asynccontextmanager
async def running(process: WorkerProcess) -> AsyncIterator[WorkerProcess]:
    """A worker process as `leadflow worker` runs it (every plugin, the settings' versioning)."""
    await process.start()
    task = asyncio.create_task(process.run())
    try:
        yield process
    finally:
        process.stop()
        await asyncio.wait_for(task, 60)


async def test_a_paused_job_resumed_after_a_rollout_finishes_on_the_new_build(
    versioned_env: WorkflowEnvironment, make_settings: Callable[[str, str], Settings]
) -> None:
    """The worked example of docs/upgrades.md: an enrichment job runs on build A, build B is
    rolled out (its workers start, then it is made current), and the job's next workflow task
    runs on B (AUTO_UPGRADE); A's workers may then stop."""
    client = versioned_env.client
    deployment = f"leadflow-{uuid.uuid4().hex[:6]}"
    settings_a = make_settings(deployment, "build-a")
    migrate(settings_a.resolved_database_url)
    db = Database(settings_a.resolved_database_url)
    tenant_id, _ = await make_tenant(db)
    job_id = uuid.uuid4().hex[:12]
    async with db.session() as session:
        await repo.create_job(
            session,
            job_id=job_id,
            tenant_id=tenant_id,
            filename="leads.csv",
            columns=["company"],
            total=2,
            source="company\nAcme\nGlobex\n",
            delimiter=",",
            concurrency=2,
            steps=[EnrichmentStep.EMAIL.value],
            playbook=None,
        )
    try:
        async with running(WorkerProcess(settings_a, queues=[ENRICHMENT], client=client)):
            await set_current(client, deployment, "build-a")
            handle = await client.start_workflow(
                EnrichmentJobWorkflow.run,
                EnrichmentJobInput(
                    tenant_id=tenant_id,
                    job_id=job_id,
                    total=2,
                    concurrency=2,
                    records_per_run=100,
                    options=RecordOptions(steps=(EnrichmentStep.EMAIL,)),
                    paused=True,  # as a job an operator paused: it waits for a resume
                ),
                id=workflow_id(tenant_id, job_id),
                task_queue=ENRICHMENT,
            )

            async def stored_and_waiting() -> bool:
                progress = await handle.query(EnrichmentJobWorkflow.progress)
                return (
                    progress.status is JobStatus.PAUSED
                    and "build-a" in await task_versions(handle)
                    and len(await task_versions(handle)) >= 2
                )

            await until(stored_and_waiting, "the job stored its rows on build A and waits")

            settings_b = make_settings(deployment, "build-b")
            async with running(WorkerProcess(settings_b, queues=[ENRICHMENT], client=client)):
                await set_current(client, deployment, "build-b")
                resumed = await handle.execute_update(
                    UPDATE_RESUME, ResumeJob(), result_type=JobControlResult
                )
                assert resumed.status is JobStatus.RUNNING
                progress: JobProgress = await handle.result()
                versions = await task_versions(handle)
                description = await handle.describe()
    finally:
        await db.dispose()

    assert progress.done + progress.failed == 2
    first_b = versions.index("build-b")
    assert first_b >= 2 and set(versions[:first_b]) == {"build-a"}, versions
    assert set(versions[first_b:]) == {"build-b"}, versions
    versioning = description.raw_description.workflow_execution_info.versioning_info
    assert versioning.behavior == VersioningBehavior.AUTO_UPGRADE.value
    assert versioning.deployment_version.build_id == "build-b"


async def test_a_conversation_running_through_a_rollout_moves_to_the_new_build(
    versioned_env: WorkflowEnvironment,
    make_settings: Callable[[str, str], Settings],
    fake_waha: FakeWaha,
) -> None:
    """The issue's case: a lead writes, is answered by build A; build B's workers start and B
    is made current while the conversation is open (A still polling); the lead's next message
    is handled by B, and the conversation goes on there."""
    client = versioned_env.client
    deployment = f"leadflow-{uuid.uuid4().hex[:6]}"
    settings_a = make_settings(deployment, "build-a").model_copy(update={"debounce_seconds": 0.3})
    async with live_stack(
        client,
        settings_a,
        tenant_settings=TenantSettings(playbook="car_dealership", waha=fake_waha.settings()),
    ) as stack:
        await set_current(client, deployment, "build-a")
        handle = client.get_workflow_handle(conversation_workflow_id(stack.tenant_id, "waha", LEAD))

        async def say(text: str, n: int) -> None:
            raw, headers = fake_waha.message_webhook(from_=LEAD, body=text)
            response = await stack.http.post(
                f"/webhooks/waha/{stack.tenant_id}",
                content=raw,
                headers={**headers, "content-type": "application/json"},
            )
            assert response.status_code in (200, 202), response.text
            await stack.wait_for(
                lambda: len([b for b in fake_waha.sent if b.get("chatId") == LEAD]) >= n,
                timeout=SETTLE,
                what=f"reply {n}",
            )

        await say("Hoi, ik zoek een Volkswagen Golf rond de 25.000 euro", 1)
        settings_b = settings_a.model_copy(update={"worker_build_id": "build-b"})
        async with running(WorkerProcess(settings_b, client=client)):
            await set_current(client, deployment, "build-b")
            await say("Kan ik zaterdag een proefrit maken?", 2)
            versions = await task_versions(handle)
            after_second = await task_versions(handle, after_last_signal=True)
            description = await handle.describe()

    # A's tasks, then B's: never back to A once B took over (A was still polling).
    first_b = versions.index("build-b")
    assert first_b > 0 and set(versions[:first_b]) == {"build-a"}, versions
    assert set(versions[first_b:]) == {"build-b"}, versions
    # the second message's turn ran entirely on B
    assert after_second and set(after_second) == {"build-b"}, after_second
    versioning = description.raw_description.workflow_execution_info.versioning_info
    assert versioning.behavior == VersioningBehavior.AUTO_UPGRADE.value
    assert versioning.deployment_version.build_id == "build-b"


@workflow.defn(name="VersioningProbe", versioning_behavior=VersioningBehavior.PINNED)
class PinnedProbe:
    """A test-only workflow that opts out of the default: PINNED stays on its first version."""

    def __init__(self) -> None:
        self._go = False

    @workflow.signal
    def go(self) -> None:
        self._go = True

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self._go)
        return "done"


async def test_a_pinned_workflow_stays_on_its_build_after_the_rollout(
    versioned_env: WorkflowEnvironment, make_settings: Callable[[str, str], Settings]
) -> None:
    client = versioned_env.client
    deployment = f"pinned-{uuid.uuid4().hex[:6]}"
    task_queue = f"tq-{uuid.uuid4().hex[:8]}"

    def worker(build_id: str) -> Worker:
        return Worker(
            client,
            task_queue=task_queue,
            workflows=[PinnedProbe],
            # a workflow defined in a test module: the sandbox would re-import all of it
            workflow_runner=UnsandboxedWorkflowRunner(),
            deployment_config=deployment_config(make_settings(deployment, build_id)),
        )

    async with worker("build-a"):
        await set_current(client, deployment, "build-a")
        handle = await client.start_workflow(
            PinnedProbe.run, id=f"probe-{uuid.uuid4().hex[:6]}", task_queue=task_queue
        )
        await until(
            lambda: _has_task(handle), "the probe's first workflow task completed on build A"
        )
        async with worker("build-b"):
            await set_current(client, deployment, "build-b")
            await handle.signal(PinnedProbe.go)
            assert await handle.result() == "done"
            versions = await task_versions(handle)
    assert versions and set(versions) == {"build-a"}, versions


async def _has_task(handle: WorkflowHandle[Any, Any]) -> bool:
    return bool(await task_versions(handle))
