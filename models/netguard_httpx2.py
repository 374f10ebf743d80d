"""The guarded HTTP client of `models.netguard`, for `httpx2` (the HTTP library of the OpenAI
SDK 3.x, which takes no `httpx` client): used for a tenant's own OpenAI-compatible endpoint.

Same rules, same code: `UrlGuard` judges, `connect_checked` resolves once and connects to the
checked address; only the plug into httpcore2 (its network backend and connection pool) is
httpx2's own. TLS still verifies the name (httpcore2, like httpcore, hands the original host to
`server_hostname`); no cookies, no proxies from the environment, no redirects."""

from __future__ import annotations

import ssl
import weakref
from collections.abc import Awaitable, Iterable
from typing import Any

import httpcore2
import httpx2

from models.netguard import (
    NoCookieJar,
    Resolver,
    UrlGuard,
    UrlRefused,
    connect_checked,
    system_resolve,
)


class GuardedBackend2(httpcore2.AsyncNetworkBackend):
    """httpcore2's TCP connector with the guard in front (see `models.netguard.GuardedBackend`)."""

    def __init__(self, guard: UrlGuard, inner: httpcore2.AsyncNetworkBackend | None = None):
        self.guard = guard
        self.inner = inner or httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore2's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        def connect(ip: str) -> Awaitable[httpcore2.AsyncNetworkStream]:
            return self.inner.connect_tcp(
                ip,
                port,
                timeout=timeout,
                local_address=local_address,
                socket_options=socket_options,
            )

        return await connect_checked(
            self.guard,
            host,
            port,
            timeout,
            connect,
            connect_error=httpcore2.ConnectError,
            connect_timeout=httpcore2.ConnectTimeout,
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore2's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        raise UrlRefused(path, "refused: unix sockets are not reachable through leadflow")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport2(httpx2.AsyncHTTPTransport):
    """httpx2's transport with its pool built on `GuardedBackend2` (httpx2, like httpx 0.28,
    takes no network backend, so the pool it built, still unused, is replaced by an equal one)."""

    def __init__(
        self,
        guard: UrlGuard,
        *,
        limits: httpx2.Limits,
        verify: ssl.SSLContext | bool = True,
        inner: httpcore2.AsyncNetworkBackend | None = None,
    ) -> None:
        super().__init__(verify=verify, limits=limits, trust_env=False)
        self.guard = guard
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=httpx2.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=GuardedBackend2(guard, inner),
        )


_GUARDS: weakref.WeakKeyDictionary[httpx2.AsyncClient, UrlGuard] = weakref.WeakKeyDictionary()


def guarded_client_httpx2(
    allowlist: Iterable[str] = (),
    *,
    resolver: Resolver = system_resolve,
    timeout: httpx2.Timeout | float = httpx2.Timeout(30.0, connect=10.0),
    limits: httpx2.Limits = httpx2.Limits(max_connections=200, max_keepalive_connections=50),
    verify: ssl.SSLContext | bool = True,
    network_backend: httpcore2.AsyncNetworkBackend | None = None,
) -> httpx2.AsyncClient:
    """`models.netguard.guarded_client`, as an httpx2 client (e.g. `openai.AsyncOpenAI(
    http_client=...)`). A refused address raises `UrlRefused`, which is not an httpx2 transport
    error: the SDK does not retry or wrap it, and the caller sees the reason."""
    guard = UrlGuard(allowlist, resolver=resolver)
    client = httpx2.AsyncClient(
        transport=GuardedTransport2(guard, limits=limits, verify=verify, inner=network_backend),
        timeout=timeout,
        follow_redirects=False,
        cookies=NoCookieJar(),
        trust_env=False,
    )
    _GUARDS[client] = guard
    return client


def guard_of_httpx2(client: httpx2.AsyncClient) -> UrlGuard | None:
    """The guard a client from `guarded_client_httpx2` enforces (None: an unguarded client)."""
    return _GUARDS.get(client)
