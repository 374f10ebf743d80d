"""A website value leadflow will not fetch is refused with the reason, not replaced by a search."""

from __future__ import annotations

import pytest

from activities.web.search import SearchResult
from activities.web.website import find_website, website_refusal


class RecordingSearch:
    name = "recording"

    def __init__(self) -> None:
        self.queries: list[str] = []

    async def search(self, query: str, *, limit: int = 5) -> list[SearchResult]:
        self.queries.append(query)
        return [SearchResult(title="Acme", url="https://acme.example.com/")]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("file:///etc/passwd", "file: is not supported"),
        ("FILE:/etc/passwd", "file: is not supported"),
        ("gopher://127.0.0.1:6379/_FLUSHALL", "gopher: is not supported"),
        ("ftp://acme.com/", "ftp: is not supported"),
        ("data:text/html,<b>x</b>", "data: is not supported"),
        ("javascript:alert(1)", "javascript: is not supported"),
        ("localhost", "localhost is a local name"),
        ("localhost:8080/admin", "localhost is a local name"),
        ("http://localhost/", "localhost is a local name"),
        ("https://printer.local/", "printer.local is a local name"),
        ("metadata.google.internal", "metadata.google.internal is a local name"),
    ],
)
async def test_refused_website_values_carry_the_reason_and_skip_the_search(
    value: str, reason: str
) -> None:
    search = RecordingSearch()
    found = await find_website({"company": "Acme", "website": value}, search)
    assert found.url is None
    assert found.source == "refused"
    assert found.detail is not None and reason in found.detail
    assert search.queries == []


@pytest.mark.parametrize(
    "value", ["acme.com", "acme.com:8080/about", "https://www.acme.com/", "http://93.184.215.14/"]
)
def test_ordinary_website_values_are_not_refused(value: str) -> None:
    # Literal private addresses are left to the fetcher's guard: the allowlist decides there.
    assert website_refusal(value) is None


async def test_an_empty_website_still_falls_back_to_the_search() -> None:
    search = RecordingSearch()
    found = await find_website({"company": "Acme", "website": " "}, search)
    assert (found.url, found.source) == ("https://acme.example.com/", "search")
    assert search.queries == ["Acme"]
