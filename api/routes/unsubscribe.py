"""The unsubscribe link of campaign e-mail (models/unsubscribe.py makes it; activities/channels/
smtp.py puts it in `List-Unsubscribe`).

- `POST /unsubscribe/{token}` with the form body `List-Unsubscribe=One-Click` (RFC 8058: what a
  mailbox provider sends when the recipient presses its unsubscribe button, and what the page
  below submits) makes the recipient's lead do-not-contact through
  `models.lead_service.set_do_not_contact`, with no further question: the reason is in the
  transcripts of its conversations, the CRMs are asked to sync the lead, its running
  conversations are closed. Idempotent: again is 200 and changes nothing (the CRM sync is
  asked for again, so a request whose first try could not reach Temporal still gets there;
  the sync of an unchanged lead writes nothing new).
- `GET /unsubscribe/{token}` changes nothing (link scanners and previews open every link of a
  mail): a small page that asks, with a button that sends the POST above.

The token is the credential: no API key, no cookie (a provider's POST carries none). A token
that is not one of this deployment's (malformed, changed, made up, or made with a key that is
no longer listed) is 404 and nothing is read or changed; so is one whose recipient leadflow no
longer holds (erased since). These routes are outside /api/v1/ and /webhooks/: the audit log
(API keys' actions) and the per-key and per-tenant rate limits do not apply; a bad token costs
one AES-SIV check and no database access, and a good one repeated changes nothing."""

from __future__ import annotations

import html
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.service import RPCError

from api.conversations_gateway import signal_conversation
from api.deps import AppState, Session, State
from api.errors import ApiError
from models import lead_service
from models.common import Channel
from models.conversation import SIGNAL_CLOSE, CloseRequest, lead_id_for
from models.crm import request_crm_sync
from models.identity import ContactIdError, normalise_contact
from models.repo import leads as lead_repo
from models.tables import Lead
from models.unsubscribe import Unsubscribe, UnsubscribeTokenError, read_token
from workers.client import TemporalUnavailable

router = APIRouter(prefix="/unsubscribe", tags=["unsubscribe"])

BY = "the recipient (List-Unsubscribe)"
"""Who set the do-not-contact, as the transcripts and the CRM sync's reason say."""

# The page only posts its form to itself; nothing inline, nothing third-party, no referrer
# (the link is the credential), never cached or indexed.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex",
}

_NOT_OURS = (
    "this unsubscribe link is not valid (changed, incomplete, or expired by a key rotation); "
    "use the link of a recent e-mail"
)
_UNKNOWN = "nothing is held about this recipient any more: no e-mail will be sent to them"

HTML_200: dict[str, Any] = {"content": {"text/html": {"schema": {"type": "string"}}}}
# Errors are the API's JSON error shape (`api.responses.document_api` documents it for each);
# no `model=` here, which would document them as the route's text/html.
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {
        "description": "Not a link of this deployment (malformed, changed, made up, or of a "
        "dropped key), or a recipient leadflow no longer holds: nothing was read or changed."
    }
}


def reason_of(who: Unsubscribe) -> str:
    if who.campaign_id:
        return f"unsubscribed via List-Unsubscribe (campaign {who.campaign_id})"
    return "unsubscribed via List-Unsubscribe"


def _who(state: AppState, token: str) -> Unsubscribe:
    try:
        return read_token(state.settings.secret_key.get_secret_value(), token)
    except UnsubscribeTokenError as exc:
        raise ApiError(404, "unknown unsubscribe link", _NOT_OURS) from exc


async def _lead_of(session: AsyncSession, who: Unsubscribe) -> Lead:
    """The lead the campaign's conversation wrote to (its id derives from the address), else
    the tenant's lead with this e-mail; 404 when there is neither."""
    try:
        contact = normalise_contact(Channel.EMAIL, who.contact)
    except ContactIdError as exc:
        raise ApiError(404, "unknown recipient", _UNKNOWN) from exc
    lead = await lead_repo.get_lead(
        session, tenant_id=who.tenant_id, lead_id=lead_id_for(who.tenant_id, Channel.EMAIL, contact)
    )
    if lead is None:
        lead = await lead_repo.find_lead_by_email(session, tenant_id=who.tenant_id, email=contact)
    if lead is None:
        raise ApiError(404, "unknown recipient", _UNKNOWN)
    return lead


