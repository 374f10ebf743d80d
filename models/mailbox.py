"""The durable mailbox reader (workflows/mailbox.py, activities/mailbox.py): one
MailboxReaderWorkflow per tenant whose settings have an `imap` block, id `mailbox:{tenant}`.

What is read goes where a webhook's messages go: parsed and routed by `models.email_in`
(replies threaded into their conversation, bounces and auto-replies ignored with reasons), then
stored in the webhook inbox (models/repo/inbox.py) with no lease, so the API's sweeper delivers
it within seconds, deduplicated by Message-ID. A mail read twice (a retried activity, a resync
after UIDVALIDITY changed) is therefore harmless.

The cursor — which mailbox, its UIDVALIDITY, the last UID read and when — lives in the
workflow's state; raw mails never enter the history (the activity answers counts and the cursor).

`ensure_mailbox_reader` is the one way readers are started, told about new settings and stopped:
the API's settings routes, `leadflow tenant configure` and the start of `leadflow worker` (the
workers of `leadflow up` too) call it. The workflow is addressed by name: callers never
import workflow code.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from datetime import datetime
from enum import StrEnum

from pydantic import Field
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.service import RPCError, RPCStatusCode

from models import search_attributes
from models.messages import Frozen
from models.repo import tenants as tenant_repo
from models.task_queues import ENRICHMENT
from models.tenant import ImapSettings

log = logging.getLogger("leadflow.mailbox")

MAILBOX_WORKFLOW = "MailboxReaderWorkflow"
MAILBOX_PREFIX = "mailbox"
SIGNAL_SETTINGS_CHANGED = "settings_changed"
SIGNAL_STOP = "stop"
QUERY_STATUS = "status"
# Each reader holds one activity slot for as long as it waits in IDLE (up to 25 min): on the
# conversations' queue a few hundred tenants' mailboxes would take the slots the leads' turns
# need, so they run beside enrichment, ingestion and campaigns. What they read reaches the
# conversations through the inbox, not through this queue.
TASK_QUEUE = ENRICHMENT
SOURCE = "imap"  # `route_email(source="imap:{folder}")`


def mailbox_workflow_id(tenant_id: str) -> str:
    return f"{MAILBOX_PREFIX}:{tenant_id}"


def mailbox_identity(imap: ImapSettings) -> str:
    """Which mailbox a cursor belongs to, without naming it (the user name is an address): a
    new host, user or folder starts a new cursor even if its UIDVALIDITY happened to match."""
    ident = "\x1f".join((imap.host.lower(), str(imap.port), imap.username or "", imap.mailbox))
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def reader_wanted(imap: ImapSettings | None) -> bool:
    """A reader runs for an `imap` block that is enabled and has what a login needs."""
    if imap is None or not imap.enabled:
        return False
    password = imap.password.get_secret_value() if imap.password is not None else ""
    return bool(imap.host.strip() and (imap.username or "").strip() and password)


# ---- the workflow's contracts -----------------------------------------------------------------


class ReaderState(StrEnum):
    STARTING = "starting"
    READING = "reading"  # connected, reading new mail or waiting in IDLE
    POLLING = "polling"  # the server has no IDLE: looking again after poll_seconds
    LOGIN_REFUSED = "login refused"  # waits for new settings (or CONFIG_RETRY)
    MISCONFIGURED = "misconfigured"  # no such folder, host refused: waits likewise
    UNREACHABLE = "unreachable"  # retried with backoff
    STOPPED = "stopped"


class MailboxCursor(Frozen):
    mailbox: str = Field(description="`mailbox_identity` of the settings it was read with.")
    uidvalidity: int
    last_uid: int = Field(description="Every mail with a UID up to this one was read.")
    synced_at: datetime = Field(description="When the reader last looked: a resync reads from.")


class MailboxCounts(Frozen):
    read: int = Field(default=0, description="Mails fetched from the server.")
    routed: int = Field(default=0, description="Messages stored for their conversations.")
    ignored: int = Field(default=0, description="Bounces, auto-replies, unreadable mails.")
    duplicates: int = Field(default=0, description="Messages received before (same key).")

    def __add__(self, other: MailboxCounts) -> MailboxCounts:
        return MailboxCounts(
            read=self.read + other.read,
            routed=self.routed + other.routed,
            ignored=self.ignored + other.ignored,
            duplicates=self.duplicates + other.duplicates,
        )


class MailboxReaderInput(Frozen):
    tenant_id: str
    cursor: MailboxCursor | None = None
    since: datetime | None = Field(
        default=None, description="First start: mail that arrived from then on is read."
    )
    counts: MailboxCounts = MailboxCounts()
    run: int = Field(default=1, description="Runs of this reader (continue-as-new).")
    login_refused: str | None = Field(
        default=None, description="Carried over: the last run ended with the login refused."
    )
    looks_per_run: int = Field(
        default=200, ge=1, description="Looks at the mailbox before continue-as-new."
    )


class ReadMailboxInput(Frozen):
    tenant_id: str
    cursor: MailboxCursor | None = None
    since: datetime = Field(description="Without a valid cursor, mail from this time is read.")
    wait_seconds: float = Field(
        default=0, description="With nothing new, wait this long in IDLE (if the server has it)."
    )
    batch: int = Field(default=50, ge=1, description="At most this many mails per call.")


class ReadMailboxResult(Frozen):
    configured: bool = Field(description="False: the tenant has no enabled imap settings.")
    cursor: MailboxCursor | None = None
    counts: MailboxCounts = MailboxCounts()
    idle_supported: bool = False
    poll_seconds: int = 60
    more: bool = Field(default=False, description="The batch was full: read again at once.")
    resynced: bool = Field(default=False, description="Read from `since` (no valid cursor).")
    ignored: tuple[str, ...] = Field(default=(), description="Why mails were ignored (a few).")


class SettingsChanged(Frozen):
    reason: str = "settings saved"


class StopReader(Frozen):
    reason: str = "imap settings removed"


class MailboxStatus(Frozen):
    """The `status` query, and the workflow's result when it stops."""

    tenant_id: str
    state: ReaderState
    connected: bool = Field(description="The last look at the mailbox worked.")
    idle_supported: bool | None = None
    cursor: MailboxCursor | None = None
    counts: MailboxCounts = MailboxCounts()
    last_error: str | None = None
    last_error_at: datetime | None = None
    last_checked_at: datetime | None = None
    recent_ignored: tuple[str, ...] = ()
    run: int = 1
    resyncs: int = 0


