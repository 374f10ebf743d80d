"""`POST /webhooks/gohighlevel/{tenant}`: GoHighLevel contact webhooks (ContactCreate,
ContactUpdate, ContactTagUpdate, ContactDndUpdate, ContactDelete), signature checked
(../shared/wire/gohighlevel.md §5).

Two signature schemes, both over the raw body: Ed25519 in `x-ghl-signature` (preferred; the
app's public key is the integration's `webhook_public_key` credential) and RSA-SHA256 PKCS#1 v1.5
in `x-wh-signature` (GoHighLevel's published key, or `webhook_rsa_public_key` once it rotates).
A body whose `timestamp` is more than five minutes off is refused; a `webhookId` seen before
is acknowledged and not applied again.

The payload is the contact's whole state, not a diff: every mapped property in it goes through
the shared inbound path, which drops the echoes of leadflow's own writes and leaves unchanged
values unchanged. An opt-out is only lifted by a ContactDndUpdate: a contact update that merely
still shows `dnd: false` (e.g. before leadflow's first write) must not undo a lead's opt-out."""

from __future__ import annotations

import base64
import binascii
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import State, load_tenant
from api.errors import ApiError
from api.webhooks.body import require_json_content_type
from api.webhooks.common import CRM_WEBHOOK_RESPONSES, read_body, webhook_body
from api.webhooks.crm_inbound import (
    InboundReport,
    apply_remote_changes,
    credentials_of,
    forget_remote_record,
    integrations_of_kind,
    reverse_mapping,
)
from api.webhooks.parsers import load_json
from models.crm import GOHIGHLEVEL_CUSTOM_FIELD, GOHIGHLEVEL_DND, CrmKind
from models.crm_tables import Integration
from models.webhooks import WebhookPayloadError

router = APIRouter(prefix="/webhooks/gohighlevel", tags=["webhooks"])

# Published in GoHighLevel's WebhookAuthentication doc (may rotate: then set
# `webhook_rsa_public_key` on the integration).
GHL_RSA_PUBLIC_KEY = """-----BEGIN PUBLIC KEY-----
MIICIjANBgkqhkiG9w0BAQEFAAOCAg8AMIICCgKCAgEAokvo/r9tVgcfZ5DysOSC
Frm602qYV0MaAiNnX9O8KxMbiyRKWeL9JpCpVpt4XHIcBOK4u3cLSqJGOLaPuXw6
dO0t6Q/ZVdAV5Phz+ZtzPL16iCGeK9po6D6JHBpbi989mmzMryUnQJezlYJ3DVfB
csedpinheNnyYeFXolrJvcsjDtfAeRx5ByHQmTnSdFUzuAnC9/GepgLT9SM4nCpv
uxmZMxrJt5Rw+VUaQ9B8JSvbMPpez4peKaJPZHBbU3OdeCVx5klVXXZQGNHOs8gF
3kvoV5rTnXV0IknLBXlcKKAQLZcY/Q9rG6Ifi9c+5vqlvHPCUJFT5XUGG5RKgOKU
J062fRtN+rLYZUV+BjafxQauvC8wSWeYja63VSUruvmNj8xkx2zE/Juc+yjLjTXp
IocmaiFeAO6fUtNjDeFVkhf5LNb59vECyrHD2SQIrhgXpO4Q3dVNA5rw576PwTzN
h/AMfHKIjE4xQA1SZuYJmNnmVZLIZBlQAF9Ntd03rfadZ+yDiOXCCs9FkHibELhC
HULgCsnuDJHcrGNd5/Ddm5hxGQ0ASitgHeMZ0kcIOwKDOzOU53lDza6/Y09T7sYJ
PQe7z0cvj7aE4B+Ax1ZoZGPzpJlZtGXCsu9aTEGEnKzmsFqwcSsnw3JB31IGKAyk
T1hhTiaCeIY/OwwwNUY2yvcCAwEAAQ==
-----END PUBLIC KEY-----
"""
MAX_TIMESTAMP_AGE_SECONDS = 300
CONTACT_CHANGES = frozenset({"ContactCreate", "ContactUpdate", "ContactTagUpdate"})
DND_UPDATE = "ContactDndUpdate"
CONTACT_DELETE = "ContactDelete"

# webhookIds applied lately, per API process (GoHighLevel: "Reject any requests with duplicate
# webhookId values"). Applying a contact's state twice changes nothing; this saves the work and
# the second close signal. A redelivery after our own failure is not in here: ids are recorded
# only once applied.
_SEEN_LIMIT = 10_000
_seen: OrderedDict[str, float] = OrderedDict()


def _already_applied(key: str) -> bool:
    cutoff = time.monotonic() - 2 * MAX_TIMESTAMP_AGE_SECONDS
    while _seen and next(iter(_seen.values())) < cutoff:
        _seen.popitem(last=False)
    return key in _seen


def _remember(key: str) -> None:
    _seen[key] = time.monotonic()
    while len(_seen) > _SEEN_LIMIT:
        _seen.popitem(last=False)


# ---- signatures ------------------------------------------------------------------------------