def _masked(address: str) -> str:
    """`a…@example.com`: enough for the recipient to recognise, little for anyone else."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}…@{domain}"


def _page(title: str, body: str) -> HTMLResponse:
    document = (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n</head>\n<body>\n<main>\n"
        f"<h1>{html.escape(title)}</h1>\n{body}\n</main>\n</body>\n</html>\n"
    )
    return HTMLResponse(document, headers=PAGE_HEADERS)


def _done_page(who: Unsubscribe) -> HTMLResponse:
    address = html.escape(_masked(who.contact))
    return _page(
        "You are unsubscribed",
        f"<p>No more e-mails will be sent to <strong>{address}</strong>.</p>",
    )


@router.get(
    "/{token}",
    response_class=HTMLResponse,
    responses={200: {"description": "The confirmation page.", **HTML_200}, **NOT_FOUND},
)
async def unsubscribe_page(token: str, state: State, session: Session) -> HTMLResponse:
    """A page asking whether to unsubscribe, with a button that does (the POST). Opening the
    link changes nothing: mail scanners open every link."""
    who = _who(state, token)
    lead = await _lead_of(session, who)
    if lead.do_not_contact:
        return _done_page(who)
    address = html.escape(_masked(who.contact))
    # No action attribute: the form posts to this very URL, token included.
    form = (
        f"<p>Stop all e-mails to <strong>{address}</strong>?</p>\n"
        '<form method="post">\n'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">\n'
        '<button type="submit">Unsubscribe</button>\n'
        "</form>"
    )
    return _page("Unsubscribe", form)


@router.post(
    "/{token}",
    response_class=HTMLResponse,
    responses={
        200: {"description": "Unsubscribed (also when it already was).", **HTML_200},
        **NOT_FOUND,
        503: {
            "description": "The unsubscribe is recorded, but Temporal is unavailable to tell the "
            "CRMs and close conversations: send the same request again."
        },
    },
)
async def unsubscribe(
    token: str,
    one_click: Annotated[
        Literal["One-Click"],
        Form(
            alias="List-Unsubscribe",
            description="RFC 8058 one-click: the body is `List-Unsubscribe=One-Click`.",
        ),
    ],
    state: State,
    session: Session,
) -> HTMLResponse:
    """One-click unsubscribe (RFC 8058): the recipient's lead becomes do-not-contact, synced to
    the CRMs, its running conversations closed. No key: the token in the path says who."""
    who = _who(state, token)
    lead = await _lead_of(session, who)
    reason = reason_of(who)
    change = await lead_service.set_do_not_contact(
        session,
        tenant_id=who.tenant_id,
        lead_id=lead.id,
        do_not_contact=True,
        by=BY,
        reason=reason,
    )
    if change is None:  # erased between the read and the write
        raise ApiError(404, "unknown recipient", _UNKNOWN)
    # The database says do-not-contact now: nothing more is sent to this address whatever
    # happens below. Temporal is asked only after, so it being down never loses the unsubscribe.
    conversations = await lead_repo.conversations_of_lead(
        session, tenant_id=who.tenant_id, lead_id=lead.id
    )
    try:
        temporal = await state.temporal_client()
        await request_crm_sync(
            temporal,
            tenant_id=who.tenant_id,
            lead_id=lead.id,
            reason=f"do-not-contact set by {BY}: {reason}",
            version=change.lead.version,
        )
        # Closing twice is a no-op; a conversation that is not running is nothing to do.
        for conversation in conversations:
            await signal_conversation(
                temporal,
                conversation.id,
                SIGNAL_CLOSE,
                CloseRequest(reason="do not contact (unsubscribed)"),
            )
    except (TemporalUnavailable, RPCError) as exc:
        raise ApiError(
            503,
            "Temporal is unavailable",
            "the unsubscribe is recorded (no more e-mails); send the same request again so "
            f"the CRMs are told: {exc}",
        ) from exc
    return _done_page(who)
