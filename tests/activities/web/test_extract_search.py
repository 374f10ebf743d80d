"""Fact extraction from odd markup and non-UTF-8 pages; DuckDuckGo parsing; finding websites."""

from __future__ import annotations

import httpx
import pytest

from activities.web.extract import decode_html, extract_facts
from activities.web.fetch import Fetcher
from activities.web.search import DuckDuckGoHtml, SearchResult, parse_results, unwrap
from activities.web.website import find_website, normalise_website, site_key
from tests.fakes.web import FakeWeb, ddg_page, ddg_result, uddg


def _fetcher(http: httpx.AsyncClient) -> Fetcher:
    return Fetcher(http, timeout=2, max_bytes=1_000_000, per_host_concurrency=4)


async def test_odd_markup_yields_emails_phones_and_social_links(
    web: FakeWeb, http: httpx.AsyncClient
) -> None:
    page = await _fetcher(http).fetch(web.site("odd"))
    facts, _ = extract_facts(page.body, url=page.final_url, charset=page.charset)
    assert set(facts.emails) == {"sales@odd-co.com", "hello@odd-co.com"}
    assert "+49301234567" in facts.phones
    assert "+14155550132" in facts.phones
    assert set(facts.social_links) == {
        "https://linkedin.com/company/odd-co",
        "https://x.com/oddco",
        "https://facebook.com/oddco",
    }
    assert facts.summary == "Odd Co makes unusual widgets for unusual people."
    assert facts.company == "Odd Co"


async def test_latin1_page_is_decoded(web: FakeWeb, http: httpx.AsyncClient) -> None:
    page = await _fetcher(http).fetch(web.site("latin1"))
    facts, _ = extract_facts(page.body, url=page.final_url, charset=page.charset)
    assert facts.company == "Müller & Söhne GmbH"
    assert facts.summary is not None and "Köln" in facts.summary
    assert "info@mueller-soehne.de" in facts.emails


def test_decoding_falls_back_from_a_wrong_declared_charset() -> None:
    body = "<p>Ça coûte 5 €</p>".encode("cp1252")
    assert "Ça coûte 5 €" in decode_html(body, "utf-8")
    assert decode_html("<p>Zürich</p>".encode(), None) == "<p>Zürich</p>"


def test_summary_falls_back_to_the_text() -> None:
    body = (
        b"<html><body><p>Acme makes anvils. They are heavy and they fall on coyotes. "
        b"Order today.</p></body></html>"
    )
    facts, _ = extract_facts(body, url="https://acme.com/")
    assert facts.summary is not None and facts.summary.startswith("Acme makes anvils.")
    assert facts.emails == () and facts.phones == () and facts.social_links == ()


def test_duckduckgo_markup_is_parsed_skipping_ads() -> None:
    html = ddg_page(
        [
            ddg_result("https://duckduckgo.com/y.js?ad_domain=x.com", "Ad", "ad", ad=True),
            ddg_result(uddg("https://acme.com/about?x=1"), "Acme  -  About", " Anvils. "),
            ddg_result("https://other.example/", "Other", "o"),
        ]
    )
    assert parse_results(html) == [
        SearchResult(title="Acme - About", url="https://acme.com/about?x=1", snippet="Anvils."),
        SearchResult(title="Other", url="https://other.example/", snippet="o"),
    ]
    assert parse_results(ddg_page([])) == []
    assert unwrap("https://plain.example/") == "https://plain.example/"


async def test_duckduckgo_provider_posts_the_form(web: FakeWeb, http: httpx.AsyncClient) -> None:
    provider = DuckDuckGoHtml(http, url=web.search_url)
    results = await provider.search("Initech Berlin")
    assert web.searches[-1] == "Initech Berlin"
    assert [r.url for r in results] == [
        "https://www.linkedin.com/company/initech",
        web.site("initech"),
    ]
    assert await provider.search("nothing at all") == []


@pytest.mark.parametrize(
    ("row", "url", "source"),
    [
        ({"company": "Acme", "website": "www.acme.com"}, "https://www.acme.com/", "column"),
        ({"company": "Acme", "domain": "acme.io/"}, "https://acme.io/", "column"),
        ({"company": "Acme", "email": "jane@acme-corp.com"}, "https://acme-corp.com/", "email"),
    ],
)
async def test_website_from_the_row(row: dict[str, str], url: str, source: str) -> None:
    found = await find_website(row, None)
    assert (found.url, found.source) == (url, source)


async def test_free_mail_falls_through_to_search(web: FakeWeb, http: httpx.AsyncClient) -> None:
    provider = DuckDuckGoHtml(http, url=web.search_url)
    found = await find_website({"Company Name": "Globex", "E-mail": "bob@gmail.com"}, provider)
    # The LinkedIn hit is a directory, not the company's site: the next hit wins.
    assert (found.url, found.source) == (web.site("globex"), "search")
    missing = await find_website({"company": "Nothing Corp"}, provider)
    assert missing.url is None and "no website" in (missing.detail or "")
    none = await find_website({"company": ""}, provider)
    assert none.url is None


def test_site_keys_and_normalisation() -> None:
    assert site_key("https://www.acme.com/") == site_key("http://acme.com")
    assert site_key("http://127.0.0.1:9/a/") != site_key("http://127.0.0.1:9/b/")
    assert normalise_website("not a url") is None
    assert normalise_website("ftp://acme.com") is None