def _ed25519_key(text: str) -> Ed25519PublicKey | None:
    """The app's key as PEM (SPKI), 64 hex digits, or base64 of the 32 raw bytes."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
            return key if isinstance(key, Ed25519PublicKey) else None
        raw = bytes.fromhex(text) if len(text) == 64 else base64.b64decode(text, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, binascii.Error):
        return None


def _rsa_key(text: str) -> RSAPublicKey | None:
    try:
        key = serialization.load_pem_public_key(text.strip().encode())
    except ValueError:
        return None
    return key if isinstance(key, RSAPublicKey) else None


def _signature_bytes(value: str) -> bytes | None:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (ValueError, binascii.Error):
        return None


def signature_valid(body: bytes, headers: dict[str, str], credentials: dict[str, Any]) -> bool:
    """Ed25519 (`x-ghl-signature`) when the integration has the app's key, else RSA
    (`x-wh-signature`) with the published key or the integration's override."""
    ed_signature = headers.get("x-ghl-signature")
    ed_key_text = str(credentials.get("webhook_public_key") or "")
    if ed_signature and ed_key_text:
        key = _ed25519_key(ed_key_text)
        signature = _signature_bytes(ed_signature)
        if key is None or signature is None or len(signature) != 64:
            return False
        try:
            key.verify(signature, body)
        except InvalidSignature:
            return False
        return True
    rsa_signature = headers.get("x-wh-signature")
    if not rsa_signature:
        return False
    rsa_key = _rsa_key(str(credentials.get("webhook_rsa_public_key") or GHL_RSA_PUBLIC_KEY))
    signature = _signature_bytes(rsa_signature)
    if rsa_key is None or signature is None:
        return False
    try:
        rsa_key.verify(signature, body, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def _verified(
    request: Request, body: bytes, integrations: list[Integration], state: State
) -> list[Integration]:
    headers = {k.lower(): v for k, v in request.headers.items()}
    if not headers.get("x-ghl-signature") and not headers.get("x-wh-signature"):
        raise ApiError(401, "missing signature", "x-ghl-signature or x-wh-signature required")
    verified = [
        integration
        for integration in integrations
        if signature_valid(body, headers, credentials_of(state, integration))
    ]
    if not verified:
        raise ApiError(401, "invalid signature", None)
    return verified


def _check_timestamp(payload: dict[str, Any]) -> None:
    raw = payload.get("timestamp")
    if raw is None:
        return  # the event examples carry none; the signature still binds the body
    try:
        when = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(401, "invalid timestamp", "timestamp must be ISO 8601") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if abs((datetime.now(UTC) - when).total_seconds()) > MAX_TIMESTAMP_AGE_SECONDS:
        raise ApiError(401, "expired timestamp", "the request is older than five minutes")


# ---- the contact's state as changes ----------------------------------------------------------


def contact_changes(payload: dict[str, Any], mapped: set[str]) -> dict[str, Any]:
    """{mapped GoHighLevel property: value} present in a contact event. Empty values are left
    out: the event is the whole contact, and a field GoHighLevel has no value for says nothing
    about the lead (as on the way out, unknown values are never cleared)."""
    changes: dict[str, Any] = {}
    for prop in mapped:
        if prop.startswith(GOHIGHLEVEL_CUSTOM_FIELD):
            field_id = prop.removeprefix(GOHIGHLEVEL_CUSTOM_FIELD)
            for item in payload.get("customFields") or []:
                if isinstance(item, dict) and item.get("id") == field_id:
                    changes[prop] = item.get("value")
        elif prop in payload:
            changes[prop] = payload[prop]
    changes = {k: v for k, v in changes.items() if v is not None and v != ""}
    if GOHIGHLEVEL_DND in changes and payload.get("type") != DND_UPDATE:
        if changes[GOHIGHLEVEL_DND] is not True:
            del changes[GOHIGHLEVEL_DND]  # only the DND event lifts an opt-out
    return changes


@router.post(
    "/{tenant}",
    responses=CRM_WEBHOOK_RESPONSES,
    openapi_extra=webhook_body("A GoHighLevel contact webhook (Ed25519 or RSA signature)."),
)
async def gohighlevel_webhook(tenant: str, request: Request, state: State) -> JSONResponse:
    require_json_content_type(request)
    body = await read_body(request, state.settings.max_webhook_bytes)
    async with state.db.session() as session:
        await load_tenant(session, tenant)
    integrations = await integrations_of_kind(state, tenant_id=tenant, kind=CrmKind.GOHIGHLEVEL)
    if not integrations:
        raise ApiError(404, "no GoHighLevel integration", f"tenant {tenant} has none configured")
    verified = _verified(request, body, integrations, state)
    try:
        payload = load_json(body)
    except WebhookPayloadError as exc:
        raise ApiError(422, "invalid JSON", exc.message) from None
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
        raise ApiError(422, "not a GoHighLevel webhook", "expected an object with `type`")
    _check_timestamp(payload)

    report = InboundReport()
    event = payload["type"]
    webhook_id = payload.get("webhookId")
    seen_key = f"{tenant}:{webhook_id}" if webhook_id else None
    if seen_key is not None and _already_applied(seen_key):
        report.ignored += 1
        return JSONResponse({**report.as_json(), "duplicate": True})
    is_contact_event = event in CONTACT_CHANGES or event in (DND_UPDATE, CONTACT_DELETE)
    if not is_contact_event:
        report.ignored += 1
        return JSONResponse(report.as_json())
    contact_id = payload.get("id")
    if not isinstance(contact_id, str) or not contact_id:
        raise ApiError(422, f"{event} without a contact id", "expected a string `id`")
    location = payload.get("locationId")
    # the sub-account the event is about; a location the tenant did not connect is not ours
    targets = [i for i in verified if str(credentials_of(state, i).get("location_id")) == location]
    if not targets:
        report.ignored += 1
    for integration in targets:
        if event == CONTACT_DELETE:
            await forget_remote_record(
                state, integration=integration, remote_id=contact_id, report=report
            )
            continue
        changes = contact_changes(payload, set(reverse_mapping(integration)))
        if changes:
            await apply_remote_changes(
                state,
                integration=integration,
                remote_id=contact_id,
                changes=changes,
                report=report,
            )
    # not applied when a connection was disabled: the same event after re-enabling must act
    if seen_key is not None and not report.refused:
        _remember(seen_key)
    return JSONResponse(report.as_json())
