"""The jobs API end to end: the API on loopback, the worker process with every plugin loaded
(as `leadflow worker` builds it), the real Temporal dev server and the fixture web."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from api.app import create_app
from models.db import Database
from models.enrichment import RESULT_COLUMNS, workflow_id
from models.repo import enrichment as repo
from models.settings import Settings
from models.task_queues import ENRICHMENT
from tests.conftest import make_tenant
from tests.fakes.web import FakeWeb
from tests.stack import LiveStack, live_stack


@pytest.fixture(scope="module")
def web() -> Iterator[FakeWeb]:
    with FakeWeb(latency=0.02) as fake:
        yield fake


@pytest.fixture
def settings(settings_factory: Callable[..., Settings], sqlite_url: str, web: FakeWeb) -> Settings:
    return settings_factory(
        sqlite_url,
        ssrf_allowlist=["127.0.0.1"],
        duckduckgo_url=web.search_url,
        fetch_timeout_seconds=1.0,
        max_csv_bytes=20_000,
        max_csv_rows=40,
    )


@pytest.fixture
async def stack(temporal_client: Client, settings: Settings) -> AsyncIterator[LiveStack]:
    async with live_stack(temporal_client, settings, queues=[ENRICHMENT]) as s:
        yield s


@pytest.fixture
async def api_only(temporal_client: Client, settings: Settings) -> AsyncIterator[LiveStack]:
    async with live_stack(temporal_client, settings, start_worker=False) as s:
        yield s


def upload(text: str | bytes, name: str = "leads.csv") -> dict[str, Any]:
    data = text.encode() if isinstance(text, str) else text
    return {"file": (name, data, "text/csv")}


async def job_view(stack: LiveStack, job_id: str) -> dict[str, Any]:
    response = await stack.http.get(f"/api/v1/jobs/{job_id}", headers=stack.auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_upload_follow_and_download(stack: LiveStack, web: FakeWeb) -> None:
    text = (
        "Company;Website;Notes\n"
        f'Acme;{web.site("acme")};=HYPERLINK("http://evil.example")\n'
        f"Odd Co;{web.site('odd')};@SUM(A1)\n"
        f"Gone Inc;{web.site('missing')};\n"
    )
    response = await stack.http.post(
        "/api/v1/jobs",
        headers=stack.auth,
        files=upload(text),
        data={"concurrency": "2", "steps": "email, website,fetch,extract"},
    )
    assert response.status_code == 202, response.text
    created = response.json()
    assert created["status"] == "running" and created["rows"] == 3
    job_id = created["job_id"]

    async def finished() -> dict[str, Any] | None:
        view = await job_view(stack, job_id)
        return view if view["status"] == "completed" else None

    view = await stack.wait_for(finished, timeout=60, what="the job to complete")
    assert view["id"] == job_id and view["filename"] == "leads.csv" and view["total"] == 3
    assert view["counts"] == {"pending": 0, "running": 0, "done": 2, "failed": 1}
    assert view["finished_at"] is not None and view["throughput_per_s"] > 0
    assert view["eta_seconds"] == 0
    assert view["cost"]["input_tokens"] > 0 and view["cost"]["output_tokens"] > 0
    assert set(view) == {
        "id", "status", "filename", "created_at", "finished_at", "total", "counts",
        "throughput_per_s", "eta_seconds", "cost",
    }  # fmt: skip

    listed = (await stack.http.get("/api/v1/jobs", headers=stack.auth)).json()
    assert [j["id"] for j in listed["jobs"]] == [job_id]

    results = await stack.http.get(f"/api/v1/jobs/{job_id}/results", headers=stack.auth)
    assert results.status_code == 200
    assert results.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(results.text)))
    assert list(table[0]) == ["Company", "Website", "Notes", *RESULT_COLUMNS]
    assert [r["Company"] for r in table] == ["Acme", "Odd Co", "Gone Inc"]
    acme, odd, gone = table
    # Cells a spreadsheet would execute are neutralised; the rest is untouched.
    assert acme["Notes"] == '\'=HYPERLINK("http://evil.example")'
    assert odd["Notes"] == "'@SUM(A1)"
    assert acme["status"] == "done" and acme["emails"] == "info@acme.example.com"
    assert acme["phones"] == "+14155550100" and acme["website"] == web.site("acme")
    assert acme["email_subject"] and acme["email_body"] and acme["summary"]
    assert "sales@odd-co.com" in odd["emails"].split("; ")
    assert "https://x.com/oddco" in odd["social_links"].split("; ")
    assert gone["status"] == "failed" and gone["error"].endswith("HTTP 404")

    failed = await stack.http.get(
        f"/api/v1/jobs/{job_id}/records", params={"status": "failed"}, headers=stack.auth
    )
    assert failed.json() == {
        "records": [
            {
                "row_number": 3,
                "status": "failed",
                "error": f"fetching {web.site('missing')}: HTTP 404",
                "input": {"Company": "Gone Inc", "Website": web.site("missing"), "Notes": ""},
            }
        ]
    }
    done = await stack.http.post(f"/api/v1/jobs/{job_id}/pause", headers=stack.auth)
    assert done.status_code == 409
    assert done.json() == {"error": "pause refused", "detail": "job is completed"}

    # Another tenant sees none of it.
    _, other_key = await make_tenant(stack.db)
    other = {"Authorization": f"Bearer {other_key}"}
    for path in ("", "/results", "/records"):
        response = await stack.http.get(f"/api/v1/jobs/{job_id}{path}", headers=other)
        assert response.status_code == 404
    assert (await stack.http.get("/api/v1/jobs", headers=other)).json() == {"jobs": []}
    assert (await stack.http.delete(f"/api/v1/jobs/{job_id}", headers=other)).status_code == 404


async def _accepted_updates(stack: LiveStack, job_id: str) -> list[str]:
    """The ids of the updates the job's workflow accepted (refused ones leave no trace)."""
    handle = stack.client.get_workflow_handle(workflow_id(stack.tenant_id, job_id))
    return [
        event.workflow_execution_update_accepted_event_attributes.accepted_request.meta.update_id
        async for event in handle.fetch_history_events()
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    ]


