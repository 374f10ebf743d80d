"""Erasing a contact and deleting a tenant: what leadflow holds about someone, and how it goes.

One place for the rules, used by the erasure workflow's activities, the export, the API and the
CLI:

- *Whose rows* (`contact_scope`): the lead, its conversations (linked by lead id, or on the lead's
  channel and address), and through them messages, scores, escalations, outbox entries, inbox and
  inbound-key rows, the WAHA `@lid` mapping of its phone, CRM links, sync runs, idempotency
  records and echo markers, and the enrichment records whose row carries its e-mail address.
- *Erasure* (`erase_contact_rows`) deletes all of them in one transaction, blanks the personal
  columns of those enrichment records (the row stays so a job's numbering and totals hold), and
  keeps the usage ledger's counts: the model calls lose their conversation, output summary and
  error text, never their tokens or cost (the tenant's bill and budget stay right).
- *Workflows* (`purge_workflows`): every run of the contact's conversation and CRM sync
  workflows is terminated and its history deleted (`DeleteWorkflowExecution`).
- *Tenant deletion* (`tenant_workflow_ids`, `delete_tenant_rows`): the schedules of its
  inventory sources, every workflow of the tenant and every row of it in every table (its
  inventory items and sources included), API keys and the tenant row last.

Everything here is idempotent: a second run finds nothing and deletes nothing, so a crash
halfway and a retry finishes the job. Erasure is not suppression: afterwards nothing says the
person was ever here, so a new message from them starts afresh (do-not-contact is the tool for
"never write to me again"; a salted-hash suppression list would need a table of its own).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field
from sqlalchemy import Table, inspect, or_
from sqlalchemy import delete as sa_delete
from sqlalchemy import update as sa_update
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from models import search_attributes
from models.campaign_tables import WhatsAppOptIn
from models.crm import crm_sync_workflow_id, legacy_crm_sync_workflow_id
from models.crm_tables import CrmIdempotencyRecord, CrmLink, CrmSyncRun, CrmWriteMarker
from models.email_tables import EmailThread
from models.enrichment import workflow_id as enrichment_workflow_id
from models.enrichment_tables import EnrichmentJob, EnrichmentRecord
from models.identity_tables import InboundKey, WahaLid
from models.inbox_tables import InboxMessage
from models.knowledge.ingestion import ingestion_workflow_prefix
from models.knowledge.schedules import delete_tenant_schedules
from models.knowledge_tables import KnowledgeSourceRow
from models.llm_tables import LlmCall
from models.messages import Frozen
from models.repo.sql import table_of
from models.table_modules import import_all
from models.tables import (
    Conversation,
    Escalation,
    Lead,
    LeadScoreRecord,
    Message,
    OutboxMessage,
    Tenant,
)
from models.workflow_ids import (
    CRM_SYNC_PREFIX,
    ERASE_PREFIX,
    lead_workflow_id,
    lead_workflow_prefix,
    legacy_lead_workflow_id,
)

ERASE_WORKFLOW = "EraseContactWorkflow"
ERASE_ROUTE = "/api/v1/leads/{lead_id}/erasure"


def erase_workflow_id(tenant_id: str, lead_id: str) -> str:
    """One erasure per (tenant, lead): a second request joins the running one. The id holds a
    keyed hash of the lead id, not the lead id (models/workflow_ids.py: a lead id is uuid5 of
    the contact with no key, so it could be confirmed from a guessed phone number)."""
    return lead_workflow_id(ERASE_PREFIX, tenant_id, lead_id)


def legacy_erase_workflow_id(tenant_id: str, lead_id: str) -> str:
    """`erase:{tenant}:{lead}`, the id erasures had before: to find one started under it."""
    return legacy_lead_workflow_id(ERASE_PREFIX, tenant_id, lead_id)


# ---- contracts of the erasure workflow --------------------------------------------------------


class EraseContactInput(Frozen):
    tenant_id: str
    lead_id: str
    crm: bool = Field(default=False, description="Also delete the contact in each connected CRM.")


class ContactRef(Frozen):
    """What the erasure's activities receive: ids only, never the person's details."""

    tenant_id: str
    lead_id: str


class WorkflowsPurged(Frozen):
    workflows: int = Field(default=0, description="Workflow ids looked at.")
    terminated: int = Field(default=0, description="Runs that were running and were terminated.")
    deleted: int = Field(default=0, description="Runs whose history deletion was requested.")


class CrmErasure(Frozen):
    integration_id: str
    kind: str
    name: str
    outcome: str = Field(description="deleted | not_found | failed")
    remote_id: str | None = Field(
        default=None,
        description="The CRM's id of the record, so a failure can be finished by hand.",
    )
    detail: str = ""


class CrmErasureResult(Frozen):
    records: tuple[CrmErasure, ...] = ()


class RowsErased(Frozen):
    lead_found: bool
    counts: dict[str, int] = Field(default_factory=dict, description="Rows per table.")


class ErasureReport(Frozen):
    tenant_id: str
    lead_id: str
    lead_found: bool
    workflows: WorkflowsPurged
    crm_requested: bool
    crm: tuple[CrmErasure, ...] = ()
    crm_error: str | None = Field(
        default=None, description="Why the CRM step gave up (local data was erased anyway)."
    )
    rows: dict[str, int] = Field(default_factory=dict)


# ---- whose rows --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContactScope:
    """The lead and the keys its rows are found by."""

    lead: Lead
    conversation_ids: tuple[str, ...]
    addresses: tuple[str, ...] = field(default=())
    email: str | None = None
    remote_ids: tuple[str, ...] = ()


def _waha_chat_ids(lead: Lead) -> set[str]:
    """The `{digits}@c.us` ids WAHA's lid mapping stores for the lead's phone."""
    ids: set[str] = set()
    for value in (lead.address, lead.phone):
        if not value:
            continue
        if value.endswith("@c.us"):
            ids.add(value)
            continue
        digits = "".join(ch for ch in value if ch.isdigit())
        if digits:
            ids.add(f"{digits}@c.us")
    return ids


async def contact_scope(
    session: AsyncSession, *, tenant_id: str, lead_id: str
) -> ContactScope | None:
    """The tenant's lead and the keys of its data; None for an unknown (or another tenant's)
    lead."""
    lead = await session.get(Lead, lead_id)
    if lead is None or lead.tenant_id != tenant_id:
        return None
    conversations = await session.exec(
        select(Conversation.id).where(
            Conversation.tenant_id == tenant_id,
            or_(
                col(Conversation.lead_id) == lead_id,
                (col(Conversation.channel) == lead.channel)
                & (col(Conversation.contact) == lead.address),
            ),
        )
    )
    links = await session.exec(
        select(CrmLink.remote_id).where(CrmLink.tenant_id == tenant_id, CrmLink.lead_id == lead_id)
    )
    addresses = {lead.address, *(v for v in (lead.email, lead.phone) if v)}
    return ContactScope(
        lead=lead,
        conversation_ids=tuple(sorted(set(conversations.all()))),
        addresses=tuple(sorted(addresses)),
        email=lead.email.strip().lower() if lead.email else None,
        remote_ids=tuple(sorted({r for r in links.all() if r})),
    )


def contact_workflow_ids(scope: ContactScope) -> list[str]:
    """The contact's workflows: its conversations (the conversation row's id is the workflow
    id) and its CRM sync, under its hashed id and the legacy one (the lead id in clear, which
    is the reason its history must go too)."""
    return [
        *scope.conversation_ids,
        crm_sync_workflow_id(scope.lead.tenant_id, scope.lead.id),
        legacy_crm_sync_workflow_id(scope.lead.tenant_id, scope.lead.id),
    ]


def _holds_email(record: EnrichmentRecord, email: str) -> bool:
    values = [*record.data.values(), *record.emails]
    return any(isinstance(v, str) and v.strip().lower() == email for v in values)


async def enrichment_records_of(
    session: AsyncSession, *, tenant_id: str, email: str | None
) -> list[EnrichmentRecord]:
    """The tenant's enrichment records whose CSV row or found addresses carry this e-mail (the
    same match that lets a row enrich a known lead). The JSON columns are compared in Python:
    both databases can read them, and erasure is rare."""
    if not email:
        return []
    rows = await session.exec(
        select(EnrichmentRecord)
        .where(EnrichmentRecord.tenant_id == tenant_id)
        .order_by(col(EnrichmentRecord.job_id), col(EnrichmentRecord.row_number))
    )
    return [r for r in rows.all() if _holds_email(r, email)]


def crm_idempotency_prefix(tenant_id: str, lead_id: str) -> str:
    """`models.crm.idempotency_key` of every version of the lead (and its `:note` keys)."""
    return f"crm:{tenant_id}:{lead_id}:"


# ---- erasure -----------------------------------------------------------------------------------


async def erase_contact_rows(session: AsyncSession, *, tenant_id: str, lead_id: str) -> RowsErased:
    """Delete everything held about the lead, in one transaction (see the module docstring).

    An unknown lead (already erased, or another tenant's) erases nothing."""
    scope = await contact_scope(session, tenant_id=tenant_id, lead_id=lead_id)
    if scope is None:
        return RowsErased(lead_found=False)
    conv = scope.conversation_ids
    counts: dict[str, int] = {}
    conn = await session.connection()

    async def delete(model: type[SQLModel], *where: Any) -> None:
        table = table_of(model)
        result = await conn.execute(sa_delete(table).where(*where))
        counts[table.name] = counts.get(table.name, 0) + max(result.rowcount or 0, 0)

    messages, outbox, scores = table_of(Message), table_of(OutboxMessage), table_of(LeadScoreRecord)
    await delete(Message, messages.c.conversation_id.in_(conv))
    await delete(
        LeadScoreRecord,
        scores.c.tenant_id == tenant_id,
        or_(scores.c.lead_id == lead_id, scores.c.conversation_id.in_(conv)),
    )
    escalations = table_of(Escalation)
    await delete(
        Escalation, escalations.c.tenant_id == tenant_id, escalations.c.conversation_id.in_(conv)
    )
    await delete(
        OutboxMessage,
        outbox.c.tenant_id == tenant_id,
        or_(outbox.c.conversation_id.in_(conv), outbox.c.to.in_(scope.addresses)),
    )
    await delete(InboxMessage, table_of(InboxMessage).c.workflow_id.in_(conv))
    # Their WhatsApp consent goes with them; campaign recipient rows keep only the (keyed) lead
    # id and the campaign's counts, and a send step finds the lead gone.
    opt_ins = table_of(WhatsAppOptIn)
    await delete(WhatsAppOptIn, opt_ins.c.tenant_id == tenant_id, opt_ins.c.lead_id == lead_id)
    threads = table_of(EmailThread)  # the Message-IDs of the mail we sent them
    await delete(
        EmailThread,
        threads.c.tenant_id == tenant_id,
        or_(threads.c.conversation_id.in_(conv), threads.c.contact.in_(scope.addresses)),
    )
    keys = table_of(InboundKey)
    await delete(InboundKey, keys.c.tenant_id == tenant_id, keys.c.workflow_id.in_(conv))
    lids = table_of(WahaLid)
    await delete(
        WahaLid, lids.c.tenant_id == tenant_id, lids.c.phone.in_(_waha_chat_ids(scope.lead))
    )
    markers = table_of(CrmWriteMarker)
    await delete(
        CrmWriteMarker, markers.c.tenant_id == tenant_id, markers.c.remote_id.in_(scope.remote_ids)
    )
    idem = table_of(CrmIdempotencyRecord)
    await delete(
        CrmIdempotencyRecord,
        idem.c.tenant_id == tenant_id,
        idem.c.key.startswith(crm_idempotency_prefix(tenant_id, lead_id), autoescape=True),
    )
    links, runs = table_of(CrmLink), table_of(CrmSyncRun)
    await delete(CrmLink, links.c.tenant_id == tenant_id, links.c.lead_id == lead_id)
    await delete(CrmSyncRun, runs.c.tenant_id == tenant_id, runs.c.lead_id == lead_id)

    # Usage keeps its counts (tokens, cost, latency, outcome): only what ties a call to the
    # person, or repeats what they said, goes.
    calls = table_of(LlmCall)
    kept = await conn.execute(
        sa_update(calls)
        .where(calls.c.tenant_id == tenant_id, calls.c.conversation_id.in_(conv))
        .values(conversation_id=None, output=None, error=None)
    )
    counts["llm_calls_anonymised"] = max(kept.rowcount or 0, 0)

    records = table_of(EnrichmentRecord)
    blanked = 0
    for record in await enrichment_records_of(session, tenant_id=tenant_id, email=scope.email):
        await conn.execute(
            sa_update(records)
            .where(records.c.id == record.id)
            .values(
                data={},
                emails=[],
                phones=[],
                social_links=[],
                website=None,
                summary=None,
                email_subject=None,
                email_body=None,
                error=None,
            )
        )
        blanked += 1
    counts["enrichment_records_blanked"] = blanked

    conversations = table_of(Conversation)
    await delete(Conversation, conversations.c.id.in_(conv))
    await delete(Lead, table_of(Lead).c.id == lead_id, table_of(Lead).c.tenant_id == tenant_id)
    await session.commit()
    return RowsErased(lead_found=True, counts=counts)


# ---- Temporal ----------------------------------------------------------------------------------


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def _runs_of(client: Client, workflow_id: str) -> dict[str, WorkflowExecutionStatus | None]:
    """Every run Temporal knows of this workflow id: visibility for the closed and continued-as-
    new runs, describe for the latest (visibility lags a start by a moment)."""
    runs: dict[str, WorkflowExecutionStatus | None] = {}
    with contextlib.suppress(RPCError):
        async for execution in client.list_workflows(f"WorkflowId = {_quoted(workflow_id)}"):
            runs[execution.run_id] = execution.status
    try:
        latest = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
    else:
        runs[latest.run_id] = latest.status
    return runs


async def purge_workflows(client: Client, workflow_ids: Iterable[str]) -> WorkflowsPurged:
    """Terminate every running run of these workflows and delete every run's history.

    `DeleteWorkflowExecution` terminates a running run itself, then deletes it at once. A
    separate terminate first would make the deletion wait for the close to be processed
    (measured on the dev server: half a minute instead of nothing). Deletion is still
    asynchronous (describe may answer for a moment); a run already gone counts as done, so this
    is safe to repeat."""
    ids = list(dict.fromkeys(workflow_ids))
    terminated = deleted = 0
    for workflow_id in ids:
        for run_id, status in (await _runs_of(client, workflow_id)).items():
            running = status == WorkflowExecutionStatus.RUNNING
            try:
                await client.workflow_service.delete_workflow_execution(
                    DeleteWorkflowExecutionRequest(
                        namespace=client.namespace,
                        workflow_execution=WorkflowExecution(
                            workflow_id=workflow_id, run_id=run_id
                        ),
                    )
                )
                deleted += 1
                terminated += running
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
    return WorkflowsPurged(workflows=len(ids), terminated=terminated, deleted=deleted)


# ---- tenants -----------------------------------------------------------------------------------


async def tenant_workflow_ids(
    client: Client, session: AsyncSession, *, tenant_id: str
) -> list[str]:
    """Every workflow of the tenant: those carrying its search attribute (conversations), its
    CRM syncs and enrichment jobs (found by id prefix and from its rows), its erasures."""
    ids: dict[str, None] = {}
    for query in (
        f"{search_attributes.TENANT.name} = {_quoted(tenant_id)}",
        f"WorkflowId STARTS_WITH {_quoted(lead_workflow_prefix(CRM_SYNC_PREFIX, tenant_id))}",
        f"WorkflowId STARTS_WITH {_quoted(f'enrich:{tenant_id}:')}",
        f"WorkflowId STARTS_WITH {_quoted(lead_workflow_prefix(ERASE_PREFIX, tenant_id))}",
        f"WorkflowId STARTS_WITH {_quoted(ingestion_workflow_prefix(tenant_id))}",
    ):
        with contextlib.suppress(RPCError):
            async for execution in client.list_workflows(query):
                ids[execution.id] = None
    for conversation_id in (
        await session.exec(select(Conversation.id).where(Conversation.tenant_id == tenant_id))
    ).all():
        ids[conversation_id] = None
    for lead_id in (await session.exec(select(Lead.id).where(Lead.tenant_id == tenant_id))).all():
        ids[crm_sync_workflow_id(tenant_id, lead_id)] = None
        ids[legacy_crm_sync_workflow_id(tenant_id, lead_id)] = None
    for job_id in (
        await session.exec(select(EnrichmentJob.id).where(EnrichmentJob.tenant_id == tenant_id))
    ).all():
        ids[enrichment_workflow_id(tenant_id, job_id)] = None
    return list(ids)


def _tenant_tables(existing: set[str]) -> list[Table]:
    """Every table with a `tenant_id` column, children before parents (foreign keys). Only
    those the database has: a table module may be ahead of the migrations that create it."""
    import_all()
    return [
        table
        for table in reversed(SQLModel.metadata.sorted_tables)
        if "tenant_id" in table.c and table.name != table_of(Tenant).name and table.name in existing
    ]


async def delete_tenant_rows(session: AsyncSession, *, tenant_id: str) -> dict[str, int]:
    """Delete every row of the tenant in every table, its API keys, and the tenant itself, in
    one transaction. Rows without a tenant column that belong to it (the webhook inbox, keyed
    by its conversations' workflow ids) go first. Nothing of another tenant is touched."""
    counts: dict[str, int] = {}
    conn = await session.connection()
    conversation_ids = list(
        (
            await session.exec(select(Conversation.id).where(Conversation.tenant_id == tenant_id))
        ).all()
    )
    inbox = table_of(InboxMessage)
    for chunk in _chunks(conversation_ids, 500):
        result = await conn.execute(sa_delete(inbox).where(inbox.c.workflow_id.in_(chunk)))
        counts[inbox.name] = counts.get(inbox.name, 0) + max(result.rowcount or 0, 0)
    existing = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    for table in _tenant_tables(existing):
        result = await conn.execute(sa_delete(table).where(table.c.tenant_id == tenant_id))
        if result.rowcount:
            counts[table.name] = counts.get(table.name, 0) + result.rowcount
    tenants = table_of(Tenant)
    result = await conn.execute(sa_delete(tenants).where(tenants.c.id == tenant_id))
    counts[tenants.name] = max(result.rowcount or 0, 0)
    await session.commit()
    return counts


def _chunks(values: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class TenantDeleted(Frozen):
    tenant_id: str
    tenant_found: bool
    workflows: WorkflowsPurged
    rows: dict[str, int]
    schedules: int = Field(default=0, description="Inventory source schedules deleted.")


async def delete_tenant(client: Client, session: AsyncSession, *, tenant_id: str) -> TenantDeleted:
    """Delete a tenant for good: its workflows first (so none writes a row back), then its rows.
    Repeatable: a second call (after a crash) finishes what the first left."""
    found = await session.get(Tenant, tenant_id) is not None
    # Schedules first: one firing later would start an ingestion writing items back.
    source_ids = (
        await session.exec(
            select(KnowledgeSourceRow.id).where(KnowledgeSourceRow.tenant_id == tenant_id)
        )
    ).all()
    schedules = await delete_tenant_schedules(client, tenant_id=tenant_id, source_ids=source_ids)
    ids = await tenant_workflow_ids(client, session, tenant_id=tenant_id)
    purged = await purge_workflows(client, ids)
    rows = await delete_tenant_rows(session, tenant_id=tenant_id)
    return TenantDeleted(
        tenant_id=tenant_id, tenant_found=found, workflows=purged, rows=rows, schedules=schedules
    )


async def crm_created_extras(
    session: AsyncSession, *, tenant_id: str, lead_id: str, integration_id: str
) -> dict[str, Any]:
    """What syncs of the lead created beside the record in one CRM (Pipedrive's lead or deal),
    from the idempotency records of its writes, so erasure deletes those too."""
    rows = await session.exec(
        select(CrmIdempotencyRecord).where(
            CrmIdempotencyRecord.tenant_id == tenant_id,
            CrmIdempotencyRecord.integration_id == integration_id,
            col(CrmIdempotencyRecord.key).startswith(
                crm_idempotency_prefix(tenant_id, lead_id), autoescape=True
            ),
        )
    )
    extra: dict[str, Any] = {}
    for row in rows.all():
        if row.result.get("created") and isinstance(row.result.get("extra"), dict):
            extra.update(row.result["extra"])
    return extra
