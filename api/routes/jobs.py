"""Lead-enrichment jobs: upload a CSV, follow, pause/resume/cancel, download the results.

The CSV is validated before anything starts; once this answers 202 the job is in Temporal
(started by workflow name: the API does not import workflow code).

Pause, resume and cancel are updates of the job's workflow, which is the only writer of the job
status: the API waits for the update and answers 200 with the job as the workflow left it, or
409 with the validator's reason (pause a paused or ended job, resume one that is not paused,
cancel an ended one; cancelling twice is "job is already cancelled"). An `Idempotency-Key`
header names the update, so a retry acts once and gets the first answer (also after the job
ended)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse
from temporalio.client import (
    Client,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import (
    AppState,
    CurrentTenant,
    IdempotencyKey,
    Session,
    State,
    Temporal,
    settings_of,
)
from api.errors import ApiError
from api.responses import errors
from models import search_attributes
from models.csv_intake import CsvInvalid, CsvTooLarge, SafeCsvWriter, parse_csv
from models.enrichment import (
    ALL_STEPS,
    JOB_CONTROL_REFUSED,
    RESULT_COLUMNS,
    UPDATE_CANCEL,
    UPDATE_PAUSE,
    UPDATE_RESUME,
    WORKFLOW_NAME,
    CancelJob,
    EnrichmentJobInput,
    EnrichmentStep,
    JobAction,
    JobControlResult,
    JobStatus,
    JobView,
    PauseJob,
    RecordOptions,
    RecordStatus,
    ResumeJob,
    control_refusal,
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


@router.post(
    "",
    status_code=202,
    responses=errors(
        413, 422, _413="CSV larger than the upload limit.", _422="Invalid CSV or options."
    ),
)
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
            # What the Temporal UI shows for the run; not the file name, which may name a person.
            static_summary=f"Enrichment job {job_id}: {job.total} rows",
            static_details=(
                f"- rows: {job.total}, {width} at a time\n"
                f"- steps: {', '.join(s.value for s in chosen_steps)}\n"
                f"- playbook: {playbook or 'the tenant default'}"
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


@router.get("/{job_id}", responses=errors(404))
async def get_job(job_id: str, session: Session, tenant: CurrentTenant) -> JobView:
    return await repo.job_view(session, job=await _job(session, tenant.id, job_id))


CONTROL_WAIT = timedelta(seconds=20)
"""How long a pause/resume/cancel waits for the workflow (one status write, normally ~0.1 s)."""

CONTROL_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such job for this tenant."},
    409: {"description": "Refused by the job: the detail says why; nothing was done."},
    422: {"description": "A malformed Idempotency-Key."},
    503: {"description": "Temporal is unavailable, or the job did not answer in time."},
}

_CONTROL_UPDATES: dict[JobAction, tuple[str, PauseJob | ResumeJob | CancelJob]] = {
    JobAction.PAUSE: (UPDATE_PAUSE, PauseJob()),
    JobAction.RESUME: (UPDATE_RESUME, ResumeJob()),
    JobAction.CANCEL: (UPDATE_CANCEL, CancelJob()),
}


def control_update_id(action: JobAction, idempotency_key: str | None) -> str:
    """The update's id. Temporal runs one update per id and answers a repeat with the first
    outcome, within a run; a retry that reaches a later run (the job continues as new every
    `records_per_run` records) is recognised by the workflow, which answers it with the job's
    status without acting again. The action is part of the id, so one key reused for two
    actions cannot answer the wrong one."""
    return f"{action.value}:{idempotency_key.strip() if idempotency_key else uuid.uuid4().hex}"


async def control_job(
    session: Session,
    temporal: Client,
    *,
    tenant_id: str,
    job_id: str,
    action: JobAction,
    idempotency_key: str | None,
) -> JobView:
    """Pause, resume or cancel a job through its workflow and return the job as it left it.

    404 for an unknown job (or another tenant's), 409 with the reason when the workflow's
    validator refuses or the job has ended, 503 when Temporal fails or does not answer."""
    job = await _job(session, tenant_id, job_id)
    # End the read transaction: the status is read again after the workflow wrote it, and a
    # snapshot held meanwhile (SQLite WAL) would still show the old one.
    await session.commit()
    update, arg = _CONTROL_UPDATES[action]
    update_id = control_update_id(action, idempotency_key)
    handle = temporal.get_workflow_handle(workflow_id(tenant_id, job_id))
    try:
        async with asyncio.timeout(CONTROL_WAIT.total_seconds()):
            result: JobControlResult = await handle.execute_update(
                update, arg, id=update_id, result_type=JobControlResult
            )
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type == JOB_CONTROL_REFUSED:
            raise ApiError(409, f"{action.value} refused", cause.message) from exc
        raise ApiError(503, f"the job could not {action.value}", str(cause)) from exc
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError) as exc:
        raise ApiError(
            503,
            "the job did not answer in time",
            "retry with the same Idempotency-Key; it acts once",
        ) from exc
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise ApiError(503, "Temporal is unavailable", exc.message) from exc
        # The workflow has ended: the status it wrote last is final.
        await session.refresh(job)
        status = JobStatus(job.status)
        reason = control_refusal(action, status) or f"job is no longer running ({status.value})"
        raise ApiError(409, f"{action.value} refused", reason) from exc
    await session.refresh(job)
    view = await repo.job_view(session, job=job)
    # The workflow wrote this status before answering; a later control may already have
    # changed the row, and the caller asked what *its* command did.
    return view.model_copy(update={"status": result.status})


@router.post("/{job_id}/pause", responses=CONTROL_RESPONSES)
async def pause_job(
    job_id: str,
    session: Session,
    tenant: CurrentTenant,
    temporal: Temporal,
    idempotency_key: IdempotencyKey = None,
) -> JobView:
    """No new records start; records in flight finish. 409 when paused or ended."""
    return await control_job(
        session,
        temporal,
        tenant_id=tenant.id,
        job_id=job_id,
        action=JobAction.PAUSE,
        idempotency_key=idempotency_key,
    )


@router.post("/{job_id}/resume", responses=CONTROL_RESPONSES)
async def resume_job(
    job_id: str,
    session: Session,
    tenant: CurrentTenant,
    temporal: Temporal,
    idempotency_key: IdempotencyKey = None,
) -> JobView:
    """Records start again. 409 when the job is not paused."""
    return await control_job(
        session,
        temporal,
        tenant_id=tenant.id,
        job_id=job_id,
        action=JobAction.RESUME,
        idempotency_key=idempotency_key,
    )


@router.delete("/{job_id}", responses=CONTROL_RESPONSES)
async def cancel_job(
    job_id: str,
    session: Session,
    tenant: CurrentTenant,
    temporal: Temporal,
    idempotency_key: IdempotencyKey = None,
) -> JobView:
    """Cancel: no new records start, records in flight stop, finished records are kept.
    Answered once the status is written; records in flight stop with their next heartbeat
    and then go back to pending. 409 when ended ("job is already cancelled" the second time)."""
    return await control_job(
        session,
        temporal,
        tenant_id=tenant.id,
        job_id=job_id,
        action=JobAction.CANCEL,
        idempotency_key=idempotency_key,
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


@router.get("/{job_id}/results", responses=errors(404))
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


@router.get("/{job_id}/records", responses=errors(404))
async def job_records(
    job_id: str,
    session: Session,
    tenant: CurrentTenant,
    status: RecordStatus | None = None,
    # bounded: the database compares with a signed 64-bit integer (a larger one was a 500)
    after_row: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, list[dict[str, Any]]]:
    job = await _job(session, tenant.id, job_id)
    records = await repo.list_records(
        session, job_id=job.id, status=status, after_row=after_row, limit=limit
    )
    return {"records": [repo.record_view(r).model_dump(mode="json") for r in records]}
