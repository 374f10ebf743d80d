"""`/metrics` end to end: the API on loopback and a real `leadflow worker` process (conversations
and enrichment) on the real Temporal dev server; one WAHA conversation answered through a fake
WAHA and one enrichment job over the fixture web. Then the worker's `/metrics` (its own port)
and the API's carry leadflow's series with the values that run implies, and the Temporal SDK's."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from models.settings import Settings
from models.task_queues import CONVERSATIONS, ENRICHMENT
from models.tenant import TenantSettings
from tests.fakes.waha import FakeWaha
from tests.fakes.web import FakeWeb
from tests.live_stack import free_port
from tests.stack import LiveStack, live_stack
from workers.client import connect

LEAD = "31612345678@c.us"


@pytest.fixture
def web() -> Iterator[FakeWeb]:
    with FakeWeb(latency=0.02) as fake:
        yield fake


Samples = list[Sample]


async def scrape(url: str) -> Samples:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(url)
    assert response.status_code == 200, response.text
    return [s for f in text_string_to_metric_families(response.text) for s in f.samples]


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum over the samples of `name` whose labels include `labels`."""
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def spawn_worker(
    settings: Settings, temporal_address: str, metrics_port: int, log: Path
) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "LEADFLOW_TEMPORAL_ADDRESS": temporal_address,
        "LEADFLOW_DATABASE_URL": settings.resolved_database_url,
        "LEADFLOW_SECRET_KEY": settings.secret_key.get_secret_value(),
        "LEADFLOW_DATA_DIR": str(settings.data_dir),
        "LEADFLOW_DEBOUNCE_SECONDS": str(settings.debounce_seconds),
        "LEADFLOW_DUCKDUCKGO_URL": settings.duckduckgo_url,
        "LEADFLOW_FETCH_TIMEOUT_SECONDS": str(settings.fetch_timeout_seconds),
        "LEADFLOW_WORKER_METRICS_PORT": str(metrics_port),
    }
    leadflow = str(Path(sys.executable).parent / "leadflow")
    handle = log.open("wb")
    proc = await asyncio.create_subprocess_exec(
        leadflow, "worker", "--queue", CONVERSATIONS, "--queue", ENRICHMENT,
        env=env, stdout=handle, stderr=handle,
    )  # fmt: skip
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise AssertionError(f"worker exited: {log.read_text()}")
        if "workers running" in log.read_text():
            return proc
        await asyncio.sleep(0.2)
    proc.kill()  # not left polling the dev server's queues for the next tests
    await proc.wait()
    raise AssertionError(f"worker did not start: {log.read_text()}")


async def run_one_conversation(stack: LiveStack, fake_waha: FakeWaha) -> None:
    raw, headers = fake_waha.message_webhook(from_=LEAD, body="Hi! Do you still have the Golf?")
    response = await stack.http.post(
        f"/webhooks/waha/{stack.tenant_id}",
        content=raw,
        headers={**headers, "content-type": "application/json"},
    )
    assert response.status_code == 202, response.text
    await stack.wait_for(
        lambda: [b for b in fake_waha.sent if b.get("chatId") == LEAD],
        timeout=90,
        what="the reply at the fake WAHA",
    )


async def run_one_job(stack: LiveStack, web: FakeWeb) -> None:
    text = f"Company;Website\nAcme;{web.site('acme')}\nGone Inc;{web.site('missing')}\n"
    response = await stack.http.post(
        "/api/v1/jobs",
        headers=stack.auth,
        files={"file": ("leads.csv", text.encode(), "text/csv")},
        data={"concurrency": "2"},
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]

    async def completed() -> bool:
        view = await stack.http.get(f"/api/v1/jobs/{job_id}", headers=stack.auth)
        return bool(view.json()["status"] == "completed")

    await stack.wait_for(completed, timeout=90, what="the job to complete")


