"""Bytes fetched from the web to text, in the order browsers use: a byte-order mark, the
declared charset, (HTML) `<meta charset>`, then UTF-8, then Windows-1252 — so a site's Latin-1
page reads as it shows. Shared by the enrichment scraper and the inventory parser."""

from __future__ import annotations

import re

META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_\-:.]+)""", re.I)


def has_utf16_bom(body: bytes) -> bool:
    return body.startswith((b"\xff\xfe", b"\xfe\xff"))


def decode_web_text(body: bytes, *, declared: str | None, meta: bool) -> str | None:
    """The text of `body`, or None when none of the candidate charsets decodes it."""
    candidates: list[str] = []
    if body.startswith(b"\xef\xbb\xbf"):
        candidates.append("utf-8-sig")
    elif has_utf16_bom(body):
        candidates.append("utf-16")
    if declared:
        candidates.append(declared)
    if meta:
        match = META_CHARSET.search(body[:4096])
        if match:
            candidates.append(match.group(1).decode("ascii", errors="ignore"))
    candidates += ["utf-8", "cp1252"]
    for encoding in candidates:
        try:
            return body.decode(encoding)
        except (LookupError, UnicodeDecodeError):
            continue
    return None
