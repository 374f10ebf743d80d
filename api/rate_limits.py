"""Rate limits: per API key (or signed-in person) on /api/v1/, per tenant on /webhooks/, and per
client address for failed authentications. Over a limit the answer is 429 with `Retry-After`
(whole seconds) in the API's error shape, before the request reaches a route: nothing is read,
stored or started.

The `limits` library counts, with its sliding window counter (two counters per key and window:
O(1) per check, no list of timestamps) in this process's memory. Each API process therefore
counts on its own: with N API processes behind a balancer a key or tenant gets up to N times the
limit (divide the settings by N). A shared storage would need `limits`' async strategies and a
Redis driver, neither of which leadflow ships.

What counts against what:
- A request under /api/v1/ counts against its API key (the key id `api.deps` leaves on
  `request.state`, never the secret), or its signed-in person (the session cookie; the person's
  id), once it authenticated; a request with a missing or invalid key or session (401) counts
  against its client address instead. So a wrong key never spends a real key's budget, and
  guessing keys from one address stops after `rate_limit_auth_failures`. An address
  over that budget is answered 429, except for keys and sessions this process has seen working
  (a client behind the same NAT as a misconfigured one keeps working). The address is the one
  uvicorn reports: behind a reverse proxy on another host, trust it (`FORWARDED_ALLOW_IPS`), else
  every client is the proxy.
- A webhook counts against the tenant in its path when it got past the sender's check: 2xx,
  422 (a signed but malformed body) and 5xx count; 401 (bad signature), 404 (no such tenant) and
  the other refusals do not, so nobody without the tenant's secret can spend its budget.
- Health, readiness, the codec, the web page and the docs are not limited.

The check reads before the request and counts after it (at the response's start): a burst of
requests in flight together may pass a limit by as many as are in flight.

Limits are global settings (`rate_limit_*`), not per tenant: a tenant's settings are in the
database, and the check reads none."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from typing import Any

from fastapi.responses import JSONResponse
from limits import RateLimitItem
from limits.storage import MemoryStorage
from limits.strategies import (
    MovingWindowRateLimiter,
    RateLimiter,
    SlidingWindowCounterRateLimiter,
)
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models.settings import Settings, rate_limit_items

API_PREFIX = "/api/v1/"
WEBHOOK_PREFIX = "/webhooks/"
# Keys and sessions seen working in this process (digest of the presented secret -> whom it
# counts against); cleared when full.
KNOWN_KEYS_MAX = 10_000
SESSION_COOKIE = "leadflow_session"  # api.deps.SESSION_COOKIE (api.deps imports this module)

RATE_LIMITED = "rate limit exceeded"
AUTH_FAILURES = "too many failed authentications"


class LoopMemoryStorage(MemoryStorage):
    """`limits`' memory storage, forgetting windows that passed from the caller's thread (the
    event loop) at most once a second. `limits` starts a new thread 10 ms after a count whenever
    its last one has finished: at 100 webhooks/s that is ~100 thread starts a second, each
    ~0.2 ms of CPU that also stalls the event loop while the thread starts. The sweep here is
    the same code, O(keys), run inline once a second."""

    SWEEP_EVERY_SECONDS = 1.0

    def __init__(self) -> None:
        super().__init__()
        self._next_sweep = 0.0
        # getattr: a name-mangled private of MemoryStorage, which mypy does not resolve
        self._expire: Callable[[], None] = getattr(self, "_MemoryStorage__expire_events")  # noqa: B009

    # What MemoryStorage calls (its private, name-mangled __schedule_expiry) after each count;
    # tests/api/test_rate_limits.py checks that counting starts no thread and old windows go.
    def _MemoryStorage__schedule_expiry(self) -> None:
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self.SWEEP_EVERY_SECONDS
            self._expire()


def _webhook_counts(status: int) -> bool:
    """Whether a webhook answered `status` got past its sender's check (see the module doc)."""
    return not 400 <= status < 500 or status == 422


