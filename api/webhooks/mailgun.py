"""`POST /webhooks/mailgun/{tenant}`: mail a Mailgun route forwards (`forward("https://…")`),
form-encoded (multipart when it has attachments), parsed fields or the raw MIME (`body-mime`).

Signed by Mailgun (wire doc inbound_email.md §b): `signature` = hex HMAC-SHA256 of
`timestamp + token` under the domain's HTTP webhook signing key
(`inbound_email.mailgun_signing_key`), all three flat form fields. A timestamp more than five
minutes from now is refused, and so is a token already used (a captured post replayed).

Mailgun's answers: 200 done; 406 rejected, never retried (a payload that is not Mailgun's mail
gets 406: retrying cannot mend it); anything else is retried for 8 hours (401 included, so a
signing key fixed within that time loses nothing)."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr

from api.deps import State
from api.errors import ApiError
from api.responses import errors
from api.webhooks.common import (
    MAX_SIGNATURE_AGE_SECONDS,
    UNSIGNED_REFUSED,
    WEBHOOK_RESPONSES,
    read_body,
    tenant_and_settings,
)
from api.webhooks.email import (
    FORM_TYPES,
    deliver_email,
    form_webhook_body,
    parse_or_status,
    read_form,
    require_form_content_type,
)
from api.webhooks.parsers.mailgun import WHAT, parse_mailgun

router = APIRouter(prefix="/webhooks/mailgun", tags=["webhooks"])

REJECTED = 406  # Mailgun: "rejected", not retried

RESPONSES = {
    **WEBHOOK_RESPONSES,
    **errors(
        401,
        406,
        415,
        _401="Missing, invalid or stale signature, or a token already used (Mailgun retries).",
        _415="Not a form (application/x-www-form-urlencoded or multipart/form-data).",
        _406="Not a Mailgun inbound mail (missing fields, unreadable): rejected, Mailgun does "
        "not retry.",
    ),
}


class SeenTokens:
    """Tokens of posts taken (or being taken), kept as long as their timestamp could pass the
    age check: a replayed post is refused, also while its first copy is still being handled.
    Per API process (a replay sent to another replica within the five minutes is let through
    there; the mail's Message-ID still makes its delivery a duplicate)."""

    def __init__(self, ttl: float = 2 * MAX_SIGNATURE_AGE_SECONDS, limit: int = 100_000) -> None:
        self.ttl = ttl
        self.limit = limit
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        while self._seen and (
            len(self._seen) > self.limit or next(iter(self._seen.values())) < now - self.ttl
        ):
            self._seen.popitem(last=False)

    def claim(self, tenant_id: str, token: str, now: float) -> bool:
        """True for a token not seen before (now taken); False for a replay."""
        with self._lock:
            self._expire(now)
            if (tenant_id, token) in self._seen:
                return False
            self._seen[(tenant_id, token)] = now
            return True

    def release(self, tenant_id: str, token: str) -> None:
        """The post was not taken (a 5xx, a refusal): Mailgun's retry may use the token."""
        with self._lock:
            self._seen.pop((tenant_id, token), None)


SEEN_TOKENS = SeenTokens()


def verify_mailgun(
    key: SecretStr | None,
    fields: Mapping[str, str],
    *,
    tenant_id: str,
    allow_unsigned: bool,
    seen: SeenTokens = SEEN_TOKENS,
    now: Callable[[], float] = time.time,
) -> str | None:
    """Check the signature and claim its token; the token (None unsigned), to release if the
    post is not taken after all."""
    if key is None or not key.get_secret_value():
        if not allow_unsigned:
            raise ApiError(
                401, UNSIGNED_REFUSED, "this tenant has no inbound_email.mailgun_signing_key"
            )
        return None
    timestamp, token, signature = (
        fields.get(n, "").strip() for n in ("timestamp", "token", "signature")
    )
    if not (timestamp and token and signature):
        raise ApiError(
            401, "missing signature", "the timestamp, token and signature fields are required"
        )
    try:
        sent = int(timestamp)
    except ValueError:
        raise ApiError(
            401, "invalid signature timestamp", "timestamp must be unix seconds"
        ) from None
    if abs(now() - sent) > MAX_SIGNATURE_AGE_SECONDS:
        raise ApiError(
            401, "stale signature", f"timestamp is more than {MAX_SIGNATURE_AGE_SECONDS} s from now"
        )
    expected = hmac.new(
        key.get_secret_value().encode(), f"{timestamp}{token}".encode(), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.lower().encode("utf-8", "replace")):
        raise ApiError(401, "invalid signature", "signature does not match timestamp and token")
    if not seen.claim(tenant_id, token, now()):
        raise ApiError(401, "replayed signature", "this token was already used")
    return token


@router.post(
    "/{tenant}",
    responses=RESPONSES,
    openapi_extra=form_webhook_body(
        "A Mailgun route's forward(): parsed fields or body-mime (docs/webhooks.md).",
        media_types=FORM_TYPES,
    ),
)
async def mailgun_webhook(tenant: str, request: Request, state: State) -> JSONResponse:
    require_form_content_type(request)
    body = await read_body(request, state.settings.max_webhook_bytes)
    row, settings = await tenant_and_settings(state, tenant)
    fields = await read_form(request, body, what=WHAT, status=REJECTED)
    inbound = settings.inbound_email
    token = verify_mailgun(
        inbound.mailgun_signing_key if inbound else None,
        fields,
        tenant_id=row.id,
        allow_unsigned=settings.allow_unsigned_webhooks,
    )
    try:
        email = parse_or_status(lambda: parse_mailgun(fields), REJECTED)
        return await deliver_email(state, tenant_id=row.id, email=email, source="mailgun")
    except BaseException:
        if token is not None:  # not taken: Mailgun's retry of this post must get through
            SEEN_TOKENS.release(row.id, token)
        raise
