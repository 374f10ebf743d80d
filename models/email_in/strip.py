"""The new part of a reply: quoted history and signature stripped before the conversation
analyses it.

mail-parser-reply (`mailparser_reply`) does the work for the languages leadflow's leads write
(wire doc email_reply_parsing.md). Its Dutch rule needs `schreef:` right at the end of the line,
so the attribution real Gmail writes in Dutch ("Op 18 juli 2013 10:23 schreef Sander Datema het
volgende:", "Op … schreef Naam <addr>:") passes through untouched; leadflow therefore first cuts at
such an attribution line (any of the languages, with a date in it) and at a trailing block of
`>`-quoted lines, then lets the library strip what remains (headers, signatures, disclaimers)."""

from __future__ import annotations

import re

from mailparser_reply import EmailReplyParser

LANGUAGES = ("en", "nl", "de", "fr", "es", "it", "sv", "da", "pl")
_PARSER = EmailReplyParser(languages=list(LANGUAGES))

# "On <date> <who> wrote:" in the languages above; the line must hold a digit (a date or a time)
# so a sentence like "On Monday I wrote:" in the lead's own text is not a cut.
_ATTRIBUTION = re.compile(
    r"^\s*(?:On|Op|Am|Le|El|Il|Den|Dnia|Pa|På)\b.*\d.*"
    r"\b(?:wrote|schreef|geschreven|schrieb|a\s+écrit|escribió|ha\s+scritto|skrev|napisał)\b"
    r".*:\s*$",
    re.IGNORECASE,
)
# A separator line the quoted headers followed ("-----", "_____"), left at the reply's end.
_SEPARATOR_TAIL = re.compile(r"(?:\n\s*[-_=*]{5,}\s*)+\Z")
# Gmail wraps a long attribution over two lines ("Op … schreef Naam <\naddr>:").
_ATTRIBUTION_START = re.compile(r"^\s*(?:On|Op|Am|Le|El|Il|Den|Dnia|Pa|På)\b.*\d", re.IGNORECASE)


def _cut_attribution(lines: list[str]) -> list[str]:
    for index, line in enumerate(lines):
        if _ATTRIBUTION.match(line):
            return lines[:index]
        if (
            index + 1 < len(lines)
            and _ATTRIBUTION_START.match(line)
            and _ATTRIBUTION.match(f"{line} {lines[index + 1]}")
        ):
            return lines[:index]
    return lines


def _cut_trailing_quote(lines: list[str]) -> list[str]:
    """Drop a block of `>` lines (blank lines between them allowed) at the end of the mail."""
    end = len(lines)
    quoted = False
    while end > 0 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith(">")):
        quoted = quoted or lines[end - 1].lstrip().startswith(">")
        end -= 1
    return lines[:end] if quoted else lines


def reply_text(text: str) -> str:
    """The reply without the quoted mail it answers and without the signature; "" when nothing
    is left (the caller then reads the whole text)."""
    normalised = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = _cut_trailing_quote(_cut_attribution(normalised.split("\n")))
    kept = "\n".join(lines).strip()
    if not kept:
        return ""
    try:
        replies = _PARSER.read(text=kept).replies
    except Exception:  # a library bug must not lose the mail: keep our cut
        return kept
    # `body`: the newest reply without its headers, signature and disclaimers (the library's
    # `parse_reply` keeps the signature).
    body = replies[0].body if replies else ""
    return _SEPARATOR_TAIL.sub("", body).strip()
