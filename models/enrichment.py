"""Contracts of lead-enrichment jobs: the workflow's input (also its continue-as-new state), its
updates, signals and query, the per-record activities, and the job view the API returns."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from models.agent import CompanyFacts, TokenUsage
from models.messages import Frozen

WORKFLOW_NAME = "EnrichmentJobWorkflow"
"""The API starts jobs by this name: it must not import workflows/."""

# Job control is by update (the caller learns the resulting status, or why it was refused).
UPDATE_PAUSE = "pause_job"
UPDATE_RESUME = "resume_job"
UPDATE_CANCEL = "cancel_job"
# The signals that came first: jobs started before the updates may still receive them.
SIGNAL_PAUSE = "pause"
SIGNAL_RESUME = "resume"
SIGNAL_CANCEL = "cancel"
QUERY_PROGRESS = "progress"
JOB_CONTROL_REFUSED = "JobControlRefused"
"""ApplicationError type of an update its validator refused; the message is the reason."""


def workflow_id(tenant_id: str, job_id: str) -> str:
    return f"enrich:{tenant_id}:{job_id}"


class JobStatus(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    COMPLETED = "completed"
    FAILED = "failed"


TERMINAL_STATUSES = frozenset({JobStatus.CANCELLED, JobStatus.COMPLETED, JobStatus.FAILED})


class JobAction(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"


def control_refusal(action: JobAction, status: JobStatus) -> str | None:
    """Why `action` cannot apply to a job in `status`, or None when it can.

    The workflow's update validators ask this of the status it is heading for; the API asks it
    of the stored status only when the workflow has already ended. Cancelling twice is refused
    ("already cancelled"); a retry with the same idempotency key is not a second cancel and
    gets the first answer."""
    if status in (JobStatus.COMPLETED, JobStatus.FAILED):
        return f"job is {status.value}"
    if status == JobStatus.CANCELLED:
        return "job is already cancelled" if action == JobAction.CANCEL else "job is cancelled"
    if action == JobAction.PAUSE and status == JobStatus.PAUSED:
        return "job is already paused"
    if action == JobAction.RESUME and status != JobStatus.PAUSED:
        return f"job is not paused (it is {status.value})"
    return None


class RecordStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class EnrichmentStep(StrEnum):
    WEBSITE = "website"
    FETCH = "fetch"
    EXTRACT = "extract"
    EMAIL = "email"


ALL_STEPS: tuple[EnrichmentStep, ...] = tuple(EnrichmentStep)

RESULT_COLUMNS: tuple[str, ...] = (
    "website",
    "summary",
    "emails",
    "phones",
    "social_links",
    "email_subject",
    "email_body",
    "status",
    "error",
)
"""Columns the results CSV appends to the uploaded ones, in this order."""


class RecordOptions(Frozen):
    """What every record of a job is processed with; fixed when the job is created."""

    steps: tuple[EnrichmentStep, ...] = ALL_STEPS
    playbook: str | None = Field(default=None, description="None: the tenant's playbook.")
    respect_robots: bool = True


class EnrichmentJobInput(Frozen):
    """Workflow input. Continue-as-new passes the same model on with the cursor moved forward."""

    tenant_id: str
    job_id: str
    total: int = Field(ge=0, description="Rows in the CSV; row numbers run 1..total.")
    concurrency: int = Field(ge=1, description="Records in flight at once (already capped).")
    records_per_run: int = Field(ge=1, description="Records per run before continue-as-new.")
    options: RecordOptions = RecordOptions()
    record_heartbeat_timeout_seconds: float = Field(
        default=30.0,
        description="How soon a record lost with a dead worker is retried elsewhere.",
    )
    # State carried across continue-as-new:
    next_row: int = Field(default=1, ge=1, description="First row number not yet dispatched.")
    rows_stored: bool = False
    paused: bool = False
    done: int = 0
    failed: int = 0
    run: int = Field(default=1, description="1 for the first run, +1 per continue-as-new.")
    control_ids: tuple[str, ...] = Field(
        default=(),
        description="Ids of the pause/resume/cancel updates this job applied (the last "
        "CONTROL_IDS_KEPT): Temporal deduplicates update ids within a run only, so a retry that "
        "reaches a later run is recognised by these.",
    )


CONTROL_IDS_KEPT = 100


class PauseJob(Frozen):
    reason: str | None = None


class ResumeJob(Frozen):
    pass


class CancelJob(Frozen):
    reason: str | None = None


class JobControlResult(Frozen):
    """What a pause, resume or cancel update answers: the job's status once the workflow has
    written it to the database (so a GET right after shows the same)."""

    status: JobStatus


class JobProgress(Frozen):
    """The `progress` query's answer: what the workflow itself knows, without the database."""

    status: JobStatus
    total: int
    done: int
    failed: int
    in_flight: int
    next_row: int
    run: int


class StoreRowsInput(Frozen):
    tenant_id: str
    job_id: str


class StoreRowsResult(Frozen):
    stored: int


class JobStatusUpdate(Frozen):
    tenant_id: str
    job_id: str
    status: JobStatus
    error: str | None = None


class ProcessRecordInput(Frozen):
    tenant_id: str
    job_id: str
    row_number: int
    options: RecordOptions = RecordOptions()


class ProcessRecordResult(Frozen):
    row_number: int
    status: RecordStatus
    error: str | None = None
    website: str | None = Field(
        default=None,
        description="Host of the company website found for the row (for the run's details in "
        "the Temporal UI), the host only; None when none was found.",
    )


class MarkRecordFailedInput(Frozen):
    tenant_id: str
    job_id: str
    row_number: int
    error: str


class WebsiteFound(Frozen):
    url: str | None
    source: str = Field(description="column | email | search | none")
    detail: str | None = None


class SiteResearch(Frozen):
    """What one fetch-and-extract of a company website produced (and what the cache stores)."""

    url: str
    final_url: str
    facts: CompanyFacts
    truncated: bool = False


class RecordOutcome(Frozen):
    """Everything a processed record stores."""

    website: str | None = None
    facts: CompanyFacts = CompanyFacts()
    email_subject: str | None = None
    email_body: str | None = None
    usage: TokenUsage | None = None
    usd: float = 0.0


class JobCounts(Frozen):
    pending: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0


class JobCost(Frozen):
    input_tokens: int = 0
    output_tokens: int = 0
    usd: float = 0.0


class JobView(Frozen):
    """`GET /api/v1/jobs/{id}`."""

    id: str
    status: JobStatus
    filename: str
    created_at: datetime
    finished_at: datetime | None
    total: int
    counts: JobCounts
    throughput_per_s: float
    eta_seconds: float | None
    cost: JobCost


class RecordView(Frozen):
    row_number: int
    status: RecordStatus
    error: str | None
    input: dict[str, str]
