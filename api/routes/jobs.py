"""Lead-enrichment jobs: upload a CSV, follow, pause/resume/cancel, download the results.

The CSV is validated before anything starts; once this answers 202 the job is in Temporal
(started by workflow name: the API does not import workflow code)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse
from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from api.deps import AppState, CurrentTenant, Session, State, Temporal, settings_of
from api.errors import ApiError
from models import search_attributes
from models.csv_intake import CsvInvalid, CsvTooLarge, SafeCsvWriter, parse_csv
from models.enrichment import (
    ALL_STEPS,
    RESULT_COLUMNS,
    SIGNAL_CANCEL,
    SIGNAL_PAUSE,
    SIGNAL_RESUME,
    TERMINAL_STATUSES,
    WORKFLOW_NAME,
    CancelJob,
    EnrichmentJobInput,
    EnrichmentStep,
    JobStatus,
    JobView,
    PauseJob,
    RecordOptions,
    RecordStatus,
    ResumeJob,
    workflow_id,
)
from models.enrichment_tables import EnrichmentJob, EnrichmentRecord
from models.playbook import builtin_playbooks
from models.repo import enrichment as repo
from models.task_queues import ENRICHMENT

router = APIRouter(prefix="/api/v1/jobs", tags=["enrichment jobs"])

RESULT_PAGE = 500
READ_CHUNK = 1 << 20


def _parse_steps(raw: str | None) -> tuple[EnrichmentStep, ...]:
    if raw is None or not raw.strip():
        return ALL_STEPS
    steps: list[EnrichmentStep] = []
    for part in raw.split(","):
        name = part.strip().lower()
        if not name:
            continue
        try:
            step = EnrichmentStep(name)
        except ValueError:
            raise ApiError(
                422,
                "invalid request",
                [{"loc": ["body", "steps"], "msg": f"unknown step {name!r}; "
                  f"use a comma list of {', '.join(s.value for s in EnrichmentStep)}",
                  "type": "value_error"}],
            ) from None  # fmt: skip
        if step not in steps:
            steps.append(step)
    # Pipeline order, whatever order the caller wrote.
    return tuple(s for s in ALL_STEPS if s in steps)


async def _read_upload(upload: UploadFile, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await upload.read(READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise ApiError(
                413,
                "CSV too large",
                [{"line": None, "problem": f"the file is larger than {limit} bytes"}],
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _problems(exc: CsvInvalid) -> list[dict[str, Any]]:
    return [p.model_dump() for p in exc.problems]


@router.post("", status_code=202)
async def create_job(
    request: Request,
    state: State,
    session: Session,
    tenant: CurrentTenant,
    temporal: Temporal,
    file: Annotated[UploadFile, File(description="The leads, as CSV.")],
    playbook: Annotated[str | None, Form()] = None,
    concurrency: Annotated[int | None, Form(ge=1)] = None,
    steps: Annotated[
        str | None, Form(description="Comma list: website,fetch,extract,email")
    ] = None,
) -> JSONResponse:
    settings = state.settings
    declared = request.headers.get("content-length", "")
    # Multipart overhead is small; a body far over the limit is refused before it is read.
    if declared.isdigit() and int(declared) > settings.max_csv_bytes + 64_000:
        raise ApiError(
            413,
            "CSV too large",
            [{"line": None, "problem": f"the upload is {declared} bytes; "
              f"the limit is {settings.max_csv_bytes}"}],
        )  # fmt: skip
    chosen_steps = _parse_steps(steps)
    if playbook is not None and playbook.strip():
        playbook = playbook.strip()
        if playbook not in builtin_playbooks():
            raise ApiError(
                422,
                "invalid request",
                [{"loc": ["body", "playbook"], "msg": f"unknown playbook {playbook!r}; "
                  f"known: {', '.join(sorted(builtin_playbooks())) or 'none'}",
                  "type": "value_error"}],
            )  # fmt: skip
    else:
        playbook = None
    data = await _read_upload(file, settings.max_csv_bytes)
    try:
        parsed = parse_csv(data, max_bytes=settings.max_csv_bytes, max_rows=settings.max_csv_rows)
    except CsvTooLarge as exc:
        raise ApiError(413, "CSV too large", _problems(exc)) from exc
    except CsvInvalid as exc:
        raise ApiError(422, "invalid CSV", _problems(exc)) from exc

    width = min(
        concurrency or settings.enrichment_default_concurrency,
        settings.enrichment_max_concurrency,
    )
    tenant_settings = settings_of(state, tenant)
    # Tenants may opt out of robots.txt once their settings carry the switch.
    respect_robots = tenant_settings.enrichment_respect_robots
    job_id = uuid.uuid4().hex[:16]
    job = await repo.create_job(
        session,
        job_id=job_id,
        tenant_id=tenant.id,
        filename=file.filename or "upload.csv",
        columns=parsed.columns,
        total=len(parsed.rows),
        source=parsed.text,
        delimiter=parsed.delimiter,
        concurrency=width,
        steps=[s.value for s in chosen_steps],
        playbook=playbook,
    )
    job_input = EnrichmentJobInput(
        tenant_id=tenant.id,
        job_id=job_id,
        total=job.total,
        concurrency=width,
        records_per_run=settings.enrichment_records_per_run,
        options=RecordOptions(steps=chosen_steps, playbook=playbook, respect_robots=respect_robots),
    )
    try:
        await temporal.start_workflow(
            WORKFLOW_NAME,
            arg=job_input,
            id=workflow_id(tenant.id, job_id),
            task_queue=ENRICHMENT,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(search_attributes.TENANT, tenant.id),
                    SearchAttributePair(search_attributes.JOB_STATUS, JobStatus.RUNNING.value),
                ]
            ),
        )
    except Exception as exc:
        # Nothing was accepted: say so, and leave a failed job rather than a phantom running one.
        await repo.set_job_status(
            session,
            tenant_id=tenant.id,
            job_id=job_id,
            status=JobStatus.FAILED,
            error=f"could not start: {exc}",
        )
        raise ApiError(503, "Temporal is unavailable", str(exc)) from exc
    return JSONResponse(
        status_code=202,
        content={"job_id": job_id, "status": JobStatus.RUNNING.value, "rows": job.total},
    )


@router.get("")
async def list_jobs(session: Session, tenant: CurrentTenant) -> dict[str, list[JobView]]:
    jobs = await repo.list_jobs(session, tenant_id=tenant.id)
    return {"jobs": [await repo.job_view(session, job=job) for job in jobs]}


async def _job(session: Session, tenant_id: str, job_id: str) -> EnrichmentJob:
    job = await repo.get_job(session, tenant_id=tenant_id, job_id=job_id)
    if job is None:
        raise ApiError(404, "job not found", job_id)
    return job


@router.get("/{job_id}")
async def get_job(job_id: str, session: Session, tenant: CurrentTenant) -> JobView:
    return await repo.job_view(session, job=await _job(session, tenant.id, job_id))


def _handle(temporal: Client, tenant_id: str, job_id: str) -> WorkflowHandle[Any, Any]:
    return temporal.get_workflow_handle(workflow_id(tenant_id, job_id))


async def _signal(
    session: Session,
    temporal: Client,
    tenant_id: str,
    job_id: str,
    signal: str,
    arg: PauseJob | ResumeJob | CancelJob,
    new_status: JobStatus,
) -> JobView:
    job = await _job(session, tenant_id, job_id)
    if job.status in TERMINAL_STATUSES:
        raise ApiError(409, f"job is {job.status}", job_id)
    try:
        await _handle(temporal, tenant_id, job_id).signal(signal, arg)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise ApiError(409, "job is no longer running", job_id) from exc
        raise ApiError(503, "Temporal is unavailable", str(exc)) from exc
    # The workflow writes the same status when it acts on the signal; writing it here too means
    # the next GET already shows what the caller asked for.
    if new_status != JobStatus.CANCELLED:
        await repo.set_job_status(session, tenant_id=tenant_id, job_id=job_id, status=new_status)
    refreshed = await _job(session, tenant_id, job_id)
    view = await repo.job_view(session, job=refreshed)
    if new_status == JobStatus.CANCELLED:
        view = view.model_copy(update={"status": JobStatus.CANCELLED})
    return view


@router.post("/{job_id}/pause")
async def pause_job(
    job_id: str, session: Session, tenant: CurrentTenant, temporal: Temporal
) -> JobView:
    return await _signal(
        session, temporal, tenant.id, job_id, SIGNAL_PAUSE, PauseJob(), JobStatus.PAUSED
    )


@router.post("/{job_id}/resume")
async def resume_job(
    job_id: str, session: Session, tenant: CurrentTenant, temporal: Temporal
) -> JobView:
    return await _signal(
        session, temporal, tenant.id, job_id, SIGNAL_RESUME, ResumeJob(), JobStatus.RUNNING
    )


@router.delete("/{job_id}")
async def cancel_job(
    job_id: str, session: Session, tenant: CurrentTenant, temporal: Temporal
) -> JobView:
    """Cancel: no new records start, records in flight stop, finished records are kept."""
    return await _signal(
        session, temporal, tenant.id, job_id, SIGNAL_CANCEL, CancelJob(), JobStatus.CANCELLED
    )


def _result_row(record: EnrichmentRecord) -> dict[str, str]:
    row = {str(k): str(v) for k, v in record.data.items()}
    row.update(
        website=record.website or "",
        summary=record.summary or "",
        emails="; ".join(record.emails),
        phones="; ".join(record.phones),
        social_links="; ".join(record.social_links),
        email_subject=record.email_subject or "",
        email_body=record.email_body or "",
        status=record.status,
        error=record.error or "",
    )
    return row


async def _stream_results(state: AppState, job_id: str, columns: list[str]) -> AsyncIterator[bytes]:
    # Its own session: the request's session is closed once the response starts streaming.
    writer = SafeCsvWriter([*columns, *(c for c in RESULT_COLUMNS if c not in columns)])
    yield writer.header().encode()
    after = 0
    while True:
        async with state.db.session() as session:
            page = await repo.list_records(
                session, job_id=job_id, after_row=after, limit=RESULT_PAGE
            )
        if not page:
            return
        yield "".join(writer.row(_result_row(r)) for r in page).encode()
        after = page[-1].row_number


@router.get("/{job_id}/results")
async def job_results(
    job_id: str, state: State, session: Session, tenant: CurrentTenant
) -> StreamingResponse:
    job = await _job(session, tenant.id, job_id)
    stem = job.filename.rsplit(".", 1)[0] or "leads"
    safe_stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)
    return StreamingResponse(
        _stream_results(state, job.id, list(job.columns)),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{safe_stem}-enriched.csv"'},
    )


@router.get("/{job_id}/records")
async def job_records(
    job_id: str,
    session: Session,
    tenant: CurrentTenant,
    status: RecordStatus | None = None,
    after_row: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, list[dict[str, Any]]]:
    job = await _job(session, tenant.id, job_id)
    records = await repo.list_records(
        session, job_id=job.id, status=status, after_row=after_row, limit=limit
    )
    return {"records": [repo.record_view(r).model_dump(mode="json") for r in records]}
