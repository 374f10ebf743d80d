"""Fetching company websites safely: the client's guard (models.netguard) on every connection,
the URL checked again before each redirect hop (which is why redirects are followed by hand, and
why a refusal names the hop), size and time limits, a content-type check, a per-host concurrency
cap and robots.txt."""

from __future__ import annotations

import asyncio
import time
import urllib.robotparser
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

from models.netguard import UrlGuard, UrlRefused, guard_of, guarded_client
from models.settings import Settings

USER_AGENT = "leadflow-enrichment/0.1 (+https://github.com/leadflow)"
ROBOTS_AGENT = "leadflow-enrichment"
MAX_REDIRECTS = 5
HTML_TYPES = ("text/html", "application/xhtml+xml")
ROBOTS_CACHE_SECONDS = 3600.0
ROBOTS_MAX_BYTES = 500_000


class FetchError(Exception):
    """A fetch that did not produce a page. `retryable` tells whether trying later may help
    (timeouts, 5xx, connection errors) or not (404, refused address, not HTML)."""

    def __init__(self, url: str, reason: str, *, kind: str, retryable: bool) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason
        self.kind = kind
        self.retryable = retryable


class AddressRefused(FetchError):
    def __init__(self, url: str, reason: str) -> None:
        super().__init__(url, reason, kind="ssrf", retryable=False)


@dataclass(frozen=True)
class Page:
    url: str
    final_url: str
    status: int
    content_type: str
    charset: str | None
    body: bytes
    truncated: bool


