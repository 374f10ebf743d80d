"""Chatwoot `contact_created` / `contact_updated` events, called by the Chatwoot webhook route
after it checked the signature. Custom attributes changed by an agent (e.g. do-not-contact)
update the lead; the echo of leadflow's own attribute writes is ignored."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from api.deps import AppState
from api.errors import ApiError
from api.webhooks.crm_inbound import InboundReport, apply_remote_changes, integrations_of_kind
from api.webhooks.parsers import load_json
from models.crm import CrmKind
from models.webhooks import WebhookPayloadError

CONTACT_EVENTS = frozenset({"contact_created", "contact_updated"})


def contact_event_name(body: bytes) -> str | None:
    """The event name when the body is a contact event, else None (cheap pre-check)."""
    try:
        payload = load_json(body)
    except WebhookPayloadError:
        return None  # the message parser answers 422 with the reason
    event = payload.get("event") if isinstance(payload, dict) else None
    return event if event in CONTACT_EVENTS else None


def _changed_attributes(payload: dict[str, Any]) -> dict[str, Any]:
    """Custom attributes that changed; all of them when Chatwoot did not say what changed."""
    current = payload.get("custom_attributes")
    current = current if isinstance(current, dict) else {}
    changed = payload.get("changed_attributes")
    # Chatwoot sends changed_attributes as a list of {attr: {previous_value, current_value}}
    entries: list[Any] = changed if isinstance(changed, list) else [changed] if changed else []
    for entry in entries:
        if not isinstance(entry, dict) or "custom_attributes" not in entry:
            continue
        change = entry["custom_attributes"]
        if isinstance(change, dict) and isinstance(change.get("current_value"), dict):
            before = change.get("previous_value")
            before = before if isinstance(before, dict) else {}
            return {k: v for k, v in change["current_value"].items() if before.get(k) != v}
    if entries:
        return {}  # something else changed (name, e-mail...): no attribute to apply
    return dict(current)


async def handle_contact_event(
    state: AppState, *, tenant_id: str, body: bytes
) -> JSONResponse | None:
    """Apply a verified contact event of `tenant_id` to the linked lead.

    None when the body is not a contact event or the tenant has no Chatwoot CRM connection:
    the caller then answers as for any other event it does not handle."""
    if contact_event_name(body) is None:
        return None
    integrations = await integrations_of_kind(state, tenant_id=tenant_id, kind=CrmKind.CHATWOOT)
    if not integrations:
        return None
    payload: dict[str, Any] = load_json(body)
    contact = payload.get("contact") if isinstance(payload.get("contact"), dict) else payload
    assert isinstance(contact, dict)
    contact_id = contact.get("id")
    if contact_id is None:
        raise ApiError(422, "contact event without a contact id", None)
    report = InboundReport()
    changes = _changed_attributes(contact)
    for integration in integrations:
        if changes:
            await apply_remote_changes(
                state,
                integration=integration,
                remote_id=str(contact_id),
                changes=changes,
                report=report,
            )
    applied = report.applied > 0
    # shaped like every webhook acknowledgement (status / delivered / ignored), plus the report
    return JSONResponse(
        {
            "status": "accepted" if applied else "ignored",
            "delivered": [],
            "ignored": [] if applied else [f"Chatwoot {payload.get('event')}: nothing to apply"],
            **report.as_json(),
        }
    )
