"""What a CRM adapter is, and how CRM HTTP answers become Temporal errors.

An adapter is stateless apart from caches (tokens): every call gets the `Connection` it works
on, built by the activities from the database (credentials decrypted only in the worker).
Adapters raise `ApplicationError`s whose type and retryability Temporal acts on:
validation 4xx are non-retryable, 429/5xx are retryable with the vendor's advised delay.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Protocol

import httpx
from temporalio.exceptions import ApplicationError

from models.crm import DEFAULT_FIELD_MAPPINGS, CrmConnectionView, CrmKind, LeadSnapshot
from models.netguard import UrlRefused

# Error types (ApplicationError.type) the workflow and operators see.
VALIDATION_ERROR = "CrmValidationError"
AUTH_ERROR = "CrmAuthFailed"
NOT_FOUND_ERROR = "CrmNotFound"
CONFLICT_ERROR = "CrmConflict"
RATE_LIMITED = "CrmRateLimited"
UNAVAILABLE = "CrmUnavailable"
CIRCUIT_OPEN = "CrmCircuitOpen"
URL_REFUSED = "CrmUrlRefused"  # base_url points where leadflow does not connect (netguard)

NON_RETRYABLE_TYPES = (
    VALIDATION_ERROR,
    AUTH_ERROR,
    NOT_FOUND_ERROR,
    CONFLICT_ERROR,
    URL_REFUSED,
)

# When a 429 carries no hint at all, wait this long rather than Temporal's short backoff.
DEFAULT_RATE_LIMIT_DELAY = timedelta(seconds=10)
HUBSPOT_POLICY_DELAYS = {
    "SECONDLY": timedelta(seconds=1),
    "TEN_SECONDLY_ROLLING": timedelta(seconds=10),
    "DAILY": timedelta(hours=1),
}


@dataclass(frozen=True)
class Connection:
    """A connection with its decrypted credentials: lives only inside an activity call."""

    view: CrmConnectionView
    credentials: Mapping[str, Any] = field(repr=False)

    @property
    def integration_id(self) -> str:
        return self.view.integration_id

    @property
    def base_url(self) -> str:
        return self.view.base_url.rstrip("/")

    @property
    def mapping(self) -> dict[str, str]:
        return dict(self.view.field_mapping or DEFAULT_FIELD_MAPPINGS[self.view.kind])

    def label(self) -> str:
        return f"{self.view.kind.value} {self.view.name!r}"


@dataclass(frozen=True)
class RemoteRecord:
    remote_id: str
    values: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class UpsertResult:
    remote_id: str
    created: bool
    written: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


class CrmAdapter(Protocol):
    """One CRM. `values` are always {CRM property: value} after the tenant's field mapping."""

    kind: ClassVar[CrmKind]
    # Pace calls per connection below the vendor's published burst limit.
    min_interval_seconds: ClassVar[float]

    async def read(
        self, conn: Connection, lead: LeadSnapshot, remote_id: str | None
    ) -> RemoteRecord | None:
        """The record's current values of the mapped properties; None when it does not exist."""
        ...

    async def upsert(
        self, conn: Connection, lead: LeadSnapshot, remote_id: str | None, values: dict[str, Any]
    ) -> UpsertResult:
        """Create or update; must find an existing record itself when `remote_id` is None."""
        ...

    async def restore(
        self,
        conn: Connection,
        lead: LeadSnapshot,
        remote_id: str,
        previous: dict[str, Any],
        previous_extra: dict[str, Any],
    ) -> None:
        """Put the previous values back exactly (None means: was empty)."""
        ...

    async def delete(
        self,
        conn: Connection,
        lead: LeadSnapshot,
        remote_id: str | None,
        created_extra: dict[str, Any],
    ) -> bool:
        """Delete what a sync created; False when there was nothing to delete."""
        ...

    async def add_note(
        self, conn: Connection, lead: LeadSnapshot, remote_id: str, text: str
    ) -> str | None:
        """A note / task / private note on the record; None when the CRM has nowhere to put it."""
        ...

    async def test_connection(self, conn: Connection) -> str:
        """A short description of what was reached; raises on failure."""
        ...


AdapterFactory = Callable[[httpx.AsyncClient], CrmAdapter]


def mapped_values(lead: LeadSnapshot, mapping: Mapping[str, str]) -> dict[str, Any]:
    """{CRM property: value} for the lead; unknown (None) values are left out, never cleared."""
    values: dict[str, Any] = {}
    for source, target in mapping.items():
        value = lead.value_of(source)
        if value is not None:
            values[target] = value
    return values


