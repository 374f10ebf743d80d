"""The one guard for URLs a tenant supplies (company websites, CRM and channel base URLs,
knowledge sources), and the HTTP client that enforces it on every connection.

Why a network backend and not a check before the request: a check that resolves the name and
then lets httpx resolve it again can be answered differently the second time (DNS rebinding: a
public address for the check, 127.0.0.1 for the connection). `GuardedBackend` sits where httpcore
opens the TCP connection: it resolves the name once, refuses the forbidden addresses and connects
to the address it checked. httpcore still hands the original name to TLS (`server_hostname`), so
certificates are verified against the name, not the address, and no URL or Host header rewriting
is needed. Every new connection passes through it, so each redirect hop to another host is
checked too; a kept-alive connection is reused only for the origin it was checked for.

The client also keeps no cookies (`NoCookieJar`): one worker client serves every tenant, and a
cookie one tenant's endpoint sets must never ride along on another tenant's request.

`models.netguard_httpx2` is the same client for httpx2 (the OpenAI SDK's HTTP library, for a
tenant's own LLM endpoint): both backends connect through `connect_checked`."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from http.cookiejar import Cookie, CookieJar, DefaultCookiePolicy
from typing import Any, TypeVar
from urllib.parse import urlsplit
from urllib.request import Request

import httpcore
import httpx

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Stream = TypeVar("Stream")

ALLOWED_SCHEMES = ("http", "https")
LOCAL_NAME_SUFFIXES = (".localhost", ".internal", ".local", ".localdomain", ".home.arpa")

# Labelled first so a refusal says what the address is; anything else that is not globally
# routable (documentation, benchmarking, 6to4 relays, ...) is refused as "reserved" after them.
_METADATA = (
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack
    ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UrlRefused(Exception):
    """A tenant-supplied URL or address leadflow will not connect to. Deliberately not an
    `httpx.TransportError`: callers treat those as transient and retry, a refusal is final."""

    def __init__(self, target: str, reason: str) -> None:
        super().__init__(f"{target}: {reason}")
        self.target = target
        self.reason = reason


async def system_resolve(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    # getaddrinfo's order is the system's preference (RFC 6724): keep it, drop duplicates.
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries (mapped, NAT64, 6to4): judged as that address."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    return None


def forbidden_reason(ip: IpAddress) -> str | None:
    """Why connecting to `ip` is refused (None: a public address)."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            inner = forbidden_reason(embedded)
            return f"{inner} (IPv4 {embedded} inside IPv6)" if inner else None
    if ip in _METADATA:
        return "cloud metadata"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return "carrier-grade NAT"
    if ip.is_multicast:
        return "multicast"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:  # also documentation and benchmarking ranges (Python's list)
        return "private"
    if not ip.is_global:
        return "reserved"
    return None