async def test_pause_resume_and_cancel(stack: LiveStack) -> None:
    with FakeWeb(latency=0.4) as slow_web:
        rows = "".join(f"Company {i},{slow_web.site(f'p-{i}')}\n" for i in range(12))
        response = await stack.http.post(
            "/api/v1/jobs",
            headers=stack.auth,
            files=upload("company,website\n" + rows),
            data={"concurrency": "1", "steps": "website,fetch,extract"},
        )
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]
        url = f"/api/v1/jobs/{job_id}"

        async def one_done() -> bool:
            return bool((await job_view(stack, job_id))["counts"]["done"] >= 1)

        await stack.wait_for(one_done, timeout=30, what="a finished record")
        paused = await stack.http.post(f"{url}/pause", headers=stack.auth)
        assert paused.status_code == 200 and paused.json()["status"] == "paused"
        assert (await job_view(stack, job_id))["status"] == "paused"  # written by the workflow
        again = await stack.http.post(f"{url}/pause", headers=stack.auth)
        assert again.status_code == 409
        assert again.json() == {"error": "pause refused", "detail": "job is already paused"}

        resumed = await stack.http.post(f"{url}/resume", headers=stack.auth)
        assert resumed.status_code == 200 and resumed.json()["status"] == "running"
        assert (await job_view(stack, job_id))["status"] == "running"
        again = await stack.http.post(f"{url}/resume", headers=stack.auth)
        assert again.status_code == 409
        assert again.json()["detail"] == "job is not paused (it is running)"

        key = {"Idempotency-Key": "cancel-1"}
        cancelled = await stack.http.delete(url, headers={**stack.auth, **key})
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        # Answered once written, before the record in flight has stopped.
        assert (await job_view(stack, job_id))["status"] == "cancelled"
        # A retry with the same key is the same command: the first answer again.
        retried = await stack.http.delete(url, headers={**stack.auth, **key})
        assert retried.status_code == 200 and retried.json()["status"] == "cancelled"
        # Another cancel is refused, saying why.
        twice = await stack.http.delete(url, headers=stack.auth)
        assert twice.status_code == 409
        assert twice.json() == {"error": "cancel refused", "detail": "job is already cancelled"}

        handle = stack.client.get_workflow_handle(workflow_id(stack.tenant_id, job_id))
        await handle.result()  # the records in flight have stopped
        view = await job_view(stack, job_id)
        assert view["status"] == "cancelled"
        counts = view["counts"]
        assert counts["done"] >= 1 and counts["running"] == 0 and counts["pending"] > 0
        assert sum(counts.values()) == 12
        # After the run ended: a retry still gets its answer, anything else the reason.
        late_retry = await stack.http.delete(url, headers={**stack.auth, **key})
        assert late_retry.status_code == 200 and late_retry.json()["status"] == "cancelled"
        late = await stack.http.post(f"{url}/resume", headers=stack.auth)
        assert late.status_code == 409 and late.json()["detail"] == "job is cancelled"
        results = await stack.http.get(f"{url}/results", headers=stack.auth)
        statuses = [r["status"] for r in csv.DictReader(io.StringIO(results.text))]
        assert len(statuses) == 12 and statuses.count("done") == counts["done"]
        accepted = await _accepted_updates(stack, job_id)
        assert [a.partition(":")[0] for a in accepted] == ["pause", "resume", "cancel"]
        assert accepted[-1] == "cancel:cancel-1"