def as_text(value: Any) -> str:
    """CRMs like HubSpot take every property value as a string."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | tuple):
        return ";".join(as_text(v) for v in value)
    return str(value)


# ---- turning responses into errors ---------------------------------------------------------


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def error_message(response: httpx.Response) -> str:
    """The vendor's own words, from any of the documented error shapes."""
    body = _json(response)
    parts: list[str] = []
    if isinstance(body, dict):
        for key in ("message", "error", "description", "error_description"):
            value = body.get(key)
            if isinstance(value, str) and value:
                parts.append(value)
                break
        details = body.get("errors")
        if isinstance(details, list):
            for item in details[:5]:
                if isinstance(item, dict) and item.get("message"):
                    where = item.get("in") or item.get("field") or ""
                    parts.append(f"{where}: {item['message']}" if where else str(item["message"]))
        attributes = body.get("attributes")
        if isinstance(attributes, list) and attributes:
            parts.append("attributes: " + ", ".join(str(a) for a in attributes))
    elif isinstance(body, list):
        # Salesforce: [{"message", "errorCode", "fields"}]
        for item in body[:5]:
            if isinstance(item, dict):
                code = item.get("errorCode")
                fields = item.get("fields")
                text = str(item.get("message", ""))
                if code:
                    text = f"{code}: {text}"
                if fields:
                    text += f" (fields: {', '.join(map(str, fields))})"
                parts.append(text)
    if not parts:
        parts.append(response.text[:300] or response.reason_phrase)
    return "; ".join(parts)


def _retry_after(response: httpx.Response) -> timedelta | None:
    raw = response.headers.get("retry-after")
    if not raw:
        return None
    raw = raw.strip()
    if raw.isdigit():
        return timedelta(seconds=int(raw))
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(when - datetime.now(UTC), timedelta(0))


_SFORCE_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")


def rate_limit_delay(response: httpx.Response) -> timedelta | None:
    """The delay the vendor asks for, from whichever hint it sent (None when there is none)."""
    retry_after = _retry_after(response)
    if retry_after is not None:
        return retry_after
    body = _json(response)
    if isinstance(body, dict):
        # HubSpot: {"errorType": "RATE_LIMIT", "policyName": "SECONDLY", ...}
        policy = body.get("policyName")
        if isinstance(policy, str) and policy in HUBSPOT_POLICY_DELAYS:
            return HUBSPOT_POLICY_DELAYS[policy]
    headers = response.headers
    interval = headers.get("x-hubspot-ratelimit-interval-milliseconds")
    if interval and interval.isdigit() and headers.get("x-hubspot-ratelimit-remaining") == "0":
        return timedelta(milliseconds=int(interval))
    # Pipedrive: X-RateLimit-Reset = seconds until the window resets
    reset = headers.get("x-ratelimit-reset")
    if reset and reset.strip().isdigit():
        seconds = int(reset.strip())
        # some vendors send an epoch instead of a duration
        if seconds > 10**9:
            seconds = max(0, seconds - int(datetime.now(UTC).timestamp()))
        return timedelta(seconds=seconds)
    # Salesforce: Sforce-Limit-Info: api-usage=5000/5000 -> the daily allowance is spent
    usage = _SFORCE_USAGE.search(headers.get("sforce-limit-info", ""))
    if usage and int(usage.group(1)) >= int(usage.group(2)):
        return timedelta(hours=1)
    return None


def raise_for_response(response: httpx.Response, conn: Connection, action: str) -> None:
    """Raise the typed ApplicationError for a non-2xx answer."""
    status = response.status_code
    if status < 400:
        return
    message = f"{conn.label()} {action}: HTTP {status}: {error_message(response)}"
    body = _json(response)
    is_sf_limit = (
        status == 403
        and isinstance(body, list)
        and any(
            isinstance(i, dict) and i.get("errorCode") == "REQUEST_LIMIT_EXCEEDED" for i in body
        )
    )
    if status == 429 or is_sf_limit:
        raise ApplicationError(
            message,
            type=RATE_LIMITED,
            next_retry_delay=rate_limit_delay(response) or DEFAULT_RATE_LIMIT_DELAY,
        )
    if status >= 500 or status == 408:
        raise ApplicationError(
            message, type=UNAVAILABLE, next_retry_delay=rate_limit_delay(response)
        )
    if status in (401, 403):
        raise ApplicationError(message, type=AUTH_ERROR, non_retryable=True)
    if status == 404:
        raise ApplicationError(message, type=NOT_FOUND_ERROR, non_retryable=True)
    if status == 409:
        raise ApplicationError(message, type=CONFLICT_ERROR, non_retryable=True)
    raise ApplicationError(message, type=VALIDATION_ERROR, non_retryable=True)


async def send(
    http: httpx.AsyncClient,
    conn: Connection,
    action: str,
    method: str,
    url: str,
    *,
    allow: tuple[int, ...] = (),
    **kwargs: Any,
) -> httpx.Response:
    """One HTTP call; transport errors become a retryable error naming the CRM and URL.

    Statuses in `allow` are returned instead of raised (e.g. 404 on a lookup)."""
    try:
        response = await http.request(method, url, **kwargs)
    except UrlRefused as exc:
        raise ApplicationError(
            f"{conn.label()} {action}: {url.split('?')[0]} is not reachable from leadflow: "
            f"{exc.reason}",
            type=URL_REFUSED,
            non_retryable=True,
        ) from exc
    except httpx.TransportError as exc:
        raise ApplicationError(
            f"{conn.label()} {action}: cannot reach {url.split('?')[0]}: {exc!r}",
            type=UNAVAILABLE,
        ) from exc
    if response.status_code in allow:
        return response
    raise_for_response(response, conn, action)
    return response


def body_of(response: httpx.Response) -> dict[str, Any]:
    data = _json(response)
    return data if isinstance(data, dict) else {}
