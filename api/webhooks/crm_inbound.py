"""What every CRM webhook does once the request is authenticated: map changed CRM properties
back to leadflow fields, drop the echoes of our own writes, update the lead, and tell its
conversations (do-not-contact closes them, which stops their follow-ups).

Shared by the HubSpot, Pipedrive, GoHighLevel and Chatwoot contact handlers; no router here.
The two functions that act (`apply_remote_changes`, `forget_remote_record`) first ask the
integration service whether the connection takes inbound events at all
(`models.integration_service.inbound_ignored_reason`: a disabled one does not), so no handler
decides that itself."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from api.conversations_gateway import signal_conversation
from api.deps import AppState
from api.errors import ApiError
from models import integration_service
from models.conversation import CloseRequest
from models.crm import DEFAULT_FIELD_MAPPINGS, INBOUND_FIELDS, CrmKind
from models.crm_tables import Integration
from models.repo import crm as crm_repo
from models.repo import leads as lead_repo
from workers.client import TemporalUnavailable

log = logging.getLogger("leadflow.webhooks.crm")

TRUE_WORDS = frozenset({"true", "1", "yes", "y", "on"})


@dataclass
class InboundReport:
    """The webhook's answer: what was applied, recognised as our echo, or not for us."""

    applied: int = 0
    echoes: int = 0
    ignored: int = 0
    leads: set[str] = field(default_factory=set)
    closed_conversations: int = 0
    # why whole records were ignored (a disabled connection), each reason once
    reasons: dict[str, None] = field(default_factory=dict)

    @property
    def refused(self) -> bool:
        """Some record was not acted on because its connection takes no inbound events."""
        return bool(self.reasons)

    def as_json(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "echoes": self.echoes,
            "ignored": self.ignored,
            "ignored_reasons": list(self.reasons),
            "leads_updated": sorted(self.leads),
            "conversations_closed": self.closed_conversations,
        }


def _refused(integration: Integration, report: InboundReport, records: int) -> bool:
    """True (and the report and the log say why) when the connection takes no inbound events."""
    reason = integration_service.inbound_ignored_reason(integration)
    if reason is None:
        return False
    report.ignored += records
    if reason not in report.reasons:
        report.reasons[reason] = None
        log.info(
            "inbound %s event for tenant %s ignored: %s",
            integration.kind,
            integration.tenant_id,
            reason,
        )
    return True


def _coerce(lead_field: str, value: Any) -> Any:
    if lead_field == "do_not_contact":
        if isinstance(value, bool):
            return value
        return str(value).strip().lower() in TRUE_WORDS
    if value is None or value == "":
        return None
    return value if lead_field.startswith("fields.") else str(value)


def reverse_mapping(integration: Integration) -> dict[str, str]:
    mapping = integration.field_mapping or DEFAULT_FIELD_MAPPINGS[CrmKind(integration.kind)]
    return {target: source for source, target in mapping.items()}


async def apply_remote_changes(
    state: AppState,
    *,
    integration: Integration,
    remote_id: str,
    changes: dict[str, Any],
    report: InboundReport,
) -> None:
    """Apply one CRM record's changed properties to the linked lead."""
    if _refused(integration, report, len(changes)):
        return
    reverse = reverse_mapping(integration)
    async with state.db.session() as session:
        link = await crm_repo.find_link_by_remote_id(
            session, integration_id=integration.id, remote_id=remote_id
        )
        lead = (
            await lead_repo.get_lead(session, tenant_id=integration.tenant_id, lead_id=link.lead_id)
            if link is not None
            else None
        )
        if lead is None:
            # a CRM record leadflow never synced: not ours to act on
            report.ignored += len(changes)
            return
        wanted: dict[str, Any] = {}
        for prop, value in changes.items():
            lead_field = reverse.get(prop)
            if lead_field is None or (
                lead_field not in INBOUND_FIELDS and not lead_field.startswith("fields.")
            ):
                report.ignored += 1
                continue
            if await crm_repo.is_echo(
                session, integration_id=integration.id, remote_id=remote_id, prop=prop, value=value
            ):
                report.echoes += 1
                continue
            wanted[lead_field] = _coerce(lead_field, value)
        if not wanted:
            return
        applied = await lead_repo.update_lead(session, lead=lead, changes=wanted, only_inbound=True)
        report.applied += len(wanted)
        if applied:
            report.leads.add(lead.id)
        conversations = await lead_repo.conversations_of_lead(
            session, tenant_id=lead.tenant_id, lead_id=lead.id
        )
    # signalled even when the flag was already set: a redelivered webhook after a Temporal
    # outage must still close the conversation (closing twice is a no-op)
    if wanted.get("do_not_contact") is True and conversations:
        try:
            client = await state.temporal_client()
        except TemporalUnavailable as exc:
            raise ApiError(503, "Temporal is unavailable", str(exc)) from exc
        reason = f"do not contact set in {integration.kind} {integration.name!r}"
        for conversation in conversations:
            if await signal_conversation(
                client, conversation.id, "close", CloseRequest(reason=reason)
            ):
                report.closed_conversations += 1


async def forget_remote_record(
    state: AppState, *, integration: Integration, remote_id: str, report: InboundReport
) -> None:
    """The record was deleted in the CRM: the next sync creates it again if still wanted."""
    if _refused(integration, report, 1):
        return
    async with state.db.session() as session:
        link = await crm_repo.find_link_by_remote_id(
            session, integration_id=integration.id, remote_id=remote_id
        )
        if link is None:
            report.ignored += 1
            return
        await crm_repo.save_link(
            session,
            tenant_id=link.tenant_id,
            integration_id=integration.id,
            lead_id=link.lead_id,
            remote_id=None,
            outcome="deleted_in_crm",
            reason=f"deleted in {integration.kind} {integration.name!r}",
        )
        report.applied += 1
        report.leads.add(link.lead_id)


async def integrations_of_kind(
    state: AppState, *, tenant_id: str, kind: CrmKind
) -> list[Integration]:
    """Every connection of the kind, disabled ones included: a request is authenticated against
    all of them (a bad signature is 401 whether or not the connection is enabled). Enabled ones
    come first, so that when two connections share a webhook secret the event goes to the one
    that takes it."""
    async with state.db.session() as session:
        rows = await crm_repo.list_integrations(session, tenant_id=tenant_id)
    return sorted((row for row in rows if row.kind == kind.value), key=lambda row: not row.enabled)


def credentials_of(state: AppState, integration: Integration) -> dict[str, Any]:
    return crm_repo.integration_credentials(
        integration, secret_key=state.settings.secret_key.get_secret_value()
    )
