"""Finding a lead's company website: the CSV's website column, else the domain of the lead's
e-mail address (unless it is a free-mail domain), else a web search for the company name.

A website value that names something leadflow will not fetch (`file:`, `gopher:`, `localhost`)
is refused with the reason, not replaced by a search: the tenant sees why in the record."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from activities.web.search import SearchProvider, SearchResult
from models.csv_intake import identifying_columns
from models.enrichment import WebsiteFound
from models.netguard import ALLOWED_SCHEMES, LOCAL_NAME_SUFFIXES

FREE_MAIL_DOMAINS = frozenset(
    {"gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "yahoo.fr", "yahoo.de",
     "ymail.com", "hotmail.com", "hotmail.co.uk", "hotmail.fr", "hotmail.de", "outlook.com",
     "live.com", "msn.com", "aol.com", "icloud.com", "me.com", "mac.com", "gmx.de", "gmx.net",
     "gmx.com", "web.de", "t-online.de", "mail.com", "protonmail.com", "proton.me", "pm.me",
     "zoho.com", "yandex.com", "yandex.ru", "mail.ru", "qq.com", "163.com", "126.com",
     "orange.fr", "free.fr", "laposte.net", "libero.it", "ziggo.nl", "kpnmail.nl", "hey.com",
     "fastmail.com", "tutanota.com", "seznam.cz", "wp.pl", "o2.pl", "btinternet.com",
     "comcast.net", "verizon.net", "att.net", "sbcglobal.net", "rocketmail.com", "live.nl",
     "hotmail.nl", "outlook.de", "bluewin.ch", "naver.com"}
)  # fmt: skip
# Search hits that are about a company but are not its website.
DIRECTORY_DOMAINS = frozenset(
    {"linkedin.com", "facebook.com", "twitter.com", "x.com", "instagram.com", "youtube.com",
     "wikipedia.org", "crunchbase.com", "bloomberg.com", "yelp.com", "glassdoor.com",
     "indeed.com", "zoominfo.com", "dnb.com", "opencorporates.com", "github.com",
     "tripadvisor.com", "yellowpages.com", "trustpilot.com", "amazon.com", "pinterest.com",
     "tiktok.com", "reddit.com", "medium.com", "apple.com", "google.com", "duckduckgo.com",
     "bing.com", "kvk.nl", "northdata.com", "companieshouse.gov.uk", "xing.com"}
)  # fmt: skip
# A scheme written without "//" (`data:text/html,...`, `mailto:x@y`, `file:/etc/passwd`); a
# `host:port` value is not one (a port is digits, these are not).
_SCHEME_RE = re.compile(r"^([a-z][a-z0-9+.-]*):(?!\d+(/|$))", re.IGNORECASE)
DOMAIN_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")


def normalise_website(value: str) -> str | None:
    """`acme.com`, `www.acme.com/`, `https://acme.com/about` -> an absolute http(s) URL."""
    value = value.strip()
    if not value or " " in value:
        return None
    if "://" not in value:
        value = "https://" + value.lstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower()
    is_ip = bool(re.fullmatch(r"[0-9.]+|\[?[0-9a-f:]+\]?", host))
    if not is_ip and not DOMAIN_RE.match(host):
        return None
    path = parts.path or "/"
    return str(urlunsplit((parts.scheme, parts.netloc.lower(), path, parts.query, "")))


def website_refusal(value: str) -> str | None:
    """Why a website value is refused (None: fetch it, or not a URL at all)."""
    value = value.strip()
    match = _SCHEME_RE.match(value)
    if match and match.group(1).lower() not in ALLOWED_SCHEMES:
        scheme = match.group(1).lower()
        return f"website {value[:80]!r} refused: {scheme}: is not supported (only http and https)"
    url = value if "://" in value else "https://" + value.lstrip("/")
    try:
        host = (urlsplit(url).hostname or "").lower().rstrip(".")
    except ValueError:
        return None
    if host == "localhost" or host.endswith(LOCAL_NAME_SUFFIXES):
        return f"website {value[:80]!r} refused: {host} is a local name"
    return None


def site_key(url: str) -> str:
    """What "the same company website" means for caching: host (without www.) plus path."""
    parts = urlsplit(url)
    host = parts.netloc.lower().removeprefix("www.")
    return f"{host}{parts.path.rstrip('/')}"[:400]


def registrable_host(url: str) -> str:
    host = (urlsplit(url).hostname or "").lower().removeprefix("www.")
    return host


def _is_directory(url: str) -> bool:
    host = registrable_host(url)
    return any(host == d or host.endswith("." + d) for d in DIRECTORY_DOMAINS)


def email_domain(email: str) -> str | None:
    _, at, domain = email.strip().lower().rpartition("@")
    if not at or not DOMAIN_RE.match(domain):
        return None
    return domain


def search_query(row: dict[str, str], company: str) -> str:
    # A city or country narrows the search for common names ("Acme" is everywhere).
    extra = [
        value
        for key, value in row.items()
        if key.strip().lower() in ("city", "town", "country", "stadt", "ort", "land") and value
    ]
    return " ".join([company, *extra[:2]])


def pick_result(results: list[SearchResult]) -> SearchResult | None:
    for result in results:
        if not _is_directory(result.url):
            return result
    return None


async def find_website(row: dict[str, str], search: SearchProvider | None) -> WebsiteFound:
    columns = identifying_columns(list(row))
    if columns.website and row.get(columns.website, "").strip():
        refused = website_refusal(row[columns.website])
        if refused:
            return WebsiteFound(url=None, source="refused", detail=refused)
        url = normalise_website(row[columns.website])
        if url:
            return WebsiteFound(url=url, source="column")
    if columns.email and row.get(columns.email, "").strip():
        domain = email_domain(row[columns.email])
        if domain and domain not in FREE_MAIL_DOMAINS:
            return WebsiteFound(url=f"https://{domain}/", source="email")
    company = row.get(columns.company or "", "").strip()
    if not company:
        return WebsiteFound(
            url=None, source="none", detail="no website, company e-mail or company name to search"
        )
    if search is None:
        return WebsiteFound(url=None, source="none", detail="no search provider configured")
    results = await search.search(search_query(row, company), limit=8)
    hit = pick_result(results)
    if hit is None:
        return WebsiteFound(
            url=None, source="none", detail=f"web search found no website for {company!r}"
        )
    root = urlsplit(hit.url)
    url = hit.url
    if len([seg for seg in root.path.split("/") if seg]) > 1:
        # A deep hit (a news item, a product page): the home page says more about the company.
        url = str(urlunsplit((root.scheme, root.netloc, "/", "", "")))
    return WebsiteFound(url=url, source="search", detail=hit.title)