def _bearer_digest(scope: Scope) -> bytes | None:
    """SHA-256 of the bearer secret, read as `api.deps` reads it; None without one."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            token = token.strip()
            if scheme.lower() != b"bearer" or not token:
                return None
            return hashlib.sha256(token).digest()
    return None


def _credential_digest(scope: Scope) -> bytes | None:
    """SHA-256 of what the request authenticates with, read as `api.deps` reads it: the bearer
    secret, else the session cookie's token (hashed apart from secrets); None without either."""
    bearer = _bearer_digest(scope)
    if bearer is not None:
        return bearer
    for name, value in scope["headers"]:
        if name == b"cookie":
            token = cookie_parser(value.decode("latin-1")).get(SESSION_COOKIE)
            if token:
                return hashlib.sha256(b"session:" + token.encode()).digest()
    return None


def _counted_as(state: dict[str, Any]) -> tuple[str, str] | None:
    """Whom an authenticated request counts against: its key, or its signed-in person."""
    key_id = state.get("api_key_id")
    if isinstance(key_id, int):
        return ("key", str(key_id))
    user_id = getattr(state.get("user"), "id", None)
    if isinstance(user_id, int):
        return ("user", str(user_id))
    return None


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _seconds(delta: float) -> int:
    return max(1, math.ceil(delta))


def _per(item: RateLimitItem, what: str) -> str:
    """`400 webhooks per second`, `10 requests per 2 minutes`."""
    window = item.GRANULARITY.name
    if item.multiples != 1:
        window = f"{item.multiples} {window}s"
    return f"{item.amount} {what} per {window}"