# ---- starting, telling and stopping readers ---------------------------------------------------


class MailboxAction(StrEnum):
    STARTED = "started"  # started, or told about new settings
    RUNNING = "running"  # left as it was
    STOPPED = "stopped"
    NONE = "none"  # none wanted, none running


async def ensure_mailbox_reader(
    client: Client,
    *,
    tenant_id: str,
    imap: ImapSettings | None,
    changed: bool = True,
    task_queue: str | None = None,
) -> MailboxAction:
    """Make the tenant's reader match its settings.

    Wanted (`reader_wanted`): with `changed`, signal-with-start `settings_changed` (a running
    reader reconnects with the new settings and leaves a "login refused" wait); without, start
    one only if none runs. Not wanted: a running reader is told to stop. Raises the SDK's
    errors (`RPCError`, ...): callers say what an unavailable Temporal means for them.
    `task_queue`: TASK_QUEUE (read at the call: tests run readers on a queue of their own)."""
    workflow_id = mailbox_workflow_id(tenant_id)
    queue = task_queue or TASK_QUEUE
    if not reader_wanted(imap):
        try:
            await client.get_workflow_handle(workflow_id).signal(
                SIGNAL_STOP, StopReader(reason="imap settings removed or disabled")
            )
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            return MailboxAction.NONE
        return MailboxAction.STOPPED
    if changed:
        await _start_reader(client, tenant_id, queue, signal=True)
        return MailboxAction.STARTED
    try:
        description = await client.get_workflow_handle(workflow_id).describe()
        if description.status == WorkflowExecutionStatus.RUNNING:
            return MailboxAction.RUNNING
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
    await _start_reader(client, tenant_id, queue, signal=False)
    return MailboxAction.STARTED


async def _start_reader(client: Client, tenant_id: str, task_queue: str, *, signal: bool) -> None:
    """Signal-with-start `settings_changed`, or (no signal) start unless one runs: USE_EXISTING
    leaves a reader started meanwhile (another worker starting) as it is."""
    await client.start_workflow(
        MAILBOX_WORKFLOW,
        MailboxReaderInput(tenant_id=tenant_id),
        id=mailbox_workflow_id(tenant_id),
        task_queue=task_queue,
        search_attributes=TypedSearchAttributes(
            [SearchAttributePair(search_attributes.TENANT, tenant_id)]
        ),
        static_summary=f"Mailbox reader of {tenant_id}",
        static_details="- reads the tenant's IMAP mailbox (IDLE, else polling)\n"
        "- replies go to their conversations through the webhook inbox\n"
        "- query `status` for the cursor, counts and last error",
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        start_signal=SIGNAL_SETTINGS_CHANGED if signal else None,
        start_signal_args=[SettingsChanged()] if signal else [],
    )


async def ensure_all_mailbox_readers(
    client: Client, session: AsyncSession, *, secret_key: str, task_queue: str | None = None
) -> dict[str, MailboxAction]:
    """At start (`leadflow worker`, so `leadflow up` too): a reader for every tenant whose settings
    want one, left alone where it runs (settings saved while Temporal was down, a dev server
    whose data was reset). A tenant whose settings cannot be read is logged and skipped."""
    done: dict[str, MailboxAction] = {}
    for tenant in await tenant_repo.list_tenants(session):
        try:
            imap = tenant_repo.tenant_settings(tenant, secret_key=secret_key).imap
        except Exception as exc:
            log.warning("mailbox reader of %s: settings unreadable (%s); skipped", tenant.id, exc)
            continue
        if reader_wanted(imap):
            done[tenant.id] = await ensure_mailbox_reader(
                client, tenant_id=tenant.id, imap=imap, changed=False, task_queue=task_queue
            )
    return done


async def mailbox_status(client: Client, tenant_id: str) -> MailboxStatus | None:
    """The running reader's status, or None when the tenant has none running."""
    handle = client.get_workflow_handle(mailbox_workflow_id(tenant_id))
    with contextlib.suppress(RPCError):
        description = await handle.describe()
        if description.status != WorkflowExecutionStatus.RUNNING:
            return None
        status: MailboxStatus = await handle.query(QUERY_STATUS, result_type=MailboxStatus)
        return status
    return None