async def test_an_idempotency_key_pauses_once(stack: LiveStack) -> None:
    with FakeWeb(latency=0.4) as slow_web:
        rows = "".join(f"Company {i},{slow_web.site(f'k-{i}')}\n" for i in range(6))
        response = await stack.http.post(
            "/api/v1/jobs",
            headers=stack.auth,
            files=upload("company,website\n" + rows),
            data={"concurrency": "1", "steps": "website,fetch,extract"},
        )
        job_id = response.json()["job_id"]
        url = f"/api/v1/jobs/{job_id}"
        key = {**stack.auth, "Idempotency-Key": "pause-42"}
        first = await stack.http.post(f"{url}/pause", headers=key)
        second = await stack.http.post(f"{url}/pause", headers=key)
        assert first.status_code == second.status_code == 200, second.text
        assert first.json()["status"] == second.json()["status"] == "paused"
        assert await _accepted_updates(stack, job_id) == ["pause:pause-42"]  # acted once
        # The same key names another command for another action: it is not the pause.
        resumed = await stack.http.post(f"{url}/resume", headers=key)
        assert resumed.status_code == 200 and resumed.json()["status"] == "running"
        assert await _accepted_updates(stack, job_id) == ["pause:pause-42", "resume:pause-42"]


async def test_job_control_bad_input_and_unknown_jobs(stack: LiveStack) -> None:
    response = await stack.http.post(
        "/api/v1/jobs", headers=stack.auth, files=upload("company\nAcme\n")
    )
    job_id = response.json()["job_id"]
    url = f"/api/v1/jobs/{job_id}"
    # Too long, a control character, not ASCII.
    for key in (b"k" * 129, b"tab\tinside", "clé".encode()):
        headers = [(k.encode(), v.encode()) for k, v in stack.auth.items()]
        bad = await stack.http.post(f"{url}/pause", headers=[*headers, (b"Idempotency-Key", key)])
        assert bad.status_code == 422, (key, bad.text)
    assert await _accepted_updates(stack, job_id) == []  # nothing was started
    for method, path in (("POST", "/pause"), ("POST", "/resume"), ("DELETE", "")):
        missing = await stack.http.request(method, f"/api/v1/jobs/nope{path}", headers=stack.auth)
        assert missing.status_code == 404 and missing.json()["error"] == "job not found"
    # Another tenant's job is not found either, and is left alone.
    _, other_key = await make_tenant(stack.db)
    other = {"Authorization": f"Bearer {other_key}"}
    assert (await stack.http.post(f"{url}/pause", headers=other)).status_code == 404
    assert (await stack.http.delete(url, headers=other)).status_code == 404
    assert await _accepted_updates(stack, job_id) == []


