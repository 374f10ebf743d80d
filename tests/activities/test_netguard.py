"""The guard on tenant-supplied URLs, through the client that enforces it, against real HTTP on
loopback: DNS rebinding, every refused range, the allowlist, redirects, CRM and channel calls."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore
import httpx
import pytest
from temporalio.exceptions import ApplicationError

from activities.channels.base import CHANNEL_NOT_CONFIGURED, get_json, post_json
from activities.channels.meta import graph_post
from activities.crm.base import URL_REFUSED, Connection, send
from activities.web.fetch import AddressRefused, Fetcher
from models.crm import CrmConnectionView, CrmKind
from models.netguard import UrlGuard, UrlRefused, forbidden_reason, guarded_client
from tests.fakes.web import FakeWeb

PUBLIC = "93.184.215.14"


@pytest.fixture(scope="module")
def web() -> Iterator[FakeWeb]:
    with FakeWeb() as fake:
        yield fake


class RecordingBackend(httpcore.AsyncNetworkBackend):
    """Connects for real to loopback only (where the fakes listen) and records every address
    it was asked to connect to; any other address is unreachable in tests."""

    def __init__(self) -> None:
        self.inner = httpcore.AnyIOBackend()
        self.connected_to: list[str] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connected_to.append(host)
        if not ipaddress.ip_address(host).is_loopback:
            raise httpcore.ConnectError(f"{host} is unreachable in tests")
        return await self.inner.connect_tcp(host, port, timeout=timeout)

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class RebindingResolver:
    """The attacker's DNS: a public address for the first question, loopback afterwards."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls += 1
        return [PUBLIC] if self.calls == 1 else ["127.0.0.1"]


async def test_dns_rebinding_never_reaches_loopback(web: FakeWeb) -> None:
    resolver = RebindingResolver()
    backend = RecordingBackend()
    url = web.site("acme").replace("127.0.0.1", "rebind.attacker.example")
    before = web.count("acme")
    async with guarded_client([], resolver=resolver, network_backend=backend) as http:
        # The check an API answer makes (and the old scraper made before connecting) uses up
        # the public answer...
        assert [str(ip) for ip in await UrlGuard([], resolver=resolver).check(url)] == [PUBLIC]
        # ...so the connection's own resolution gets loopback: refused, nothing connected.
        with pytest.raises(UrlRefused, match=r"loopback address \(127\.0\.0\.1\)"):
            await http.get(url)
        assert backend.connected_to == []
    assert resolver.calls == 2
    assert web.count("acme") == before


async def test_the_fetcher_connects_to_the_address_it_checked(web: FakeWeb) -> None:
    resolver = RebindingResolver()
    backend = RecordingBackend()
    url = web.site("acme").replace("127.0.0.1", "rebind.attacker.example")
    before = web.count("acme")
    async with guarded_client([], resolver=resolver, network_backend=backend) as http:
        fetcher = Fetcher(http, timeout=2, max_bytes=100_000, per_host_concurrency=2)
        # One resolution per connection, and the connection goes to its answer: the public
        # address (unreachable here), never a second lookup that could say loopback.
        with pytest.raises(Exception) as first:
            await fetcher.fetch(url, check_robots=False)
        assert "unreachable in tests" in str(first.value)
        assert backend.connected_to == [PUBLIC]
        assert resolver.calls == 1
        # The next connection asks again and is told loopback: refused before connecting.
        with pytest.raises(AddressRefused, match="loopback") as second:
            await fetcher.fetch(url, check_robots=False)
        assert not second.value.retryable
        assert backend.connected_to == [PUBLIC]
    assert web.count("acme") == before


@pytest.mark.parametrize(
    ("address", "label"),
    [
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.10", "private"),
        ("fc00::1", "private"),
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.127.255.254", "carrier-grade NAT"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.1", "private"),  # documentation range: in Python's list of private ones
        ("::ffff:127.0.0.1", "loopback (IPv4 127.0.0.1 inside IPv6)"),
        ("::ffff:169.254.169.254", "cloud metadata (IPv4 169.254.169.254 inside IPv6)"),
        ("::ffff:10.0.0.1", "private (IPv4 10.0.0.1 inside IPv6)"),
        ("64:ff9b::7f00:1", "loopback (IPv4 127.0.0.1 inside IPv6)"),
        ("2002:a9fe:a9fe::", "cloud metadata (IPv4 169.254.169.254 inside IPv6)"),
    ],
)
async def test_each_forbidden_range_is_refused_as_literal_and_as_a_resolved_name(
    address: str, label: str
) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) == label
    backend = RecordingBackend()

    async def resolver(host: str, port: int) -> list[str]:
        return [address]

    host = f"[{address}]" if ":" in address else address
    async with guarded_client([], resolver=resolver, network_backend=backend) as http:
        with pytest.raises(UrlRefused) as literal:
            await http.get(f"http://{host}:8080/")
        assert f"is a {label} address" in literal.value.reason
        with pytest.raises(UrlRefused) as named:
            await http.get("http://innocent.example.com/")
        assert f"innocent.example.com resolves to a {label} address" in named.value.reason
    assert backend.connected_to == []


