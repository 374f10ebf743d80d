"""Contracts of the CRM sync: lead snapshots, connections, field mappings, saga steps, signals.

Everything here crosses the Temporal boundary (workflow/activity inputs and outputs) or the API,
so it is frozen and free of credentials: activities load credentials from the database by
integration id, never from workflow history.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import Field
from temporalio.service import RPCError, RPCStatusCode

from models import workflow_ids
from models.lead_attributes import ATTRIBUTE_NAMES, LeadAttributes
from models.messages import Frozen
from models.task_queues import CRM

if TYPE_CHECKING:
    from temporalio.client import Client

CRM_SYNC_WORKFLOW = "CrmSyncWorkflow"
CRM_CONNECTION_TEST_WORKFLOW = "CrmConnectionTestWorkflow"
SYNC_SIGNAL = "request_sync"
BUILTIN_INTEGRATION_ID = "builtin"
# A CRM write we made is recognised in its webhook echo for this long.
ECHO_WINDOW_SECONDS = 15 * 60


def crm_sync_workflow_id(tenant_id: str, lead_id: str) -> str:
    """`crm:{tenant}:{keyed hash of the lead id}` (models/workflow_ids.py: the lead id is as
    guessable as the contact, so it is not in the id)."""
    return workflow_ids.lead_workflow_id(workflow_ids.CRM_SYNC_PREFIX, tenant_id, lead_id)


def legacy_crm_sync_workflow_id(tenant_id: str, lead_id: str) -> str:
    """`crm:{tenant}:{lead}`, the id syncs had before: only to reach one still running."""
    return workflow_ids.legacy_lead_workflow_id(workflow_ids.CRM_SYNC_PREFIX, tenant_id, lead_id)


def idempotency_key(tenant_id: str, lead_id: str, version: int, integration_id: str) -> str:
    """One key per (lead version, CRM): the same version is never written twice to one CRM."""
    return f"crm:{tenant_id}:{lead_id}:v{version}:{integration_id}"


class CrmKind(StrEnum):
    BUILTIN = "builtin"
    HUBSPOT = "hubspot"
    SALESFORCE = "salesforce"
    PIPEDRIVE = "pipedrive"
    CHATWOOT = "chatwoot"
    GOHIGHLEVEL = "gohighlevel"


class SyncMode(StrEnum):
    SAGA = "saga"  # all CRMs or none: a permanent failure undoes the earlier steps
    BEST_EFFORT = "best_effort"  # keep what succeeded, report what failed


DEFAULT_BASE_URLS: dict[CrmKind, str] = {
    CrmKind.BUILTIN: "",
    CrmKind.HUBSPOT: "https://api.hubapi.com",
    CrmKind.SALESFORCE: "https://login.salesforce.com",
    CrmKind.PIPEDRIVE: "https://api.pipedrive.com",
    CrmKind.CHATWOOT: "https://app.chatwoot.com",
    CrmKind.GOHIGHLEVEL: "https://services.leadconnectorhq.com",
}

REQUIRED_CREDENTIALS: dict[CrmKind, tuple[tuple[str, ...], ...]] = {
    # each inner tuple is one accepted way to authenticate
    CrmKind.BUILTIN: ((),),
    CrmKind.HUBSPOT: (("access_token",),),
    CrmKind.SALESFORCE: (("client_id", "client_secret"),),
    CrmKind.PIPEDRIVE: (("api_token",), ("access_token",)),
    CrmKind.CHATWOOT: (("api_token", "account_id"),),
    # API v2 is per sub-account (location): a Private Integration token of the sub-account, or
    # a location access token obtained through the marketplace OAuth flow (gohighlevel.md §1).
    CrmKind.GOHIGHLEVEL: (
        ("private_integration_token", "location_id"),
        ("access_token", "location_id"),
    ),
}

# leadflow fields a mapping may read. `fields.<key>` reads an extracted conversation field; the
# lead's tags and custom attributes are models/lead_attributes.py's `ATTRIBUTE_NAMES`.
LEAD_FIELDS: frozenset[str] = frozenset(
    {
        *ATTRIBUTE_NAMES,
        "name",
        "first_name",
        "last_name",
        "email",
        "phone",
        "score",
        "quality",
        "do_not_contact",
        "interests",
        "summary",
        "channel",
        "address",
        "lead_id",
    }
)
# Fields a CRM may change through its webhooks; score and quality are leadflow's own verdict.
INBOUND_FIELDS: frozenset[str] = frozenset({"name", "email", "phone", "do_not_contact"})

_TARGET_PATTERNS: dict[CrmKind, re.Pattern[str]] = {
    # HubSpot internal property names are lowercase snake case.
    CrmKind.HUBSPOT: re.compile(r"^[a-z][a-z0-9_]{0,99}$"),
    # Salesforce API names: letters, digits, underscores; custom ones end in __c.
    CrmKind.SALESFORCE: re.compile(r"^[A-Za-z](?:[A-Za-z0-9]|_(?!_))*(?:__c)?$"),
    # Pipedrive: the standard keys, the marketing status, or a 40-hex custom field key.
    CrmKind.PIPEDRIVE: re.compile(r"^(?:name|email|phone|marketing_status|[0-9a-f]{40})$"),
    # Chatwoot: contact custom attribute keys, or `labels` (conversation labels).
    CrmKind.CHATWOOT: re.compile(r"^[a-z][a-z0-9_]{0,63}$"),
    CrmKind.BUILTIN: re.compile(r"^[a-z][a-z0-9_]{0,63}$"),
    # GoHighLevel: a standard contact field of the upsert body, or `customField.<id>` (custom
    # fields are written and read by id, never by name: gohighlevel.md §3 "Custom fields").
    CrmKind.GOHIGHLEVEL: re.compile(
        r"^(?:firstName|lastName|name|email|phone|companyName|source|website|address1|city"
        r"|state|postalCode|country|timezone|dnd|customField\.[A-Za-z0-9]{1,64})$"
    ),
}

# GoHighLevel's own opt-out is the contact's `dnd` flag. do_not_contact true writes dnd true;
# false writes nothing, as for Pipedrive: lifting leadflow's opt-out is not the lead's consent,
# which only the CRM may record. A compensation writes the flag back exactly as it was.
GOHIGHLEVEL_DND = "dnd"
GOHIGHLEVEL_CUSTOM_FIELD = "customField."

# Pipedrive's own opt-out: the person's `marketing_status` (no_consent | unsubscribed | subscribed
# | archived; accepted when the company uses Pipedrive's Campaigns product). do_not_contact true
# is written as "unsubscribed"; false is not written: lifting leadflow's opt-out is not the
# lead's consent to marketing, which only the CRM may record (activities/crm/pipedrive.py).
PIPEDRIVE_MARKETING_STATUS = "marketing_status"

# The dealership's custom attributes (models/lead_attributes.py) by the names leadflow gives them
# in a CRM: Chatwoot contact custom attributes as they are, HubSpot custom properties with the
# `leadflow_` prefix its score has, Salesforce custom fields `Leadflow_<Name>__c`. The lead's tags
# go to Chatwoot as conversation labels and to GoHighLevel as contact tags (their own APIs);
# HubSpot and Salesforce have no tags on a contact or lead, so they get a mapped text property
# (`leadflow_tags`, `Leadflow_Tags__c`: HubSpot's `;`-separated multi-checkbox notation).
# Pipedrive's custom fields and GoHighLevel's custom fields have keys or ids of their own per
# company or location, so their attributes (and Pipedrive's tags) are mapped by the tenant.
_ATTRIBUTES = tuple(name for name in ATTRIBUTE_NAMES if name != "tags")
_CHATWOOT_ATTRIBUTES = {name: name for name in _ATTRIBUTES}
_HUBSPOT_ATTRIBUTES = {name: f"leadflow_{name}" for name in ATTRIBUTE_NAMES}
_SALESFORCE_ATTRIBUTES = {
    name: "Leadflow_" + "_".join(part.capitalize() for part in name.split("_")) + "__c"
    for name in ATTRIBUTE_NAMES
}

# What a new connection maps (the API and the CLI store a copy with the connection, so a change
# here reaches only connections made after it). do_not_contact goes to every CRM: HubSpot and
# Salesforce get a custom property beside leadflow's score (their wire docs show no opt-out
# property; a tenant may map it to its own instead), Pipedrive its marketing status, Chatwoot a
# contact custom attribute.
DEFAULT_FIELD_MAPPINGS: dict[CrmKind, dict[str, str]] = {
    CrmKind.BUILTIN: {},
    CrmKind.HUBSPOT: {
        "email": "email",
        "phone": "phone",
        "first_name": "firstname",
        "last_name": "lastname",
        "score": "leadflow_score",
        "quality": "leadflow_quality",
        "do_not_contact": "leadflow_do_not_contact",
        **_HUBSPOT_ATTRIBUTES,
    },
    CrmKind.SALESFORCE: {
        "email": "Email",
        "phone": "Phone",
        "first_name": "FirstName",
        "last_name": "LastName",
        "score": "Leadflow_Score__c",
        "quality": "Rating",
        "do_not_contact": "Leadflow_Do_Not_Contact__c",
        **_SALESFORCE_ATTRIBUTES,
    },
    CrmKind.PIPEDRIVE: {
        "name": "name",
        "email": "email",
        "phone": "phone",
        "do_not_contact": PIPEDRIVE_MARKETING_STATUS,
    },
    CrmKind.CHATWOOT: {
        "score": "lead_score",
        "quality": "lead_quality",
        "interests": "interests",
        "do_not_contact": "do_not_contact",
        **_CHATWOOT_ATTRIBUTES,
    },
    # score and quality need a custom field of the location (`customField.<id>`, ids differ per
    # location), so they are not mapped by default; quality and interests go out as tags.
    CrmKind.GOHIGHLEVEL: {
        "email": "email",
        "phone": "phone",
        "first_name": "firstName",
        "last_name": "lastName",
        "do_not_contact": GOHIGHLEVEL_DND,
    },
}


class FieldProblem(Frozen):
    field: str
    problem: str


def validate_field_mapping(kind: CrmKind, mapping: dict[str, str]) -> list[FieldProblem]:
    """Every problem of a mapping at once, so the API can answer 422 with the full list."""
    problems: list[FieldProblem] = []
    pattern = _TARGET_PATTERNS[kind]
    seen_targets: dict[str, str] = {}
    for source, target in mapping.items():
        if source not in LEAD_FIELDS and not re.fullmatch(r"fields\.[A-Za-z0-9_]{1,64}", source):
            problems.append(
                FieldProblem(
                    field=source,
                    problem="unknown leadflow field; use one of "
                    f"{', '.join(sorted(LEAD_FIELDS))} or fields.<key>",
                )
            )
        if not isinstance(target, str) or not pattern.fullmatch(target):
            problems.append(
                FieldProblem(
                    field=source,
                    problem=f"{target!r} is not a valid {kind.value} property name",
                )
            )
        elif target in seen_targets:
            problems.append(
                FieldProblem(
                    field=source,
                    problem=f"{target!r} is already mapped from {seen_targets[target]!r}",
                )
            )
        else:
            seen_targets[target] = source
    return problems


def missing_credentials(kind: CrmKind, credentials: dict[str, Any]) -> list[str]:
    """Names of credentials still missing, judged against the closest accepted way to log in."""
    best: list[str] | None = None
    for option in REQUIRED_CREDENTIALS[kind]:
        missing = [name for name in option if not str(credentials.get(name) or "").strip()]
        if not missing:
            return []
        if best is None or len(missing) < len(best):
            best = missing
    return best or []


class LeadSnapshot(Frozen):
    """The lead as the sync sees it, read fresh from the database at the start of each sync."""

    tenant_id: str
    lead_id: str
    version: int
    channel: str
    address: str
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    score: int = 0
    quality: str = "COLD"
    do_not_contact: bool = False
    fields: dict[str, Any] = Field(default_factory=dict)
    interests: tuple[str, ...] = ()
    summary: str | None = None
    chatwoot_conversation_ids: tuple[str, ...] = Field(
        default=(), description="Chatwoot conversations of this lead, for labels and notes."
    )
    tags: tuple[str, ...] = Field(
        default=(),
        description="The lead's tags (models/tags.py): Chatwoot labels, GoHighLevel tags, a "
        "mapped property elsewhere.",
    )
    attributes: LeadAttributes | None = Field(
        default=None, description="The custom attributes (models/lead_attributes.py)."
    )

    @property
    def first_name(self) -> str | None:
        if not self.name:
            return None
        return self.name.split(" ", 1)[0]

    @property
    def last_name(self) -> str | None:
        if not self.name or " " not in self.name.strip():
            return None
        return self.name.strip().split(" ", 1)[1]

    def value_of(self, source: str) -> Any:
        """The value of a mapping source (`email`, `fields.budget`, ...)."""
        if source.startswith("fields."):
            return self.fields.get(source.removeprefix("fields."))
        if source == "interests":
            return ";".join(self.interests) if self.interests else None
        if source == "lead_id":
            return self.lead_id
        if source in ATTRIBUTE_NAMES:
            if source == "tags":
                return ";".join(self.tags) if self.tags else None
            return self.attributes.value_of(source) if self.attributes is not None else None
        return getattr(self, source)


class CrmConnectionView(Frozen):
    """A connection as anyone may see it: never the credentials."""

    integration_id: str
    tenant_id: str
    kind: CrmKind
    name: str
    base_url: str
    order: int = 0
    mode: SyncMode = SyncMode.SAGA
    field_mapping: dict[str, str] = Field(default_factory=dict)
    enabled: bool = True
    created_at: datetime | None = None


class LoadSyncPlanInput(Frozen):
    tenant_id: str
    lead_id: str


class CrmSyncPlan(Frozen):
    lead: LeadSnapshot | None = Field(description="None when the lead no longer exists.")
    connections: tuple[CrmConnectionView, ...] = ()
    mode: SyncMode = SyncMode.SAGA


class CrmReadInput(Frozen):
    connection: CrmConnectionView
    lead: LeadSnapshot


class CrmReadResult(Frozen):
    exists: bool
    remote_id: str | None = None
    values: dict[str, Any] = Field(
        default_factory=dict, description="Previous values of the mapped CRM properties."
    )
    extra: dict[str, Any] = Field(
        default_factory=dict, description="Adapter-specific state to restore (e.g. labels)."
    )


class CrmWriteInput(Frozen):
    connection: CrmConnectionView
    lead: LeadSnapshot
    idempotency_key: str
    remote_id: str | None = None


class CrmWriteResult(Frozen):
    remote_id: str
    created: bool
    written: dict[str, Any] = Field(default_factory=dict)
    replayed: bool = Field(
        default=False, description="True when the idempotency record answered; no CRM call made."
    )
    extra: dict[str, Any] = Field(default_factory=dict)


class CompensationAction(StrEnum):
    RESTORE = "restore"  # put the previous values back
    DELETE = "delete"  # remove what this step created


class CrmCompensationInput(Frozen):
    connection: CrmConnectionView
    lead: LeadSnapshot
    action: CompensationAction
    idempotency_key: str
    remote_id: str | None = None
    previous_values: dict[str, Any] = Field(default_factory=dict)
    previous_extra: dict[str, Any] = Field(default_factory=dict)
    created_extra: dict[str, Any] = Field(default_factory=dict)


class CrmCompensationResult(Frozen):
    action: CompensationAction
    remote_id: str | None
    done: bool
    detail: str = ""


class CrmNoteInput(Frozen):
    connection: CrmConnectionView
    lead: LeadSnapshot
    remote_id: str
    text: str
    idempotency_key: str


class CrmNoteResult(Frozen):
    note_id: str | None
    replayed: bool = False


class StepStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"
    SKIPPED = "skipped"


class SagaStepOutcome(Frozen):
    integration_id: str
    kind: CrmKind
    name: str
    status: StepStatus
    remote_id: str | None = None
    created: bool = False
    error: str | None = None


class SyncStatus(StrEnum):
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"  # best effort: some CRMs failed, the others kept
    ROLLED_BACK = "rolled_back"  # saga: a step failed and every earlier step was undone
    FAILED = "failed"  # saga: a step failed and a compensation failed too
    SKIPPED = "skipped"  # the lead is gone, or nothing to sync


class SyncOutcome(Frozen):
    tenant_id: str
    lead_id: str
    version: int
    status: SyncStatus
    reason: str | None = None
    steps: tuple[SagaStepOutcome, ...] = ()
    reasons: tuple[str, ...] = Field(default=(), description="Why this sync ran (coalesced).")


class RecordSyncInput(Frozen):
    run_key: str = Field(description="Workflow run id + sync number; makes recording idempotent.")
    outcome: SyncOutcome


class SyncRequest(Frozen):
    """Signal payload: the lead changed, please sync."""

    reason: str = "lead changed"
    version: int | None = None


class CrmSyncInput(Frozen):
    """Start input of CrmSyncWorkflow, and the state carried over continue-as-new."""

    tenant_id: str
    lead_id: str
    coalesce_seconds: float = Field(
        default=2.0, description="Quiet time after the last change before a sync starts."
    )
    max_coalesce_seconds: float = Field(
        default=30.0, description="A lead that keeps changing is still synced this often."
    )
    pending_reasons: tuple[str, ...] = ()
    syncs_done: int = 0
    max_syncs_per_run: int = 50


class CrmSyncState(Frozen):
    """What the `state` query returns."""

    tenant_id: str
    lead_id: str
    pending_reasons: tuple[str, ...]
    syncing: bool
    syncs_done: int
    last_outcome: SyncOutcome | None


class RequestCrmSyncInput(Frozen):
    tenant_id: str
    lead_id: str
    reason: str = "lead changed"


class RequestCrmSyncResult(Frozen):
    workflow_id: str


class ConnectionCheckInput(Frozen):
    tenant_id: str
    integration_id: str


class ConnectionCheckResult(Frozen):
    ok: bool
    detail: str


async def request_crm_sync(
    client: Client,
    *,
    tenant_id: str,
    lead_id: str,
    reason: str,
    version: int | None = None,
    coalesce_seconds: float = 2.0,
    task_queue: str = CRM,
) -> str:
    """Signal-with-start the lead's CrmSyncWorkflow (one per lead; it coalesces requests).

    The one way in for the API, the conversation's requester activity and enrichment. The
    workflow is addressed by name: callers never import workflow code. Returns the id of the
    workflow that got the request.

    A sync started before hashed ids runs under its legacy id until it ends (it coalesces, runs
    its sagas and ends once no request is pending, but a saga waiting out a CRM that is down can
    take hours). While it runs it gets the request, so two sagas of one lead never write to a
    CRM at once; it ends only with no request pending (a signal racing its end is seen by it),
    and no one starts a legacy id again, so once it is gone it stays gone and every request
    after goes to the hashed id. The price is one signal call answered NOT_FOUND per request."""
    request = SyncRequest(reason=reason, version=version)
    legacy_id = legacy_crm_sync_workflow_id(tenant_id, lead_id)
    try:
        await client.get_workflow_handle(legacy_id).signal(SYNC_SIGNAL, request)
        return legacy_id
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
    workflow_id = crm_sync_workflow_id(tenant_id, lead_id)
    await client.start_workflow(
        CRM_SYNC_WORKFLOW,
        CrmSyncInput(tenant_id=tenant_id, lead_id=lead_id, coalesce_seconds=coalesce_seconds),
        id=workflow_id,
        task_queue=task_queue,
        start_signal=SYNC_SIGNAL,
        start_signal_args=[request],
        # What the Temporal UI shows for the run; no lead id (an unkeyed UUID5 of the contact).
        static_summary=f"CRM sync of a lead of {tenant_id}",
        static_details=f"- started by: {reason}\n- later changes are coalesced into this run",
    )
    return workflow_id
