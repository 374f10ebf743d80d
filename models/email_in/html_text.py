"""HTML mail to plain text, for mail that has no text/plain part: block elements become line
breaks, quoted history (`<blockquote>`, Gmail's `gmail_quote`) stays as `>` lines so the reply
stripper recognises it, scripts and styles are dropped."""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCKS = frozenset(
    {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "hr"}
)
_SKIPPED = frozenset({"script", "style", "head", "title"})
_VOID = frozenset({"br", "hr", "img", "meta", "link", "input"})


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.current: list[str] = []
        self.skipping = 0
        self.quoted = 0

    def _break(self) -> None:
        line = re.sub(r"[ \t\u00a0]+", " ", "".join(self.current)).strip()
        self.lines.append(("> " * self.quoted + line).rstrip())
        self.current = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            self.skipping += 1
        elif tag == "blockquote":
            self._break()
            self.quoted += 1
        elif tag in _BLOCKS:
            self._break()

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self.skipping = max(0, self.skipping - 1)
        elif tag == "blockquote":
            self._break()
            self.quoted = max(0, self.quoted - 1)
        elif tag in _BLOCKS and tag not in _VOID:
            self._break()

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.current.append(data.replace("\n", " "))


def html_to_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    parser.close()
    parser._break()
    text = "\n".join(parser.lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()