async def test_a_name_with_one_forbidden_answer_among_public_ones_is_refused() -> None:
    async def resolver(host: str, port: int) -> list[str]:
        return [PUBLIC, "10.0.0.7"]

    with pytest.raises(UrlRefused, match="private"):
        await UrlGuard([], resolver=resolver).check("https://mixed.example.com/")


async def test_public_addresses_pass() -> None:
    for address in (PUBLIC, "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"):
        assert forbidden_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "file: is not supported"),
        ("gopher://127.0.0.1:6379/_INFO", "gopher: is not supported"),
        ("ftp://files.example.com/x", "ftp: is not supported"),
        ("data:text/html,<h1>hi</h1>", "data: is not supported"),
        ("http://localhost:8080/", "localhost is a local name"),
        ("http://admin.localhost/", "admin.localhost is a local name"),
        ("http://metadata.google.internal/", "metadata.google.internal is a local name"),
        ("http:///nohost", "no host"),
    ],
)
async def test_unsupported_schemes_and_local_names_are_refused_with_a_reason(
    url: str, reason: str
) -> None:
    with pytest.raises(UrlRefused) as caught:
        await UrlGuard([]).check(url)
    assert reason in caught.value.reason


async def test_allowlisted_loopback_works(web: FakeWeb) -> None:
    for allow in (["127.0.0.1"], ["127.0.0.0/8"]):
        async with guarded_client(allow) as http:
            response = await http.get(web.site("acme"))
        assert response.status_code == 200
    async with guarded_client(["localhost"]) as http:
        response = await http.get(web.site("acme").replace("127.0.0.1", "localhost"))
    assert response.status_code == 200


async def test_redirects_are_checked_per_hop_even_when_followed_by_httpx(web: FakeWeb) -> None:
    async with guarded_client(["127.0.0.1"]) as http:
        with pytest.raises(UrlRefused, match=r"private address \(10\.0\.0\.1\)"):
            await http.get(web.site("redirect-private"), follow_redirects=True)
        with pytest.raises(UrlRefused, match="cloud metadata"):
            await http.get(web.site("redirect-metadata"), follow_redirects=True)


def _crm(base_url: str) -> Connection:
    view = CrmConnectionView(
        integration_id="i-1",
        tenant_id="t-1",
        kind=CrmKind.HUBSPOT,
        name="hs",
        base_url=base_url,
    )
    return Connection(view=view, credentials={"access_token": "pat"})


async def test_a_crm_base_url_on_a_private_address_is_refused_for_good(web: FakeWeb) -> None:
    conn = _crm(web.base_url)
    before = web.count("crm")
    async with guarded_client([]) as http:
        with pytest.raises(ApplicationError) as caught:
            await send(http, conn, "read", "GET", f"{conn.base_url}/crm/v3/objects/contacts/1")
    assert caught.value.type == URL_REFUSED
    assert caught.value.non_retryable
    assert "is not reachable from leadflow" in caught.value.message
    assert "loopback address" in caught.value.message
    assert web.count("crm") == before
    # Allowlisted (as the tests' fakes are), the same call reaches the server.
    async with guarded_client(["127.0.0.1"]) as http:
        response = await send(http, conn, "read", "GET", web.site("acme"))
    assert response.status_code == 200


async def test_a_channel_base_url_on_a_private_address_is_refused_for_good(
    web: FakeWeb,
) -> None:
    async with guarded_client([]) as http:
        with pytest.raises(ApplicationError) as posted:
            await post_json(
                http, "waha", f"{web.base_url}/api/sendText", body={"text": "hi"}, headers={}
            )
        with pytest.raises(ApplicationError) as got:
            await get_json(http, "chatwoot", "http://169.254.169.254/api", params={}, headers={})
    assert posted.value.type == CHANNEL_NOT_CONFIGURED and posted.value.non_retryable
    assert "waha:" in posted.value.message and "loopback address" in posted.value.message
    assert got.value.type == CHANNEL_NOT_CONFIGURED and got.value.non_retryable
    assert "cloud metadata" in got.value.message


async def test_a_meta_graph_url_on_a_private_address_is_refused_for_good(web: FakeWeb) -> None:
    async with guarded_client([]) as http:
        with pytest.raises(ApplicationError) as posted:
            await graph_post(
                http, "whatsapp", f"{web.base_url}/v21.0/1/messages", token="t", body={}
            )
    assert posted.value.type == CHANNEL_NOT_CONFIGURED and posted.value.non_retryable
    assert "loopback address" in posted.value.message


async def test_a_plain_client_is_what_the_guard_replaces() -> None:
    # Without the guard nothing stops the request: it fails only because nothing listens.
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get("http://127.0.0.1:1/")
