"""A fixture web on loopback: many small company sites on one server, and a fake DuckDuckGo HTML
endpoint that answers in the markup shape of ../shared/wire/duckduckgo_html.md.

Sites are routed by path (`http://127.0.0.1:PORT/acme/`) or by Host (`acme.<anything>`), so the
same server serves tests and benchmarks. Any unknown name is a generated company site; these
names behave specially:

    slow               answers after `slow_seconds` (a timeout)
    missing            404
    flaky*             500 for the first `flaky_failures` requests, then a normal page
    huge               a page of `huge_bytes` bytes
    pdf                application/pdf
    redirect-metadata  302 to http://169.254.169.254/latest/meta-data/ (cloud metadata)
    redirect-private   302 to http://10.0.0.1/admin
    redirect-ok        302 to /acme-redirected/
    odd                e-mails, phones and social links in odd markup
    latin1             an ISO-8859-1 page (charset only in a <meta> tag)
    blocked            disallowed by /robots.txt
    contactful         no e-mail on the home page, one on its /contact page

`latency` delays every answer, `failure_rate` answers that share of generated-site requests with
500 (seeded, so runs repeat).

    with FakeWeb(latency=0.05) as web:
        web.site("acme")            # http://127.0.0.1:PORT/acme/
        web.search_url              # for Settings.duckduckgo_url
"""

from __future__ import annotations

import asyncio
import html
import random
import threading
from collections import Counter
from types import TracebackType
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.fakes.http_server import LiveServer

ROBOTS_TXT = "User-agent: *\nDisallow: /blocked/\n"

ODD_PAGE = """<!doctype html>
<html><head><title>Odd Co</title>
<meta property="og:description" content="Odd Co makes unusual widgets for unusual people.">
<script type="application/ld+json">
{"@context": "https://schema.org", "@type": "Organization", "name": "Odd Co",
 "sameAs": ["https://www.linkedin.com/company/odd-co/", "https://x.com/oddco"]}
</script></head>
<body>
<div class="footer">
  <p>Write to sales [at] odd-co [dot] com or
     <A HREF='MAILTO:Hello@Odd-Co.com?subject=Hi%20there'>us</A>.</p>
  <p>Phone: <a href="tel:+49-30-1234567">+49 (30) 123 45 67</a>, US office (415) 555-0132</p>
  <span data-href="//www.facebook.com/oddco">Facebook</span>
  <a href="https://www.facebook.com/sharer/sharer.php?u=https://odd-co.com">Share</a>
  <a href="https://twitter.com/intent/tweet?text=hi">Tweet</a>
  <a href="https://github.com/">GitHub home</a>
  <img src="logo@2x.png" alt="">
</div>
</body></html>
"""


def _company_name(slug: str) -> str:
    return " ".join(part.capitalize() for part in slug.replace("_", "-").split("-")) or "Company"


def company_page(slug: str, *, base: str, with_email: bool = True) -> str:
    name = _company_name(slug)
    email = f'<a href="mailto:info@{slug}.example.com">info@{slug}.example.com</a>'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(name)} Inc.</title>
<meta name="description"
  content="{html.escape(name)} builds reliable software for logistics teams.">
</head><body>
<nav><a href="{base}/{slug}/contact">Contact</a></nav>
<main><h1>{html.escape(name)}</h1>
<p>{html.escape(name)} has helped logistics teams plan routes since 2004. We build reliable
software for dispatchers, warehouses and drivers, and we answer the phone ourselves.</p></main>
<footer>{email if with_email else ""}
<p>Call us: <a href="tel:+1-415-555-0100">+1 415 555 0100</a></p>
<a href="https://www.linkedin.com/company/{slug}">LinkedIn</a></footer>
</body></html>"""


def ddg_result(href: str, title: str, snippet: str, *, ad: bool = False) -> str:
    extra = " result--ad" if ad else ""
    return f"""<div class="result results_links results_links_deep web-result{extra}">
  <div class="links_main links_deep result__body">
    <h2 class="result__title">
      <a rel="nofollow" class="result__a" href="{html.escape(href)}">{html.escape(title)}</a>
    </h2>
    <div class="result__extras">
      <div class="result__extras__url">
        <a class="result__url" href="{html.escape(href)}">{html.escape(href)}</a>
      </div>
    </div>
    <a class="result__snippet" href="{html.escape(href)}">{html.escape(snippet)}</a>
    <div class="clear"></div>
  </div>
</div>"""


def ddg_page(results: list[str]) -> str:
    body = "\n".join(results) if results else '<div class="no-results">No  results.</div>'
    return f"""<!DOCTYPE html><html><head><title>DuckDuckGo</title></head><body>
