"""`POST /webhooks/postmark/{tenant}`: Postmark's inbound webhook (JSON).

Postmark signs nothing (wire doc inbound_email.md §b): the webhook URL carries HTTP basic auth,
`https://any:<password>@host/webhooks/postmark/<tenant>`, the password being
`inbound_email.basic_auth_password`. Postmark retries any answer but 200 (10 times, from a
minute apart) except 403, which stops the retries: a payload that is not Postmark's inbound
mail is answered 403 (retrying cannot mend it); a wrong password 401 (retried, so a password
fixed meanwhile loses nothing)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import State
from api.responses import errors
from api.webhooks.body import require_json_content_type
from api.webhooks.common import WEBHOOK_RESPONSES, read_body, tenant_and_settings, webhook_body
from api.webhooks.email import deliver_email, parse_or_status, verify_basic_auth
from api.webhooks.parsers.postmark import parse_postmark

router = APIRouter(prefix="/webhooks/postmark", tags=["webhooks"])

REFUSED = 403  # Postmark: stop retrying

RESPONSES = {
    **WEBHOOK_RESPONSES,
    **errors(
        403,
        _403="Not a Postmark inbound mail (not JSON, missing fields, unreadable): Postmark "
        "stops retrying.",
    ),
}


@router.post(
    "/{tenant}",
    responses=RESPONSES,
    openapi_extra=webhook_body("A Postmark inbound webhook (docs/webhooks.md), HTTP basic auth."),
)
async def postmark_webhook(tenant: str, request: Request, state: State) -> JSONResponse:
    require_json_content_type(request)
    body = await read_body(request, state.settings.max_webhook_bytes)
    row, settings = await tenant_and_settings(state, tenant)
    inbound = settings.inbound_email
    verify_basic_auth(
        request,
        inbound.basic_auth_password if inbound else None,
        allow_unsigned=settings.allow_unsigned_webhooks,
        provider="Postmark inbound",
    )
    email = parse_or_status(lambda: parse_postmark(body), REFUSED)
    return await deliver_email(state, tenant_id=row.id, email=email, source="postmark")