class RobotsCache:
    """robots.txt per origin, fetched through the same guarded fetcher and kept for an hour."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, urllib.robotparser.RobotFileParser]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def allowed(self, fetcher: Fetcher, url: str) -> bool:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        cached = self._entries.get(origin)
        if cached is None or cached[0] < time.monotonic():
            lock = self._locks.setdefault(origin, asyncio.Lock())
            async with lock:
                cached = self._entries.get(origin)
                if cached is None or cached[0] < time.monotonic():
                    parser = await self._load(fetcher, origin)
                    cached = (time.monotonic() + ROBOTS_CACHE_SECONDS, parser)
                    self._entries[origin] = cached
        return cached[1].can_fetch(ROBOTS_AGENT, url)

    @staticmethod
    async def _load(fetcher: Fetcher, origin: str) -> urllib.robotparser.RobotFileParser:
        parser = urllib.robotparser.RobotFileParser()
        try:
            page = await fetcher.fetch(
                origin + "/robots.txt",
                accept=("text/plain", "text/"),
                max_bytes=ROBOTS_MAX_BYTES,
                check_robots=False,
                strict_type=False,
            )
        except FetchError as exc:
            if exc.kind == "http" and exc.reason.startswith(("HTTP 401", "HTTP 403")):
                parser.parse(
                    ["User-agent: *", "Disallow: /"]
                )  # convention: an access-denied robots.txt = keep out
            else:
                parser.parse([])  # missing or unreachable robots.txt: no restrictions
            return parser
        parser.parse(page.body.decode(page.charset or "utf-8", errors="replace").splitlines())
        return parser


class Fetcher:
    """One per worker process; shares the process's guarded httpx client."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        timeout: float,
        max_bytes: int,
        per_host_concurrency: int,
    ) -> None:
        guard = guard_of(http)
        if guard is None:
            # Company websites are tenant input: an unguarded client would let them reach
            # loopback and the cloud metadata service.
            raise ValueError("Fetcher needs a client from models.netguard.guarded_client")
        self.http = http
        self.guard: UrlGuard = guard
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.per_host_concurrency = per_host_concurrency
        self._host_slots: dict[str, asyncio.Semaphore] = {}
        self.robots = RobotsCache()

    @classmethod
    def from_settings(cls, http: httpx.AsyncClient, settings: Settings) -> Fetcher:
        """Uses `http` when it is guarded (the worker's client is), else a guarded client of its
        own with the same allowlist: websites are never fetched through an unguarded client."""
        if guard_of(http) is None:
            http = guarded_client(settings.ssrf_allowlist)
        return cls(
            http,
            timeout=settings.fetch_timeout_seconds,
            max_bytes=settings.fetch_max_bytes,
            per_host_concurrency=settings.fetch_per_host_concurrency,
        )

    def _slot(self, host: str) -> asyncio.Semaphore:
        slot = self._host_slots.get(host)
        if slot is None:
            slot = self._host_slots[host] = asyncio.Semaphore(self.per_host_concurrency)
        return slot

    async def fetch(
        self,
        url: str,
        *,
        accept: Sequence[str] = HTML_TYPES,
        max_bytes: int | None = None,
        check_robots: bool = True,
        strict_type: bool = True,
    ) -> Page:
        """GET `url` within the time limit; the whole redirect chain shares that limit."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._fetch(
                    url,
                    accept=accept,
                    max_bytes=max_bytes or self.max_bytes,
                    check_robots=check_robots,
                    strict_type=strict_type,
                )
        except TimeoutError:
            raise FetchError(
                url, f"timed out after {self.timeout:g}s", kind="timeout", retryable=True
            ) from None

    async def _fetch(
        self,
        url: str,
        *,
        accept: Sequence[str],
        max_bytes: int,
        check_robots: bool,
        strict_type: bool,
    ) -> Page:
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            try:
                # Judged without DNS here (scheme, local names, literal addresses); the address
                # a name resolves to is checked by the client when it connects.
                self.guard.check_url(current)
            except UrlRefused as exc:
                raise AddressRefused(current, exc.reason) from exc
            if check_robots and not await self.robots.allowed(self, current):
                raise FetchError(
                    current, "disallowed by robots.txt", kind="robots", retryable=False
                )
            host = urlsplit(current).netloc.lower()
            async with self._slot(host):
                page_or_location = await self._get_once(
                    url, current, accept=accept, max_bytes=max_bytes, strict_type=strict_type
                )
            if isinstance(page_or_location, Page):
                return page_or_location
            current = page_or_location
        raise FetchError(url, f"more than {MAX_REDIRECTS} redirects", kind="http", retryable=False)

    async def _get_once(
        self, original: str, url: str, *, accept: Sequence[str], max_bytes: int, strict_type: bool
    ) -> Page | str:
        headers = {
            "User-Agent": USER_AGENT,
            "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5",
            # Only encodings _decode_content undoes (aiter_raw hands us the wire bytes).
            "Accept-Encoding": "gzip, deflate",
        }
        try:
            async with self.http.stream(
                "GET", url, headers=headers, follow_redirects=False, timeout=self.timeout
            ) as response:
                status = response.status_code
                if status in (301, 302, 303, 307, 308):
                    location = response.headers.get("location")
                    if not location:
                        raise FetchError(
                            url, f"HTTP {status} without Location", kind="http", retryable=False
                        )
                    return str(urljoin(url, str(location)))
                if status >= 400:
                    raise FetchError(
                        url,
                        f"HTTP {status}",
                        kind="http",
                        retryable=status >= 500 or status in (408, 429),
                    )
                content_type = response.headers.get("content-type", "")
                mime = content_type.split(";", 1)[0].strip().lower()
                if strict_type and mime and not mime.startswith(tuple(accept)):
                    raise FetchError(
                        url, f"not an HTML page ({mime})", kind="content-type", retryable=False
                    )
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > max_bytes * 20:
                    raise FetchError(
                        url,
                        f"page is {declared} bytes (limit {max_bytes})",
                        kind="size",
                        retryable=False,
                    )
                chunks: list[bytes] = []
                size = 0
                truncated = False
                # Read at most max_bytes: a huge page costs no more memory than a normal one, and
                # the start of a page is where the facts are.
                async for chunk in response.aiter_raw():
                    chunks.append(chunk)
                    size += len(chunk)
                    if size >= max_bytes:
                        truncated = True
                        break
                raw = b"".join(chunks)[:max_bytes]
                body = _decode_content(raw, response.headers.get("content-encoding", ""), max_bytes)
                return Page(
                    url=original,
                    final_url=str(response.url),
                    status=status,
                    content_type=mime,
                    charset=response.charset_encoding,
                    body=body[:max_bytes],
                    truncated=truncated,
                )
        except UrlRefused as exc:
            raise AddressRefused(url, exc.reason) from exc
        except httpx.TimeoutException as exc:
            raise FetchError(
                url, f"timed out ({type(exc).__name__})", kind="timeout", retryable=True
            ) from exc
        except httpx.HTTPError as exc:
            raise FetchError(
                url, f"connection failed: {exc or type(exc).__name__}", kind="net", retryable=True
            ) from exc


def _decode_content(raw: bytes, encoding: str, max_bytes: int) -> bytes:
    """aiter_raw skips httpx's decompression (so the byte limit counts wire bytes); undo
    gzip/deflate here, tolerating a truncated stream and capping the output (zip bombs)."""
    encoding = encoding.strip().lower()
    try:
        if encoding in ("gzip", "x-gzip"):
            return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(raw, max_bytes)
        if encoding == "deflate":
            try:
                return zlib.decompressobj().decompress(raw, max_bytes)
            except zlib.error:
                return zlib.decompressobj(-zlib.MAX_WBITS).decompress(raw, max_bytes)
    except zlib.error as exc:
        raise FetchError(
            "", f"corrupt {encoding} body: {exc}", kind="http", retryable=False
        ) from exc
    return raw