<div id="links" class="results">{body}</div></body></html>"""


def uddg(url: str) -> str:
    return f"//duckduckgo.com/l/?uddg={quote(url, safe='')}&rut=abc123"


class FakeWeb:
    def __init__(
        self,
        *,
        latency: float = 0.0,
        failure_rate: float = 0.0,
        seed: int = 7,
        slow_seconds: float = 5.0,
        huge_bytes: int = 5_000_000,
        flaky_failures: int = 1,
    ) -> None:
        self.latency = latency
        self.failure_rate = failure_rate
        self.slow_seconds = slow_seconds
        self.huge_bytes = huge_bytes
        self.flaky_failures = flaky_failures
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.hits: Counter[str] = Counter()
        """Requests per site name (and "robots.txt", "search")."""
        self.searches: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        """Most site requests being answered at the same moment (per-host limits show here)."""
        self.server = LiveServer(
            Starlette(
                routes=[
                    Route("/ddg/html/", self._search, methods=["POST", "GET"]),
                    Route("/{path:path}", self._page, methods=["GET", "HEAD"]),
                ]
            )
        )

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> FakeWeb:
        self.server.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.stop()

    @property
    def base_url(self) -> str:
        return self.server.url

    @property
    def search_url(self) -> str:
        return f"{self.server.url}/ddg/html/"

    def site(self, name: str) -> str:
        return f"{self.server.url}/{name}/"

    def count(self, name: str) -> int:
        with self._lock:
            return self.hits[name]

    # -- handlers --------------------------------------------------------------------------

    def _hit(self, name: str) -> int:
        with self._lock:
            self.hits[name] += 1
            return self.hits[name]

    async def _search(self, request: Request) -> Response:
        if self.latency:
            await asyncio.sleep(self.latency)
        form = await request.form() if request.method == "POST" else request.query_params
        query = str(form.get("q", "")).strip()
        self._hit("search")
        with self._lock:
            self.searches.append(query)
        if not query or "nothing" in query.lower():
            return HTMLResponse(ddg_page([]))
        slug = "-".join(query.lower().split()[:1]) or "company"
        target = self.site(slug)
        results = [
            ddg_result(
                f"https://duckduckgo.com/y.js?ad_domain=ads.example&u3={quote(target)}",
                "Sponsored: buy leads",
                "An advertisement.",
                ad=True,
            ),
            ddg_result(
                uddg(f"https://www.linkedin.com/company/{slug}"),
                f"{_company_name(slug)} | LinkedIn",
                "Company profile.",
            ),
            ddg_result(uddg(target), f"{_company_name(slug)} - Home", "Official website."),
        ]
        return HTMLResponse(ddg_page(results))

    def _route(self, request: Request) -> tuple[str, str]:
        host = (request.headers.get("host") or "").split(":", 1)[0]
        first = host.split(".", 1)[0]
        path = request.path_params["path"]
        if host and not host.replace(".", "").isdigit() and host != "localhost" and first:
            return first, path  # Host-routed: acme.fixture.test -> site "acme"
        site, _, rest = path.partition("/")
        return site, rest

    async def _page(self, request: Request) -> Response:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(request)
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _answer(self, request: Request) -> Response:
        if request.path_params["path"] == "robots.txt":
            self._hit("robots.txt")
            return PlainTextResponse(ROBOTS_TXT)
        site, rest = self._route(request)
        count = self._hit(site)
        base = f"{request.url.scheme}://{request.url.netloc}"
        if site == "slow":
            await asyncio.sleep(self.slow_seconds)
        elif self.latency:
            await asyncio.sleep(self.latency)
        if site == "missing" or not site:
            return HTMLResponse("<h1>Not found</h1>", status_code=404)
        if site.startswith("flaky") and count <= self.flaky_failures:
            return HTMLResponse("<h1>Internal error</h1>", status_code=500)
        if site == "huge":
            filler = "<p>" + "lorem ipsum dolor sit amet " * 40 + "</p>\n"
            page = company_page("huge", base=base) + filler * (self.huge_bytes // len(filler) + 1)
            return HTMLResponse(page)
        if site == "pdf":
            return Response(b"%PDF-1.4 fake", media_type="application/pdf")
        if site == "redirect-metadata":
            return RedirectResponse("http://169.254.169.254/latest/meta-data/", status_code=302)
        if site == "redirect-private":
            return RedirectResponse("http://10.0.0.1/admin", status_code=302)
        if site == "redirect-ok":
            return RedirectResponse(f"{base}/acme-redirected/", status_code=302)
        if site == "odd":
            return HTMLResponse(ODD_PAGE)
        if site == "latin1":
            page = (
                '<html><head><meta charset="iso-8859-1"><title>Müller & Söhne GmbH</title>'
                '<meta name="description" content="Müller & Söhne fertigt Präzisionsteile in '
                'Köln seit 1921."></head><body><p>Größe zählt: Straße 5, Köln.</p>'
                '<a href="mailto:büro@example.de">Büro</a> info@mueller-soehne.de</body></html>'
            )
            return Response(page.encode("iso-8859-1"), media_type="text/html")
        if site == "contactful":
            if rest.startswith("contact"):
                return HTMLResponse(
                    "<html><body><h1>Contact</h1><p>Mail: hello@contactful.example.com</p>"
                    "</body></html>"
                )
            return HTMLResponse(company_page("contactful", base=base, with_email=False))
        if rest.startswith("contact"):
            return HTMLResponse(f"<html><body><p>Contact {site}</p></body></html>")
        if self.failure_rate:
            with self._lock:
                fail = self._random.random() < self.failure_rate
            if fail:
                return HTMLResponse("<h1>Server error</h1>", status_code=500)
        return HTMLResponse(company_page(site, base=base))
