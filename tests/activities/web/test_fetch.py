"""The guarded fetcher against the fixture web on loopback."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from activities.web.fetch import AddressRefused, Fetcher, FetchError
from models.netguard import UrlGuard, UrlRefused, guarded_client
from tests.activities.web.conftest import LOOPBACK_ALLOWED
from tests.fakes.web import FakeWeb


def fetcher(
    http: httpx.AsyncClient,
    *,
    timeout: float = 1.0,
    max_bytes: int = 500_000,
    per_host: int = 4,
) -> Fetcher:
    return Fetcher(
        http,
        timeout=timeout,
        max_bytes=max_bytes,
        per_host_concurrency=per_host,
    )


async def test_normal_site(web: FakeWeb, http: httpx.AsyncClient) -> None:
    page = await fetcher(http).fetch(web.site("acme"))
    assert page.status == 200
    assert page.content_type == "text/html"
    assert b"Acme builds reliable software" in page.body
    assert not page.truncated


async def test_slow_site_times_out_within_the_limit(web: FakeWeb, http: httpx.AsyncClient) -> None:
    started = time.monotonic()
    with pytest.raises(FetchError) as caught:
        await fetcher(http, timeout=0.5).fetch(web.site("slow"))
    assert caught.value.kind == "timeout"
    assert caught.value.retryable
    assert "timed out" in caught.value.reason
    assert time.monotonic() - started < 2.0


async def test_404_is_final(web: FakeWeb, http: httpx.AsyncClient) -> None:
    with pytest.raises(FetchError) as caught:
        await fetcher(http).fetch(web.site("missing"))
    assert caught.value.reason == "HTTP 404"
    assert not caught.value.retryable


async def test_500_is_retryable_and_the_retry_succeeds(http: httpx.AsyncClient) -> None:
    with FakeWeb(flaky_failures=1) as web:
        f = fetcher(http)
        with pytest.raises(FetchError) as caught:
            await f.fetch(web.site("flaky-one"))
        assert caught.value.reason == "HTTP 500" and caught.value.retryable
        page = await f.fetch(web.site("flaky-one"))
        assert b"Flaky One" in page.body


async def test_huge_page_is_cut_at_the_size_limit(web: FakeWeb, http: httpx.AsyncClient) -> None:
    page = await fetcher(http, max_bytes=200_000).fetch(web.site("huge"))
    assert page.truncated
    assert 0 < len(page.body) <= 200_000
    assert b"Huge builds reliable software" in page.body


async def test_non_html_is_refused(web: FakeWeb, http: httpx.AsyncClient) -> None:
    with pytest.raises(FetchError) as caught:
        await fetcher(http).fetch(web.site("pdf"))
    assert caught.value.kind == "content-type"
    assert "application/pdf" in caught.value.reason
    assert not caught.value.retryable


@pytest.mark.parametrize(
    ("site", "address"),
    [("redirect-metadata", "169.254.169.254"), ("redirect-private", "10.0.0.1")],
)
async def test_redirect_to_a_private_address_is_refused_before_connecting(
    web: FakeWeb, site: str, address: str
) -> None:
    requested: list[str] = []

    async def record(request: httpx.Request) -> None:
        requested.append(str(request.url))

    http = guarded_client(LOOPBACK_ALLOWED)
    http.event_hooks["request"] = [record]
    async with http:
        with pytest.raises(AddressRefused) as caught:
            await fetcher(http).fetch(web.site(site))
    assert address in caught.value.reason
    assert not caught.value.retryable
    # The redirect was read from the fixture site; the private address was never contacted.
    assert web.site(site) in requested
    assert not [url for url in requested if address in url]


async def test_redirect_to_an_allowed_site_is_followed(
    web: FakeWeb, http: httpx.AsyncClient
) -> None:
    page = await fetcher(http).fetch(web.site("redirect-ok"))
    assert page.final_url == f"{web.base_url}/acme-redirected/"
    assert page.url == web.site("redirect-ok")


async def test_loopback_is_refused_without_the_allowlist(web: FakeWeb) -> None:
    before = web.count("acme")
    async with guarded_client([]) as http:
        with pytest.raises(AddressRefused) as caught:
            await fetcher(http).fetch(web.site("acme"))
    assert "loopback" in caught.value.reason
    assert web.count("acme") == before


async def test_an_unguarded_client_is_not_accepted() -> None:
    async with httpx.AsyncClient() as http:
        with pytest.raises(ValueError, match="guarded_client"):
            fetcher(http)


async def test_names_resolving_to_private_addresses_are_refused() -> None:
    async def resolver(host: str, port: int) -> list[str]:
        return {"intranet.example.com": ["10.1.2.3"], "shop.example.com": ["93.184.215.14"]}[host]

    guard = UrlGuard([], resolver=resolver)
    with pytest.raises(UrlRefused, match="private address"):
        await guard.check("https://intranet.example.com/")
    await guard.check("https://shop.example.com/")
    for url in (
        "http://[::1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://0.0.0.0/",
        "http://100.64.1.1/",
        "http://localhost/",
        "file:///etc/passwd",
    ):
        with pytest.raises(UrlRefused):
            await guard.check(url)
    await UrlGuard(["10.0.0.0/8"], resolver=resolver).check("https://intranet.example.com/")
    await UrlGuard(["intranet.example.com"], resolver=resolver).check(
        "https://intranet.example.com/"
    )


async def test_robots_txt_is_respected_unless_switched_off(
    web: FakeWeb, http: httpx.AsyncClient
) -> None:
    f = fetcher(http)
    with pytest.raises(FetchError) as caught:
        await f.fetch(web.site("blocked"))
    assert caught.value.kind == "robots"
    page = await f.fetch(web.site("blocked"), check_robots=False)
    assert page.status == 200


async def test_at_most_n_requests_per_host_at_once(http: httpx.AsyncClient) -> None:
    with FakeWeb(latency=0.2) as web:
        f = fetcher(http, per_host=2, timeout=5.0)
        await f.fetch(web.site("warmup"))  # robots.txt is fetched once, outside the measurement
        web.max_in_flight = 0
        await asyncio.gather(*(f.fetch(web.site(f"site-{i}")) for i in range(6)))
        assert web.max_in_flight == 2
