"""Turn a vendor's failure into a `ModelCallError`: retryable or not, and how long to wait.

Shared by the Anthropic and OpenAI clients. The functions take plain values (status, headers,
body) rather than SDK exceptions, so one rule serves both SDKs; each client only maps its own
exception classes onto them. The rules follow the SDKs' own retry logic (408/409/429/5xx and
`x-should-retry`), except that an exhausted spend limit or quota is never retried: it is a 429,
but the same request fails again until someone pays.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from activities.llm.model_client import ModelCallError
from models.netguard import UrlRefused

MAX_VENDOR_MESSAGE = 300

# 429s that a later attempt cannot fix (Anthropic `error.details.error_code`, OpenAI
# `error.code`/`error.type`).
QUOTA_CODES = frozenset(
    {"enforced_spend_limit_reached", "contract_spend_limit_reached", "insufficient_quota"}
)

_PERMANENT_KINDS = {
    400: "invalid_request",
    401: "auth",
    402: "billing",
    403: "permission",
    404: "not_found",
    413: "too_large",
    422: "invalid_request",
}
_TRANSIENT_KINDS = {408: "timeout", 409: "conflict", 429: "rate_limited", 529: "overloaded"}


def status_error(
    provider: str,
    *,
    status: int,
    headers: Mapping[str, str],
    body: object,
    fallback_message: str = "",
) -> ModelCallError:
    """Classify an HTTP error response. `body` is the parsed JSON (whole body or just its
    `error` object: the OpenAI SDK unwraps it, the Anthropic SDK does not)."""
    error = _error_object(body)
    vendor_type = _str(error.get("type"))
    code = _error_code(error)
    if status in _PERMANENT_KINDS:
        retryable, kind = False, _PERMANENT_KINDS[status]
    elif status in _TRANSIENT_KINDS:
        retryable, kind = True, _TRANSIENT_KINDS[status]
    elif status >= 500:
        retryable, kind = True, "server_error"
    else:
        # Anything else (405, 410, 415, ...) is as permanent as a 400: the SDKs do not retry it.
        retryable, kind = False, "http_error"

    should_retry = _header(headers, "x-should-retry")
    if should_retry == "false":
        retryable = False
    elif should_retry == "true":
        retryable = True

    quota = status == 429 and (code in QUOTA_CODES or vendor_type in QUOTA_CODES)
    if quota:
        # Even an `x-should-retry: true` proxy cannot refill a quota within Temporal's retries.
        retryable, kind = False, "quota"

    label = code if code and code != vendor_type else None
    vendor_message = _str(error.get("message")) or fallback_message
    parts = [provider, str(status)]
    parts += [p for p in (vendor_type, label) if p]
    message = " ".join(parts)
    if vendor_message:
        message += f": {_truncate(vendor_message)}"
    return ModelCallError(
        message,
        provider=provider,
        retryable=retryable,
        status=status,
        retry_after=parse_retry_after(headers) if retryable else None,
        kind=kind,
    )


def timeout_error(provider: str, timeout_seconds: float) -> ModelCallError:
    return ModelCallError(
        f"{provider} timeout: no answer within {timeout_seconds:g} s",
        provider=provider,
        retryable=True,
        kind="timeout",
    )


def connection_error(provider: str, exc: BaseException) -> ModelCallError:
    # The SDK's own message is generic ("Connection error."); the cause says refused/DNS/TLS.
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, UrlRefused):
        return refused_error(provider, cause)
    detail = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
    return ModelCallError(
        f"{provider} connection error: {_truncate(detail)}",
        provider=provider,
        retryable=True,
        kind="connection",
    )


def refused_error(provider: str, exc: UrlRefused) -> ModelCallError:
    """The connection guard refused the endpoint (a tenant's base URL that is or resolves to a
    private, loopback, metadata... address): the same call is refused again, so it is final, and
    the reason names the address so the tenant can fix the URL."""
    return ModelCallError(
        f"{provider} endpoint refused: {_truncate(exc.reason)} (LEADFLOW_SSRF_ALLOWLIST)",
        provider=provider,
        retryable=False,
        kind="url_refused",
    )


def bad_response_error(provider: str, exc: BaseException) -> ModelCallError:
    """A 2xx the SDK could not read (a proxy's HTML page, a truncated body). Usually a glitch
    of that moment, so retryable; Temporal's retry policy bounds the attempts."""
    return ModelCallError(
        f"{provider} unreadable response: {_truncate(str(exc))}",
        provider=provider,
        retryable=True,
        kind="bad_response",
    )


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait: `retry-after-ms` first (more precise), else `retry-after` as seconds or
    an HTTP date. Only positive values count; capping is the agent's business."""
    raw_ms = _header(headers, "retry-after-ms")
    if raw_ms is not None:
        try:
            value = float(raw_ms) / 1000
        except ValueError:
            value = 0.0
        if value > 0:
            return value
    raw = _header(headers, "retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        parsed = email.utils.parsedate_tz(raw)
        if parsed is None:
            return None
        seconds = float(email.utils.mktime_tz(parsed) - time.time())
    return seconds if seconds > 0 else None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # httpx headers are case-insensitive; a plain dict from a test may not be.
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value.strip().lower() if value is not None and name == "x-should-retry" else value


def _error_object(body: object) -> dict[str, Any]:
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict):
            return inner
        return body
    return {}


def _error_code(error: Mapping[str, Any]) -> str | None:
    details = error.get("details")
    if isinstance(details, dict) and isinstance(details.get("error_code"), str):
        return str(details["error_code"])
    return _str(error.get("code"))


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _truncate(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_VENDOR_MESSAGE else text[: MAX_VENDOR_MESSAGE - 1] + "…"


@contextmanager
def classified(provider: str, timeout_seconds: float, sdk: Any) -> Iterator[None]:
    """Turn the vendor SDK's exceptions into `ModelCallError`s. Both SDKs (anthropic, openai)
    are generated from one template and raise the same family of exceptions, so one mapping
    serves both: pass the SDK module."""
    try:
        yield
    except UrlRefused as exc:  # the guarded client's refusal: not an SDK error, never retried
        raise refused_error(provider, exc) from exc
    except sdk.APITimeoutError as exc:
        raise timeout_error(provider, timeout_seconds) from exc
    except sdk.APIConnectionError as exc:
        raise connection_error(provider, exc) from exc
    except sdk.APIStatusError as exc:
        raise status_error(
            provider,
            status=exc.status_code,
            headers=exc.response.headers,
            body=exc.body,
            fallback_message=exc.message,
        ) from exc
    except sdk.APIResponseValidationError as exc:
        raise bad_response_error(provider, exc) from exc
