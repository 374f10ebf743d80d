"""GoHighLevel (LeadConnector API v2): contact upsert per location, tags, notes, `dnd` as the
opt-out, custom fields by id (../shared/wire/gohighlevel.md).

Every call carries `Authorization: Bearer <token>` (a Private Integration token of the
sub-account, or a location access token) and the required `Version: 2021-07-28` header.
GoHighLevel names no over-limit answer; a 429 is retried after the burst window its
`X-RateLimit-*` headers describe."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, ClassVar

import httpx
from temporalio.exceptions import ApplicationError

from activities.crm.base import (
    DEFAULT_RATE_LIMIT_DELAY,
    RATE_LIMITED,
    VALIDATION_ERROR,
    Connection,
    RemoteRecord,
    UpsertResult,
    as_text,
    body_of,
    error_message,
    rate_limit_delay,
    send,
)
from activities.crm.chatwoot import lead_labels
from models.crm import GOHIGHLEVEL_CUSTOM_FIELD, GOHIGHLEVEL_DND, CrmKind, LeadSnapshot
from models.tags import is_leadflow_tag

API_VERSION = "2021-07-28"  # the only value the v2 contacts spec accepts
CONTACTS = "/contacts"
# A spent daily allowance (200,000 per location) is not worth retrying within the hour.
DAILY_LIMIT_DELAY = timedelta(hours=1)
# A spent burst window shorter than this is waited out in the call; a longer one gives the
# worker slot back: the activity is retried after it (Temporal's next_retry_delay).
MAX_INLINE_WAIT_SECONDS = 2.0


def lead_tags(lead: LeadSnapshot) -> list[str]:
    """Tags leadflow owns on a contact: the same words as its Chatwoot labels."""
    return lead_labels(lead)


def stale_tags(lead: LeadSnapshot, existing: list[str]) -> list[str]:
    """leadflow's tags on the contact that a tagged lead no longer has (a stage or a budget band
    that changed): taken off. A hand-set tag, or any tag of a lead no conversation tagged yet,
    stays."""
    if not lead.tags:
        return []
    ours = set(lead_tags(lead))
    return [t for t in existing if is_leadflow_tag(t) and t not in ours]


def gohighlevel_rate_limit_delay(response: httpx.Response) -> timedelta:
    """How long to wait after a 429: a Retry-After if one came, else the rest of the burst
    window (`X-RateLimit-Interval-Milliseconds` once `X-RateLimit-Remaining` is 0), an hour
    when the daily allowance is spent, else the common default."""
    headers = response.headers
    if headers.get("x-ratelimit-daily-remaining", "").strip() == "0":
        return DAILY_LIMIT_DELAY
    retry_after = rate_limit_delay(response)
    if retry_after is not None:
        return retry_after
    interval = headers.get("x-ratelimit-interval-milliseconds", "").strip()
    if interval.isdigit() and headers.get("x-ratelimit-remaining", "").strip() in ("0", ""):
        return timedelta(milliseconds=int(interval))
    return DEFAULT_RATE_LIMIT_DELAY


def _messages(response: httpx.Response) -> str:
    """422 bodies carry `message` as a list of strings, 400/401 as one string (§4)."""
    body = body_of(response)
    message = body.get("message")
    if isinstance(message, list) and message:
        return "; ".join(str(m) for m in message[:5])
    return error_message(response)


def _contact_of(body: dict[str, Any]) -> dict[str, Any] | None:
    contact = body.get("contact")
    return contact if isinstance(contact, dict) and contact.get("id") else None


def _custom_value(contact: dict[str, Any], field_id: str) -> Any:
    # responses and webhooks give {"id", "value"}; requests use {"id", "field_value"}
    for item in contact.get("customFields") or contact.get("customField") or []:
        if isinstance(item, dict) and item.get("id") == field_id:
            return item.get("value", item.get("field_value"))
    return None


class GoHighLevelAdapter:
    kind: ClassVar[CrmKind] = CrmKind.GOHIGHLEVEL
    # burst limit: 100 requests per 10 s per location; 9/s per connection stays under it
    min_interval_seconds: ClassVar[float] = 0.11

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._http = http
        self._sleep = sleep
        # per connection: no call before this monotonic time (the burst window is spent)
        self._not_before: dict[str, float] = {}

    # ---- plumbing ------------------------------------------------------------------------

    def _headers(self, conn: Connection) -> dict[str, str]:
        token = conn.credentials.get("private_integration_token") or conn.credentials.get(
            "access_token", ""
        )
        return {
            "Authorization": f"Bearer {token}",
            "Version": API_VERSION,
            "Accept": "application/json",
        }

    def _location(self, conn: Connection) -> str:
        return str(conn.credentials.get("location_id", ""))

    async def _call(
        self,
        conn: Connection,
        action: str,
        method: str,
        path: str,
        *,
        allow: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> httpx.Response:
        """`send` with GoHighLevel's own rate-limit headers and its list-shaped 422 message.

        "Sleep X-RateLimit-Interval-Milliseconds when X-RateLimit-Remaining is 0" (§2): an
        answer that spends the burst window holds the connection's next call."""
        await self._respect_window(conn, action)
        response = await send(
            self._http,
            conn,
            action,
            method,
            f"{conn.base_url}{path}",
            allow=(*allow, 422, 429),
            headers=self._headers(conn),
            **kwargs,
        )
        self._note_window(conn, response)
        status = response.status_code
        if status in allow:
            return response
        if status == 429:
            raise ApplicationError(
                f"{conn.label()} {action}: HTTP 429: {error_message(response)}",
                type=RATE_LIMITED,
                next_retry_delay=gohighlevel_rate_limit_delay(response),
            )
        if status == 422:
            raise ApplicationError(
                f"{conn.label()} {action}: HTTP 422: {_messages(response)}",
                type=VALIDATION_ERROR,
                non_retryable=True,
            )
        return response

    async def _respect_window(self, conn: Connection, action: str) -> None:
        wait = self._not_before.get(conn.integration_id, 0.0) - time.monotonic()
        if wait <= 0:
            return
        if wait > MAX_INLINE_WAIT_SECONDS:
            raise ApplicationError(
                f"{conn.label()} {action}: the burst window is spent (X-RateLimit-Remaining 0)",
                type=RATE_LIMITED,
                next_retry_delay=timedelta(seconds=wait),
            )
        await self._sleep(wait)
        self._not_before.pop(conn.integration_id, None)  # waited out

    def _note_window(self, conn: Connection, response: httpx.Response) -> None:
        headers = response.headers
        interval = headers.get("x-ratelimit-interval-milliseconds", "").strip()
        if headers.get("x-ratelimit-remaining", "").strip() == "0" and interval.isdigit():
            self._not_before[conn.integration_id] = time.monotonic() + int(interval) / 1000

    def _body(self, values: dict[str, Any], *, restoring: bool = False) -> dict[str, Any]:
        """The contact fields for {mapped property: value}; None clears (a restore's "was
        empty"): null for a standard field, "" for a custom field."""
        body: dict[str, Any] = {}
        custom: list[dict[str, Any]] = []
        for prop, value in values.items():
            if prop.startswith(GOHIGHLEVEL_CUSTOM_FIELD):
                field_id = prop.removeprefix(GOHIGHLEVEL_CUSTOM_FIELD)
                if isinstance(value, list | int | float) and not isinstance(value, bool):
                    field_value: Any = value
                else:
                    field_value = as_text(value)
                custom.append({"id": field_id, "field_value": field_value})
            elif prop == GOHIGHLEVEL_DND:
                if restoring:
                    body[prop] = value is True or as_text(value) == "true"
                elif value is True:
                    body[prop] = True
            else:
                body[prop] = None if value is None else as_text(value)
        if custom:
            body["customFields"] = custom
        return body

    def _values(self, contact: dict[str, Any], props: list[str]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for prop in props:
            if prop.startswith(GOHIGHLEVEL_CUSTOM_FIELD):
                values[prop] = _custom_value(contact, prop.removeprefix(GOHIGHLEVEL_CUSTOM_FIELD))
            else:
                values[prop] = contact.get(prop)
        return values

    async def _get(self, conn: Connection, contact_id: str) -> dict[str, Any] | None:
        response = await self._call(
            conn, "read contact", "GET", f"{CONTACTS}/{contact_id}", allow=(404,)
        )
        if response.status_code == 404:
            return None
        body = body_of(response)
        return _contact_of(body) or (body if body.get("id") else None)

    async def _find(self, conn: Connection, lead: LeadSnapshot) -> dict[str, Any] | None:
        """The location's contact with the lead's e-mail, else its phone (one query each, so
        the order does not depend on the location's duplicate settings)."""
        for param, value in (("email", lead.email), ("number", lead.phone)):
            if not value:
                continue
            response = await self._call(
                conn,
                f"find contact by {param}",
                "GET",
                f"{CONTACTS}/search/duplicate",
                params={"locationId": self._location(conn), param: value},
            )
            # the spec gives no 200 schema; the answer names the contact under `contact`
            found = _contact_of(body_of(response))
            if found is not None:
                return found
        return None

    async def _tags(self, conn: Connection, contact_id: str, tags: list[str], *, add: bool) -> None:
        if not tags:
            return
        await self._call(
            conn,
            "add tags" if add else "remove tags",
            "POST" if add else "DELETE",
            f"{CONTACTS}/{contact_id}/tags",
            json={"tags": tags},
        )

    # ---- the adapter protocol ------------------------------------------------------------

    async def read(
        self, conn: Connection, lead: LeadSnapshot, remote_id: str | None
    ) -> RemoteRecord | None:
        contact = await self._get(conn, remote_id) if remote_id else None
        if contact is None:
            contact = await self._find(conn, lead)
        if contact is None:
            return None
        props = sorted(set(conn.mapping.values()))
        tags = [str(t) for t in contact.get("tags") or []]
        return RemoteRecord(
            remote_id=str(contact["id"]),
            values=self._values(contact, props),
            extra={"tags": tags},
        )

    async def upsert(
        self, conn: Connection, lead: LeadSnapshot, remote_id: str | None, values: dict[str, Any]
    ) -> UpsertResult:
        body = self._body(values)
        contact: dict[str, Any] | None = None
        created = False
        if remote_id:
            response = await self._call(
                conn, "update contact", "PUT", f"{CONTACTS}/{remote_id}", json=body, allow=(404,)
            )
            if response.status_code != 404:
                contact = _contact_of(body_of(response)) or {"id": remote_id}
        if contact is None:
            # Upsert matches by the location's duplicate settings (e-mail / phone), so a retried
            # create finds the contact the first attempt made. Tags are not sent here: the
            # upsert's `tags` REPLACES the contact's tags (§3); they are added below.
            payload = {"locationId": self._location(conn), **body}
            response = await self._call(
                conn, "upsert contact", "POST", f"{CONTACTS}/upsert", json=payload
            )
            answer = body_of(response)
            contact = _contact_of(answer)
            if contact is None:
                raise ApplicationError(
                    f"{conn.label()} upsert contact: no contact id in the answer",
                    type=VALIDATION_ERROR,
                    non_retryable=True,
                )
            created = answer.get("new") is True
        contact_id = str(contact["id"])
        existing = [str(t) for t in contact.get("tags") or []]
        added = [t for t in lead_tags(lead) if t not in existing]
        await self._tags(conn, contact_id, stale_tags(lead, existing), add=False)
        await self._tags(conn, contact_id, added, add=True)
        return UpsertResult(contact_id, created=created, written=values, extra={"tags": added})

    async def restore(
        self,
        conn: Connection,
        lead: LeadSnapshot,
        remote_id: str,
        previous: dict[str, Any],
        previous_extra: dict[str, Any],
    ) -> None:
        if previous:
            await self._call(
                conn,
                "restore contact",
                "PUT",
                f"{CONTACTS}/{remote_id}",
                json=self._body(previous, restoring=True),
            )
        # take back only leadflow's tags the contact did not carry before the sync, and put
        # back the ones it took off as stale
        before = [str(t) for t in previous_extra.get("tags") or []]
        await self._tags(
            conn, remote_id, [t for t in lead_tags(lead) if t not in before], add=False
        )
        await self._tags(conn, remote_id, stale_tags(lead, before), add=True)

    async def delete(
        self,
        conn: Connection,
        lead: LeadSnapshot,
        remote_id: str | None,
        created_extra: dict[str, Any],
    ) -> bool:
        if remote_id is None:
            found = await self._find(conn, lead)
            if found is None:
                return False
            remote_id = str(found["id"])
        response = await self._call(
            conn, "delete contact", "DELETE", f"{CONTACTS}/{remote_id}", allow=(404,)
        )
        return response.status_code != 404

    async def add_note(
        self, conn: Connection, lead: LeadSnapshot, remote_id: str, text: str
    ) -> str | None:
        response = await self._call(
            conn, "add note", "POST", f"{CONTACTS}/{remote_id}/notes", json={"body": text}
        )
        note = body_of(response).get("note")
        return str(note["id"]) if isinstance(note, dict) and note.get("id") else None

    async def test_connection(self, conn: Connection) -> str:
        location = self._location(conn)
        response = await self._call(
            conn,
            "test connection",
            "GET",
            f"/locations/{location}/customFields",
            params={"model": "contact"},
        )
        fields = body_of(response).get("customFields")
        count = len(fields) if isinstance(fields, list) else 0
        return (
            f"GoHighLevel location {location} reachable at {conn.base_url} "
            f"({count} contact custom fields)"
        )