async def test_metrics_after_one_conversation_and_one_job(
    temporal_address: str,
    settings_factory: Any,
    sqlite_url: str,
    fake_waha: FakeWaha,
    web: FakeWeb,
    tmp_path: Path,
) -> None:
    settings: Settings = settings_factory(
        sqlite_url, duckduckgo_url=web.search_url, fetch_timeout_seconds=1.0
    )
    # The API's client from the one client factory: the SDK's metrics of this process.
    client = await connect(settings, address=temporal_address)
    metrics_port = free_port()
    worker_metrics = f"http://127.0.0.1:{metrics_port}/metrics"
    async with live_stack(
        client,
        settings,
        tenant_settings=TenantSettings(playbook="car_dealership", waha=fake_waha.settings()),
        start_worker=False,
    ) as stack:
        # The API runs in this process: its counters before, read without a scrape (a scrape
        # would read the lead-quality gauge now and keep it for 30 s).
        acks_before = REGISTRY.get_sample_value(
            "leadflow_webhook_acks_total", {"provider": "waha", "status": "202"}
        )
        timed_before = REGISTRY.get_sample_value(
            "leadflow_webhook_ack_seconds_count", {"provider": "waha"}
        )
        received_before = REGISTRY.get_sample_value(
            "leadflow_messages_received_total", {"channel": "waha", "role": "lead"}
        )
        worker = await spawn_worker(settings, temporal_address, metrics_port, tmp_path / "w.log")
        try:
            await run_one_conversation(stack, fake_waha)
            await run_one_job(stack, web)

            async def worker_counted() -> Samples | None:
                samples = await scrape(worker_metrics)
                # The turn is counted right after its send; the job's workflow completes last.
                done = (
                    value(samples, "leadflow_turns_total", channel="waha", outcome="replied") >= 1
                    and value(
                        samples,
                        "temporal_workflow_completed_total",
                        workflow_type="EnrichmentJobWorkflow",
                    )
                    >= 1
                )
                return samples if done else None

            samples = await stack.wait_for(worker_counted, timeout=60, what="the worker's series")
        finally:
            worker.terminate()
            await worker.wait()
        api = await scrape(f"{stack.api_url}/metrics")

    # The worker process: one conversation, one job, as they ran.
    assert value(samples, "leadflow_turns_total", channel="waha", outcome="replied") == 1
    assert value(samples, "leadflow_turn_seconds_count", channel="waha", first="true") == 1
    waited = value(samples, "leadflow_turn_seconds_sum", channel="waha", first="true")
    assert 0 <= waited < 90
    assert value(samples, "leadflow_outbox_sends_total", channel="waha", outcome="sent") == 1
    assert value(samples, "leadflow_escalations_total") == 0
    assert value(samples, "leadflow_enrichment_records_total", outcome="enriched") == 1
    assert value(samples, "leadflow_enrichment_records_total", outcome="failed") == 1
    assert value(samples, "leadflow_enrichment_record_seconds_count") == 2
    # ...and the Temporal SDK's series of the same process, on the same endpoint.
    assert (
        value(samples, "temporal_workflow_completed_total", workflow_type="EnrichmentJobWorkflow")
        >= 1
    )
    assert (
        value(
            samples,
            "temporal_activity_execution_latency_seconds_count",
            activity_type="send_and_record",
        )
        >= 1
    )
    assert (
        value(
            samples,
            "temporal_workflow_task_execution_latency_seconds_count",
            workflow_type="ConversationWorkflow",
        )
        >= 1
    )
    assert value(samples, "temporal_request_total", operation="RespondWorkflowTaskCompleted") >= 1
    assert value(samples, "temporal_num_pollers", task_queue=CONVERSATIONS) >= 1

    # The API process: the webhook acknowledged (and timed), the job upload is no webhook.
    acks = value(api, "leadflow_webhook_acks_total", provider="waha", status="202")
    assert acks - (acks_before or 0) == 1
    timed = value(api, "leadflow_webhook_ack_seconds_count", provider="waha")
    assert timed - (timed_before or 0) == 1
    received = value(api, "leadflow_messages_received_total", channel="waha", role="lead")
    assert received - (received_before or 0) == 1
    assert value(api, "leadflow_inbox_backlog") == 0  # delivered: nothing waits
    assert value(api, "leadflow_leads_by_quality") >= 1  # the lead of the conversation
    assert value(api, "temporal_request_total", operation="SignalWithStartWorkflowExecution") >= 1
