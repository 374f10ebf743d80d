"""Web search behind a small interface; DuckDuckGo's HTML endpoint is the default provider.

The markup parsed here follows ../shared/wire/duckduckgo_html.md: organic hits are
`div.result` cards (ads carry `result--ad` and `duckduckgo.com/y.js` links) whose title link is
`a.result__a`, often a `//duckduckgo.com/l/?uddg=<target>` redirect that we unwrap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
from selectolax.lexbor import LexborHTMLParser

from models.messages import Frozen
from models.settings import Settings

# DuckDuckGo answers a block with these instead of results (duckduckgo_search's _get_url).
RATE_LIMIT_STATUSES = frozenset({202, 301, 400, 403, 418, 429})
SEARCH_TIMEOUT_SECONDS = 10.0


class SearchResult(Frozen):
    title: str
    url: str
    snippet: str = ""


class SearchError(Exception):
    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class SearchProvider(Protocol):
    name: str

    async def search(self, query: str, *, limit: int = 5) -> list[SearchResult]: ...


SearchProviderFactory = Callable[[Settings, httpx.AsyncClient], SearchProvider]
"""Registered by plugins under a name; `LEADFLOW_SEARCH_PROVIDER` picks one."""


def unwrap(href: str) -> str:
    """`//duckduckgo.com/l/?uddg=https%3A%2F%2Facme.com%2F&rut=...` -> `https://acme.com/`."""
    if href.startswith("//"):
        href = "https:" + href
    parts = urlsplit(href)
    if parts.path.startswith("/l/") and "duckduckgo.com" in (parts.hostname or ""):
        target = parse_qs(parts.query).get("uddg")
        if target:
            return unquote(target[0])
    return href


def parse_results(html: str, *, limit: int = 10) -> list[SearchResult]:
    tree = LexborHTMLParser(html)
    results: list[SearchResult] = []
    for card in tree.css("div.result"):
        classes = (card.attributes.get("class") or "").split()
        if "result--ad" in classes:
            continue
        link = card.css_first("a.result__a") or card.css_first("h2 a")
        if link is None:
            continue
        href = (link.attributes.get("href") or "").strip()
        if not href or href.startswith("https://duckduckgo.com/y.js") or "/y.js?" in href:
            continue
        url = unwrap(href)
        if not url.startswith(("http://", "https://")):
            continue
        snippet_node = card.css_first(".result__snippet")
        results.append(
            SearchResult(
                title=" ".join(link.text().split()),
                url=url,
                snippet=" ".join(snippet_node.text().split()) if snippet_node else "",
            )
        )
        if len(results) >= limit:
            break
    return results


class DuckDuckGoHtml:
    name = "duckduckgo"

    def __init__(self, http: httpx.AsyncClient, *, url: str, region: str | None = None) -> None:
        self.http = http
        self.url = url
        self.region = region

    @classmethod
    def from_settings(cls, settings: Settings, http: httpx.AsyncClient) -> DuckDuckGoHtml:
        return cls(http, url=settings.duckduckgo_url)

    async def search(self, query: str, *, limit: int = 5) -> list[SearchResult]:
        payload = {"q": query, "b": ""}
        if self.region:
            payload["kl"] = self.region
        origin = urlsplit(self.url)
        try:
            response = await self.http.post(
                self.url,
                data=payload,
                headers={
                    "Referer": f"{origin.scheme}://{origin.netloc}/",
                    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) leadflow-enrichment",
                },
                timeout=SEARCH_TIMEOUT_SECONDS,
                follow_redirects=False,
            )
        except httpx.HTTPError as exc:
            raise SearchError(
                f"web search failed: {exc or type(exc).__name__}", retryable=True
            ) from exc
        if response.status_code in RATE_LIMIT_STATUSES:
            retry_after = response.headers.get("retry-after", "")
            raise SearchError(
                f"web search rate-limited (HTTP {response.status_code})",
                retryable=True,
                retry_after=float(retry_after) if retry_after.isdigit() else 30.0,
            )
        if response.status_code != 200:
            raise SearchError(
                f"web search answered HTTP {response.status_code}",
                retryable=response.status_code >= 500,
            )
        if b"No  results." in response.content or b'class="no-results"' in response.content:
            return []
        return parse_results(response.text, limit=limit)


def duckduckgo_provider(settings: Settings, http: httpx.AsyncClient) -> SearchProvider:
    """The factory the enrichment plugin registers as "duckduckgo"."""
    return DuckDuckGoHtml.from_settings(settings, http)