async def test_job_control_while_temporal_is_unreachable_is_503(
    sqlite_db: Database, sqlite_url: str, settings_factory: Callable[..., Settings]
) -> None:
    tenant_id, key = await make_tenant(sqlite_db)
    async with sqlite_db.session() as session:
        await repo.create_job(
            session,
            job_id="j-offline",
            tenant_id=tenant_id,
            filename="leads.csv",
            columns=["company"],
            total=1,
            source="company\nAcme\n",
            delimiter=",",
            concurrency=1,
            steps=["website"],
            playbook=None,
        )
    app = create_app(settings_factory(sqlite_url, temporal_address="127.0.0.1:1"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://leadflow.test") as http:
            response = await http.post(
                "/api/v1/jobs/j-offline/pause", headers={"Authorization": f"Bearer {key}"}
            )
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "Temporal is unavailable"
    async with sqlite_db.session() as session:
        job = await repo.get_job(session, tenant_id=tenant_id, job_id="j-offline")
        assert job is not None and job.status == "running"  # the API wrote nothing


@pytest.mark.parametrize(
    ("body", "status", "error", "problem"),
    [
        (b"first,last\nJane,Doe\n", 422, "invalid CSV", (1, "no identifying column")),
        (b"", 422, "invalid CSV", (None, "the file is empty")),
        ("company\nAcme\n".encode("utf-16"), 422, "invalid CSV", (None, "encoding")),
        (b"company,website\nA,a.com\nB,b.com,extra\n", 422, "invalid CSV", (3, "3 cells")),
        (b"company\n" + b"Acme\n" * 41, 413, "CSV too large", (42, "more than 40 rows")),
        (b"company\n" + b"A" * 20_001, 413, "CSV too large", (None, "larger than 20000")),
    ],
)
async def test_bad_csv_is_refused_before_anything_starts(
    api_only: LiveStack,
    body: bytes,
    status: int,
    error: str,
    problem: tuple[int | None, str],
) -> None:
    response = await api_only.http.post("/api/v1/jobs", headers=api_only.auth, files=upload(body))
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["error"] == error
    line, words = problem
    assert payload["detail"][0]["line"] == line
    assert words in payload["detail"][0]["problem"]
    assert (await api_only.http.get("/api/v1/jobs", headers=api_only.auth)).json() == {"jobs": []}


async def test_bad_options_auth_and_unknown_jobs(api_only: LiveStack) -> None:
    csv_ok = upload("company\nAcme\n")
    for data in ({"steps": "website,teleport"}, {"concurrency": "0"}, {"playbook": "nope"}):
        response = await api_only.http.post(
            "/api/v1/jobs", headers=api_only.auth, files=csv_ok, data=data
        )
        assert response.status_code == 422, (data, response.text)
        assert response.json()["error"] == "invalid request"
    assert (await api_only.http.post("/api/v1/jobs", files=csv_ok)).status_code == 401
    missing = await api_only.http.get("/api/v1/jobs/does-not-exist", headers=api_only.auth)
    assert missing.status_code == 404 and missing.json()["error"] == "job not found"


async def test_a_row_of_a_known_lead_enriches_the_lead_and_requests_its_crm_sync(
    stack: LiveStack, web: FakeWeb, temporal_client: Client
) -> None:
    from models.common import Channel
    from models.crm import crm_sync_workflow_id
    from models.repo import leads as lead_repo

    async with stack.db.session() as session:
        lead = await lead_repo.create_lead(
            session,
            tenant_id=stack.tenant_id,
            channel=Channel.EMAIL.value,
            address="ceo@acme.test",
            email="CEO@acme.test",
        )
        lead_id, version = lead.id, lead.version
    text = f"Company,Website,Email\nAcme,{web.site('acme')},ceo@acme.test\n"
    response = await stack.http.post("/api/v1/jobs", headers=stack.auth, files=upload(text))
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]

    async def finished() -> dict[str, Any] | None:
        view = await job_view(stack, job_id)
        return view if view["status"] == "completed" else None

    await stack.wait_for(finished, timeout=60, what="the job to complete")
    async with stack.db.session() as session:
        enriched = await lead_repo.get_lead(session, tenant_id=stack.tenant_id, lead_id=lead_id)
    assert enriched is not None and enriched.version > version
    assert enriched.fields["website"].startswith(web.site("acme").rstrip("/"))
    assert enriched.fields.get("company") == "Acme"
    handle = temporal_client.get_workflow_handle(crm_sync_workflow_id(stack.tenant_id, lead_id))
    assert (await handle.describe()).id == crm_sync_workflow_id(stack.tenant_id, lead_id)