class RateLimits:
    """The limits of one API process and the limiter that counts them."""

    def __init__(self, *, api: str, webhooks: str, auth_failures: str, exact: bool = False) -> None:
        self.api = tuple(rate_limit_items(api))
        self.webhooks = tuple(rate_limit_items(webhooks))
        self.auth_failures = tuple(rate_limit_items(auth_failures))
        # The sliding-window counter is cheap (two counters a key) but approximate: it weighs
        # the previous window, so right after a window's boundary it may take one or two more
        # than the limit. `exact` keeps every hit's time instead (a moving window): for small
        # limits that must hold to the request, such as failed sign-ins per account.
        storage = LoopMemoryStorage()
        self.limiter: RateLimiter = (
            MovingWindowRateLimiter(storage) if exact else SlidingWindowCounterRateLimiter(storage)
        )
        self.known_keys: dict[bytes, tuple[str, str]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimits:
        return cls(
            api=settings.rate_limit_api,
            webhooks=settings.rate_limit_webhooks,
            auth_failures=settings.rate_limit_auth_failures,
        )

    def exhausted(
        self, items: tuple[RateLimitItem, ...], *ids: str
    ) -> tuple[RateLimitItem, int] | None:
        """The limit that refuses one more request, and the seconds until it takes one again
        (the longest wait when several refuse); None when every limit takes it."""
        refused: tuple[RateLimitItem, int] | None = None
        for item in items:
            if not self.limiter.test(item, *ids):
                stats = self.limiter.get_window_stats(item, *ids)
                wait = _seconds(stats.reset_time - time.time())
                if refused is None or wait > refused[1]:
                    refused = (item, wait)
        return refused

    def hit(self, items: tuple[RateLimitItem, ...], *ids: str) -> None:
        for item in items:
            self.limiter.hit(item, *ids)

    def headers(self, items: tuple[RateLimitItem, ...], *ids: str) -> list[tuple[bytes, bytes]]:
        """`RateLimit-Limit/-Remaining/-Reset` (IETF draft, seconds) of the tightest limit."""
        now = time.time()
        tightest = min(
            ((item, self.limiter.get_window_stats(item, *ids)) for item in items),
            key=lambda pair: pair[1].remaining,
        )
        item, stats = tightest
        return [
            (b"ratelimit-limit", str(item.amount).encode()),
            (b"ratelimit-remaining", str(stats.remaining).encode()),
            (b"ratelimit-reset", str(max(0, math.ceil(stats.reset_time - now))).encode()),
        ]


def _too_many(error: str, detail: str, item: RateLimitItem, wait: int) -> JSONResponse:
    # The API's error shape (api/errors.py), built here: this answer comes before any route.
    return JSONResponse(
        status_code=429,
        content={"error": error, "detail": detail},
        headers={
            "Retry-After": str(wait),
            "RateLimit-Limit": str(item.amount),
            "RateLimit-Remaining": "0",
            "RateLimit-Reset": str(wait),
        },
    )


class RateLimitMiddleware:
    """Applies `RateLimits` to /api/v1/ and /webhooks/ requests (pure ASGI: no body is read)."""

    def __init__(self, app: ASGIApp, *, limits: RateLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith(WEBHOOK_PREFIX):
                if self.limits.webhooks:
                    await self._webhook(scope, receive, send, path)
                    return
            elif path.startswith(API_PREFIX):
                await self._api(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _webhook(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        # /webhooks/{provider}/{tenant}: anything else is no route (404), which does not count
        tenant = path[len(WEBHOOK_PREFIX) :].partition("/")[2]
        if not tenant:
            await self.app(scope, receive, send)
            return
        limits = self.limits
        refused = limits.exhausted(limits.webhooks, "webhook", tenant)
        if refused is not None:
            item, wait = refused
            detail = (
                f"more than {_per(item, 'webhooks')} for tenant {tenant!r}: nothing was "
                f"accepted or started; send it again in {wait} s"
            )
            await _too_many(RATE_LIMITED, detail, item, wait)(scope, receive, send)
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start" and _webhook_counts(message["status"]):
                limits.hit(limits.webhooks, "webhook", tenant)
            await send(message)

        await self.app(scope, receive, counting_send)

    async def _api(self, scope: Scope, receive: Receive, send: Send) -> None:
        limits = self.limits
        digest = _credential_digest(scope)
        who = limits.known_keys.get(digest) if digest is not None else None
        client = _client(scope)
        if who is not None:
            refused = limits.exhausted(limits.api, *who)
            if refused is not None:
                item, wait = refused
                by = f"with API key {who[1]}" if who[0] == "key" else "by this signed-in person"
                detail = f"more than {_per(item, 'requests')} {by}; retry in {wait} s"
                await _too_many(RATE_LIMITED, detail, item, wait)(scope, receive, send)
                return
        else:
            refused = limits.exhausted(limits.auth_failures, "auth-failure", client)
            if refused is not None:
                item, wait = refused
                detail = (
                    f"more than {_per(item, 'requests')} with a missing or invalid API key "
                    f"from {client}; retry in {wait} s"
                )
                await _too_many(AUTH_FAILURES, detail, item, wait)(scope, receive, send)
                return
        # Request.state is this dict: the key id or person api.deps leaves there is read at the
        # answer.
        state: dict[str, Any] = scope.setdefault("state", {})

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = self._counted(message, state, digest, client)
            await send(message)

        await self.app(scope, receive, counting_send)

    def _counted(
        self, start: Message, state: dict[str, Any], digest: bytes | None, client: str
    ) -> Message:
        """Counts the answered request; the answer gains the key's (or person's) RateLimit
        headers."""
        limits = self.limits
        if start["status"] == 401:
            limits.hit(limits.auth_failures, "auth-failure", client)
            if digest is not None:
                limits.known_keys.pop(digest, None)  # revoked or signed out since it worked
            return start
        ids = _counted_as(state)
        if ids is None:
            return start  # refused before authentication (a malformed body): nothing to count
        if digest is not None and digest not in limits.known_keys:
            if len(limits.known_keys) >= KNOWN_KEYS_MAX:
                limits.known_keys.clear()
            limits.known_keys[digest] = ids
        if not limits.api:
            return start
        limits.hit(limits.api, *ids)
        return {**start, "headers": [*start.get("headers", ()), *limits.headers(limits.api, *ids)]}