def _parse_ip(text: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


class UrlGuard:
    """Refuses schemes other than http(s), local names, and hosts that are or resolve to a
    forbidden address (`forbidden_reason`), unless the host name or the address is in the
    operator's allowlist (`LEADFLOW_SSRF_ALLOWLIST`: host names and CIDRs)."""

    def __init__(self, allowlist: Iterable[str] = (), *, resolver: Resolver = system_resolve):
        self.allowed_hosts: set[str] = set()
        self.allowed_networks: list[IpNetwork] = []
        for entry in allowlist:
            entry = entry.strip().lower().strip("[]")
            if not entry:
                continue
            try:
                self.allowed_networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.allowed_hosts.add(entry.rstrip("."))
        self.resolver = resolver

    def _allowed_ip(self, ip: IpAddress) -> bool:
        return any(ip in net for net in self.allowed_networks if net.version == ip.version)

    def _refuse_ip(self, target: str, host: str, ip: IpAddress) -> None:
        reason = forbidden_reason(ip)
        if reason and not self._allowed_ip(ip):
            said = "is" if _parse_ip(host) == ip else "resolves to"
            raise UrlRefused(target, f"refused: {host} {said} a {reason} address ({ip})")

    def check_url(self, url: str) -> str:
        """What can be judged without DNS: scheme, host, local names, literal addresses.
        Returns the host (lower case, no trailing dot)."""
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        if scheme not in ALLOWED_SCHEMES:
            shown = f"{scheme}:" if scheme else "no scheme"
            raise UrlRefused(url, f"refused: {shown} is not supported (only http and https)")
        try:
            host = (parts.hostname or "").lower().rstrip(".")
        except ValueError as exc:
            raise UrlRefused(url, f"refused: malformed host ({exc})") from exc
        if not host:
            raise UrlRefused(url, "refused: the URL has no host")
        self.check_host(url, host)
        return host

    def check_host(self, target: str, host: str) -> IpAddress | None:
        """Refuses a local name or a forbidden literal address; returns the literal, if any."""
        host = host.lower().rstrip(".")
        if host in self.allowed_hosts:
            return _parse_ip(host)
        literal = _parse_ip(host)
        if literal is not None:
            self._refuse_ip(target, host, literal)
            return literal
        if host == "localhost" or host.endswith(LOCAL_NAME_SUFFIXES):
            raise UrlRefused(target, f"refused: {host} is a local name")
        return None

    async def resolve(self, host: str, port: int) -> list[IpAddress]:
        """Resolve once and check every answer: the addresses returned are the only ones a
        connection may use. A name with any forbidden answer is refused as a whole (an attacker
        controls the order of the answers)."""
        host = host.lower().rstrip(".")
        literal = self.check_host(host, host)
        if literal is not None:
            return [literal]
        try:
            answers = await self.resolver(host, port)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        addresses = [ip for ip in (_parse_ip(a) for a in answers) if ip is not None]
        if not addresses:
            raise httpcore.ConnectError(f"cannot resolve {host}: no address")
        if host in self.allowed_hosts:
            return addresses
        for ip in addresses:
            self._refuse_ip(host, host, ip)
        return addresses

    async def check(self, url: str) -> list[IpAddress]:
        """The whole check for a URL (API-side checks such as "test connection"): no
        connection is made, so the answer is advisory; connections are guarded by the client."""
        host = self.check_url(url)
        parts = urlsplit(url.strip())
        try:
            port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        except ValueError as exc:
            raise UrlRefused(url, f"refused: bad port ({exc})") from exc
        try:
            return await self.resolve(host, port)
        except UrlRefused as exc:
            raise UrlRefused(url, exc.reason) from exc


async def connect_checked(
    guard: UrlGuard,
    host: str,
    port: int,
    timeout: float | None,  # noqa: ASYNC109 (the network backends' interface)
    connect: Callable[[str], Awaitable[Stream]],
    *,
    connect_error: type[Exception] = httpcore.ConnectError,
    connect_timeout: type[Exception] = httpcore.ConnectTimeout,
) -> Stream:
    """The one connection rule of every guarded backend (httpcore's here, httpcore2's in
    `models.netguard_httpx2`): resolve once through the guard, then `connect` to the checked
    addresses in order. `connect_error`/`connect_timeout` are the calling library's own
    exception classes, so its client maps them to its transport errors (retryable), while a
    `UrlRefused` passes through untouched (final)."""
    try:
        async with asyncio.timeout(timeout):
            addresses = await guard.resolve(host, port)
    except TimeoutError as exc:
        raise connect_timeout(f"resolving {host} timed out") from exc
    except httpcore.ConnectError as exc:  # the guard's "cannot resolve"
        if connect_error is httpcore.ConnectError:
            raise
        raise connect_error(str(exc)) from exc
    last: Exception | None = None
    for ip in addresses:
        try:
            return await connect(str(ip))
        except (connect_error, connect_timeout) as exc:
            last = exc
    assert last is not None
    raise last


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's TCP connector with `UrlGuard.resolve` in front: connects to a checked address."""

    def __init__(self, guard: UrlGuard, inner: httpcore.AsyncNetworkBackend | None = None):
        self.guard = guard
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        def connect(ip: str) -> Awaitable[httpcore.AsyncNetworkStream]:
            return self.inner.connect_tcp(
                ip,
                port,
                timeout=timeout,
                local_address=local_address,
                socket_options=socket_options,
            )

        return await connect_checked(self.guard, host, port, timeout, connect)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise UrlRefused(path, "refused: unix sockets are not reachable through leadflow")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class _RefuseCookies(DefaultCookiePolicy):
    def set_ok(self, cookie: Cookie, request: Request) -> bool:
        return False

    def return_ok(self, cookie: Cookie, request: Request) -> bool:
        return False


class NoCookieJar(CookieJar):
    """A jar that never stores: httpx's per-client cookie persistence switched off."""

    def __init__(self) -> None:
        super().__init__(policy=_RefuseCookies())

    def set_cookie(self, cookie: Cookie) -> None:
        return None  # also `client.cookies.set(...)`: nothing may outlive one request


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with the connection pool built on `GuardedBackend`. httpx 0.28 takes
    no network backend, so the pool it built (still unused) is replaced by an equal one."""

    def __init__(
        self,
        guard: UrlGuard,
        *,
        limits: httpx.Limits,
        verify: ssl.SSLContext | bool = True,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        super().__init__(verify=verify, limits=limits, trust_env=False)
        self.guard = guard
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=GuardedBackend(guard, inner),
        )


_GUARDS: weakref.WeakKeyDictionary[httpx.AsyncClient, UrlGuard] = weakref.WeakKeyDictionary()


def guarded_client(
    allowlist: Iterable[str] = (),
    *,
    resolver: Resolver = system_resolve,
    timeout: httpx.Timeout | float = httpx.Timeout(30.0, connect=10.0),
    limits: httpx.Limits = httpx.Limits(max_connections=200, max_keepalive_connections=50),
    verify: ssl.SSLContext | bool = True,
    network_backend: httpcore.AsyncNetworkBackend | None = None,
) -> httpx.AsyncClient:
    """The HTTP client for tenant-supplied URLs: every connection guarded, no cookies kept,
    redirects not followed (callers that follow them do it hop by hop).

    `trust_env=False`: an HTTP(S)_PROXY from the environment would resolve names itself,
    out of the guard's sight. `network_backend` is what connects to the checked address
    (tests record it)."""
    guard = UrlGuard(allowlist, resolver=resolver)
    client = httpx.AsyncClient(
        transport=GuardedTransport(guard, limits=limits, verify=verify, inner=network_backend),
        timeout=timeout,
        follow_redirects=False,
        cookies=NoCookieJar(),
        trust_env=False,
    )
    _GUARDS[client] = guard
    return client


def guard_of(client: httpx.AsyncClient) -> UrlGuard | None:
    """The guard a client from `guarded_client` enforces (None: an unguarded client)."""
    return _GUARDS.get(client)
