"""`POST /webhooks/sendgrid/{tenant}`: SendGrid Inbound Parse (multipart/form-data; parsed
fields, or the raw MIME in `email` when "POST the raw, full MIME message" is on).

SendGrid signs nothing leadflow can check (wire doc inbound_email.md §b): the Parse URL carries
HTTP basic auth, `https://any:<password>@host/webhooks/sendgrid/<tenant>`, the password being
`inbound_email.basic_auth_password`. SendGrid retries only 5xx answers (for 3 days), so a 4xx
(a bad payload: 422) is final and a 503 (Temporal or the database down) is delivered again."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import State
from api.responses import errors
from api.webhooks.common import WEBHOOK_RESPONSES, read_body, tenant_and_settings
from api.webhooks.email import (
    deliver_email,
    form_webhook_body,
    parse_or_status,
    read_form,
    require_form_content_type,
    verify_basic_auth,
)
from api.webhooks.parsers.sendgrid import WHAT, parse_sendgrid

router = APIRouter(prefix="/webhooks/sendgrid", tags=["webhooks"])

MALFORMED = 422

RESPONSES = {
    **WEBHOOK_RESPONSES,
    **errors(
        415,
        401,
        _415="Not a form (multipart/form-data, or application/x-www-form-urlencoded).",
        _401="Missing or wrong basic auth password (or none configured and unsigned refused).",
    ),
}


@router.post(
    "/{tenant}",
    responses=RESPONSES,
    openapi_extra=form_webhook_body(
        "A SendGrid Inbound Parse post (docs/webhooks.md), HTTP basic auth.",
        media_types=("multipart/form-data",),
    ),
)
async def sendgrid_webhook(tenant: str, request: Request, state: State) -> JSONResponse:
    require_form_content_type(request)
    body = await read_body(request, state.settings.max_webhook_bytes)
    row, settings = await tenant_and_settings(state, tenant)
    inbound = settings.inbound_email
    verify_basic_auth(
        request,
        inbound.basic_auth_password if inbound else None,
        allow_unsigned=settings.allow_unsigned_webhooks,
        provider="SendGrid Inbound Parse",
    )
    fields = await read_form(request, body, what=WHAT, status=MALFORMED)
    email = parse_or_status(lambda: parse_sendgrid(fields), MALFORMED)
    return await deliver_email(state, tenant_id=row.id, email=email, source="sendgrid")
