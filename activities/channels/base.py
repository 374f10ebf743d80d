"""The channel adapter interface and the error vocabulary every adapter speaks.

An adapter makes exactly one attempt per call: Temporal owns retries. Adapters translate what the
provider said into `ApplicationError`s so the retry policy can tell a permanent refusal (bad
credentials, bad recipient) from a transient one (rate limit, outage, network)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, runtime_checkable

import httpx
from temporalio.exceptions import ApplicationError

from models.messages import OutboundMessage
from models.netguard import UrlRefused
from models.tenant import TenantSettings

CHANNEL_REJECTED = "ChannelRejected"
"""The provider refused the message for good (4xx other than 408/429, bad recipient)."""
CHANNEL_NOT_CONFIGURED = "ChannelNotConfigured"
"""The tenant's settings for the channel lack what a send needs (token, phone number id, ...)."""
CHANNEL_UNAVAILABLE = "ChannelUnavailable"
"""Transient: rate limited, 5xx, network error. Temporal retries it."""

MAX_RETRY_AFTER = timedelta(hours=1)
"""A Retry-After longer than this is capped: a lead conversation must not stall for a day."""

_ERROR_BODY_CHARS = 300  # enough to show the provider's reason without flooding histories

SENT_CHECK_MARGIN = timedelta(seconds=60)
"""How far before the outbox claim a "did it go out?" check looks: the provider stamps messages
with its own clock, not the worker's. Wider catches more skew but also more of our own earlier
messages with the same text (those are told apart by their recorded provider ids)."""
SENT_CHECK_TIMEOUT_SECONDS = 10.0
"""A check that hangs must not eat the send's start-to-close timeout: give up and send."""


class ChannelAdapter(Protocol):
    """One outbound channel. `name` is what `SendResult.delivered_via` and the outbox record."""

    name: str

    def configured(self, settings: TenantSettings) -> bool:
        """Whether the tenant set this channel up; when not, the message goes to the outbox."""
        ...

    async def send(self, message: OutboundMessage, settings: TenantSettings) -> str | None:
        """Deliver once; return the provider's message id (None when it gives none)."""
        ...


@runtime_checkable
class SentCheck(Protocol):
    """An adapter whose provider can say whether a message already went out. Only a send that
    finds its outbox row claimed by an earlier attempt asks (the duplicate-send window); a first
    send never does. Channels whose provider cannot tell (Meta, SMTP) simply lack the method."""

    async def already_sent(
        self, message: OutboundMessage, settings: TenantSettings, *, since: datetime
    ) -> list[str]:
        """Provider message ids of outgoing messages to `message.to` (or its thread) with exactly
        `message.text`, sent at or after `since`, oldest first; empty when there are none.
        Raises (as `send` does) when the provider cannot answer: the caller then sends."""
        ...


def not_configured(channel: str, missing: str) -> ApplicationError:
    return ApplicationError(
        f"{channel}: {missing} is not configured for this tenant",
        type=CHANNEL_NOT_CONFIGURED,
        non_retryable=True,
    )


def url_refused(channel: str, url: str, exc: UrlRefused) -> ApplicationError:
    """The tenant's configured URL points where leadflow does not connect (models.netguard):
    a configuration problem, final until the tenant changes it."""
    return ApplicationError(
        f"{channel}: {url.split('?')[0]} is not reachable from leadflow: {exc.reason}",
        type=CHANNEL_NOT_CONFIGURED,
        non_retryable=True,
    )


def rejected(channel: str, detail: str, *, status: int | None = None) -> ApplicationError:
    prefix = f"{channel} rejected the message" + (f" (HTTP {status})" if status else "")
    return ApplicationError(
        f"{prefix}: {detail}", {"status": status}, type=CHANNEL_REJECTED, non_retryable=True
    )


def unavailable(
    channel: str, detail: str, *, status: int | None = None, retry_after: timedelta | None = None
) -> ApplicationError:
    prefix = f"{channel} is unavailable" + (f" (HTTP {status})" if status else "")
    return ApplicationError(
        f"{prefix}: {detail}",
        {"status": status},
        type=CHANNEL_UNAVAILABLE,
        non_retryable=False,
        next_retry_delay=retry_after,
    )


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> timedelta | None:
    """Retry-After is either delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    delay: timedelta | None = None
    try:
        delay = timedelta(seconds=max(0.0, float(value)))
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        delay = max(timedelta(0), when - (now or datetime.now(UTC)))
    return min(delay, MAX_RETRY_AFTER)


def error_detail(response: httpx.Response) -> str:
    text = response.text.strip()
    return text[:_ERROR_BODY_CHARS] if text else response.reason_phrase


def raise_for_status(channel: str, response: httpx.Response) -> None:
    """Map an HTTP answer onto the retry vocabulary; 2xx passes."""
    status = response.status_code
    if status < 400:
        return
    detail = error_detail(response)
    # 408 is the server giving up waiting for us: as transient as a 5xx.
    if status in (408, 429) or status >= 500:
        raise unavailable(
            channel,
            detail,
            status=status,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    raise rejected(channel, detail, status=status)


async def post_json(
    http: httpx.AsyncClient,
    channel: str,
    url: str,
    *,
    body: Mapping[str, Any],
    headers: Mapping[str, str],
) -> httpx.Response:
    """POST once; network failures become retryable errors that name the channel and host."""
    try:
        response = await http.post(url, json=dict(body), headers=dict(headers))
    except UrlRefused as exc:
        raise url_refused(channel, url, exc) from exc
    except httpx.TransportError as exc:
        # The request may or may not have reached the provider; retrying is the lesser evil
        # (a rare duplicate message) compared with silently losing a reply.
        raise unavailable(channel, f"{type(exc).__name__} calling {url}: {exc}") from exc
    raise_for_status(channel, response)
    return response


async def get_json(
    http: httpx.AsyncClient,
    channel: str,
    url: str,
    *,
    params: Mapping[str, str],
    headers: Mapping[str, str],
) -> Any:
    """GET once and return the JSON (None when the 2xx body is not JSON); errors as `post_json`.
    Used by the sent checks, hence their short timeout."""
    try:
        response = await http.get(
            url, params=dict(params), headers=dict(headers), timeout=SENT_CHECK_TIMEOUT_SECONDS
        )
    except UrlRefused as exc:
        raise url_refused(channel, url, exc) from exc
    except httpx.TransportError as exc:
        raise unavailable(channel, f"{type(exc).__name__} calling {url}: {exc}") from exc
    raise_for_status(channel, response)
    return json_body(response)


def json_body(response: httpx.Response) -> Any:
    """The response JSON, or None when the provider answered 2xx with something else."""
    try:
        return response.json()
    except ValueError:
        return None
