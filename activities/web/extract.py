"""Company facts from a web page: readable text and a short summary, e-mail addresses, phone
numbers and social links, from real-world markup (obfuscated addresses, odd attributes,
JSON-LD, pages that are not UTF-8)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

import phonenumbers
import trafilatura
from email_validator import EmailNotValidError, validate_email
from selectolax.lexbor import LexborHTMLParser as HTMLParser
from selectolax.lexbor import LexborNode as Node

from models.agent import CompanyFacts
from models.text_decoding import decode_web_text

SUMMARY_CHARS = 300
TEXT_CHARS = 20_000
FULL_TEXT_CHARS = 100_000
MAX_ITEMS = 10

SOCIAL_HOSTS = {
    "linkedin.com": "linkedin",
    "twitter.com": "twitter",
    "x.com": "twitter",
    "facebook.com": "facebook",
    "fb.com": "facebook",
    "instagram.com": "instagram",
    "youtube.com": "youtube",
    "github.com": "github",
    "tiktok.com": "tiktok",
    "xing.com": "xing",
    "pinterest.com": "pinterest",
}
# Share buttons and widgets point at social sites too, but say nothing about the company.
SHARE_PATTERNS = re.compile(
    r"(sharer|/share|intent/|shareArticle|/dialog/|/plugins/|/embed/|/watch\?|/hashtag/|/search)",
    re.IGNORECASE,
)
LINK_ATTRIBUTES = ("href", "data-href", "data-url", "data-link", "content", "src")

EMAIL_RE = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,24}")
# "info [at] acme [dot] com", "info(at)acme.com", "info AT acme DOT com"
OBFUSCATED_AT = re.compile(r"\s*(?:\[at\]|\(at\)|\{at\}|<at>|\s+at\s+|\s+AT\s+)\s*")
OBFUSCATED_DOT = re.compile(r"\s*(?:\[dot\]|\(dot\)|\{dot\}|\s+dot\s+|\s+DOT\s+)\s*")
FILE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg", ".css", ".js")
CONTACT_WORDS = ("contact", "kontakt", "contacto", "contatti", "impressum", "imprint")


def decode_html(body: bytes, declared: str | None) -> str:
    """Header charset, else <meta charset>, else UTF-8, else Windows-1252 (what browsers do);
    Latin-1 for bytes none of them reads (it reads any)."""
    text = decode_web_text(body, declared=declared, meta=True)
    return text if text is not None else body.decode("latin-1")


def _clean(text: str) -> str:
    return " ".join(text.split())


def _attr_values(node: Node) -> Iterator[str]:
    # selectolax lowercases attribute names, so HREF and href are the same here.
    for name, value in node.attributes.items():
        if value and name.lower() in LINK_ATTRIBUTES:
            yield value.strip()


def _summary(tree: HTMLParser, text: str) -> str | None:
    for selector in (
        'meta[name="description"]',
        'meta[property="og:description"]',
        'meta[name="twitter:description"]',
    ):
        node = tree.css_first(selector)
        content = _clean(node.attributes.get("content") or "") if node else ""
        if len(content) >= 20:
            return content[:SUMMARY_CHARS]
    if not text:
        return None
    sentences = re.split(r"(?<=[.!?])\s+", _clean(text))
    summary = ""
    for sentence in sentences:
        if len(summary) + len(sentence) > SUMMARY_CHARS:
            break
        summary = f"{summary} {sentence}".strip()
    return (summary or _clean(text)[:SUMMARY_CHARS]) or None


def main_text(html: str, tree: HTMLParser) -> str:
    extracted: str | None = None
    try:
        extracted = trafilatura.extract(html, include_comments=False, include_tables=False)
    except Exception:  # trafilatura chokes on some markup; selectolax below still works
        extracted = None
    if extracted and len(extracted) > 80:
        return extracted[:TEXT_CHARS]
    body = tree.body
    if body is None:
        return ""
    for node in body.css("script, style, noscript, template"):
        node.decompose()
    return _clean(body.text(separator=" "))[:TEXT_CHARS]


def _valid_email(candidate: str) -> str | None:
    candidate = candidate.strip().strip(".,;:<>()[]\"'").lower()
    if not candidate or candidate.endswith(FILE_SUFFIXES):
        return None
    try:
        result = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError:
        return None
    return str(result.normalized).lower()


def find_emails(tree: HTMLParser, text: str) -> list[str]:
    found: list[str] = []
    for node in tree.css("a"):
        for value in _attr_values(node):
            if value.lower().startswith("mailto:"):
                address = unquote(value[7:].split("?", 1)[0])
                for part in address.split(","):
                    found.append(part)
    deobfuscated = OBFUSCATED_DOT.sub(".", OBFUSCATED_AT.sub("@", text))
    found += EMAIL_RE.findall(text)
    found += EMAIL_RE.findall(deobfuscated)
    return _unique(e for e in (_valid_email(c) for c in found) if e)


def find_phones(tree: HTMLParser, text: str, region: str | None) -> list[str]:
    candidates: list[phonenumbers.PhoneNumber] = []
    for node in tree.css("a"):
        for value in _attr_values(node):
            if value.lower().startswith(("tel:", "callto:")):
                raw = unquote(value.split(":", 1)[1])
                try:
                    candidates.append(phonenumbers.parse(raw, region))
                except phonenumbers.NumberParseException:
                    continue
    for match in phonenumbers.PhoneNumberMatcher(text, region or "US"):
        candidates.append(match.number)
    valid = (
        phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164)
        for n in candidates
        if phonenumbers.is_valid_number(n)
    )
    return _unique(valid)


def _social(url: str, base: str) -> str | None:
    if url.startswith("//"):
        url = "https:" + url
    elif not url.lower().startswith(("http://", "https://")):
        if url.startswith("/"):
            return None  # a relative link is the site itself
        url = urljoin(base, url) if ":" not in url.split("/", 1)[0] else url
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    host = host.removeprefix("www.").removeprefix("m.").removeprefix("mobile.")
    host = re.sub(r"^[a-z]{2}\.(linkedin\.com)$", r"\1", host)  # de.linkedin.com
    if host not in SOCIAL_HOSTS or SHARE_PATTERNS.search(url):
        return None
    path = parts.path.rstrip("/")
    if not path or path == "/":
        return None  # the network's home page, not the company's profile
    return urlunsplit(("https", host if host != "fb.com" else "facebook.com", path, "", ""))


def find_social_links(tree: HTMLParser, base: str) -> list[str]:
    found: list[str | None] = []
    for node in tree.css("a, link, meta, div, span, button, li"):
        for value in _attr_values(node):
            found.append(_social(value, base))
    for script in tree.css('script[type="application/ld+json"]'):
        try:
            data = json.loads(script.text() or "null")
        except ValueError:
            continue
        for item in data if isinstance(data, list) else [data]:
            if isinstance(item, dict):
                same_as = item.get("sameAs", [])
                for url in [same_as] if isinstance(same_as, str) else same_as:
                    if isinstance(url, str):
                        found.append(_social(url, base))
    return _unique(f for f in found if f)


def contact_page(tree: HTMLParser, base: str) -> str | None:
    """A same-site contact/imprint link, fetched when the home page has no e-mail or phone."""
    base_host = urlsplit(base).netloc.lower()
    for node in tree.css("a"):
        href = (node.attributes.get("href") or "").strip()
        label = f"{href} {node.text()}".lower()
        if href and any(word in label for word in CONTACT_WORDS):
            url = urljoin(base, href)
            parts = urlsplit(url)
            if parts.scheme in ("http", "https") and parts.netloc.lower() == base_host:
                return str(urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, "")))
    return None


def region_for(url: str) -> str | None:
    """Default phone region from a country-code TLD (acme.de -> DE); None means international."""
    tld = (urlsplit(url).hostname or "").rsplit(".", 1)[-1].upper()
    if tld == "UK":
        return "GB"
    if len(tld) == 2 and tld.isalpha() and phonenumbers.country_code_for_region(tld):
        return tld
    return None


def _unique(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)[:MAX_ITEMS]


def extract_facts(
    body: bytes,
    *,
    url: str,
    charset: str | None = None,
    company: str | None = None,
) -> tuple[CompanyFacts, HTMLParser]:
    html = decode_html(body, charset)
    tree = HTMLParser(html)
    text = main_text(html, HTMLParser(html))
    social = find_social_links(tree, url)  # before scripts go: JSON-LD lists profiles
    title_node = tree.css_first("title")
    title = _clean(title_node.text()) if title_node else None
    for node in tree.css("script, style, noscript, template"):
        node.decompose()
    # Footers (where addresses live) are what trafilatura drops: search the whole page's text.
    full_text = _clean(tree.body.text(separator=" "))[:FULL_TEXT_CHARS] if tree.body else text
    facts = CompanyFacts(
        company=company or title or None,
        website=url,
        summary=_summary(tree, text),
        emails=tuple(find_emails(tree, full_text)),
        phones=tuple(find_phones(tree, full_text, region_for(url))),
        social_links=tuple(social),
    )
    return facts, tree


def merge_facts(first: CompanyFacts, second: CompanyFacts) -> CompanyFacts:
    return first.model_copy(
        update={
            "summary": first.summary or second.summary,
            "emails": tuple(_unique([*first.emails, *second.emails])),
            "phones": tuple(_unique([*first.phones, *second.phones])),
            "social_links": tuple(_unique([*first.social_links, *second.social_links])),
        }
    )
