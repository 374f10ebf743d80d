"""CSV in and out: validate an upload before a job starts, and write results a spreadsheet can
open safely.

Shared by the API (validation at upload) and the store-rows activity (which parses the validated
text again), so both see exactly the same rows.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from models.messages import Frozen

# Header aliases, compared after lowercasing and dropping everything but letters and digits.
COMPANY_ALIASES = frozenset(
    {"company", "companyname", "organization", "organisation", "org", "business", "businessname",
     "account", "accountname", "firm", "name", "empresa", "firma", "unternehmen", "entreprise",
     "societe"}
)  # fmt: skip
WEBSITE_ALIASES = frozenset(
    {"website", "web", "site", "url", "websiteurl", "homepage", "domain", "companydomain",
     "companywebsite", "webseite", "sitioweb"}
)  # fmt: skip
EMAIL_ALIASES = frozenset(
    {"email", "emailaddress", "mail", "workemail", "businessemail", "contactemail", "correo",
     "emailadresse"}
)  # fmt: skip

DELIMITERS = ",;\t|"
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
MAX_PROBLEMS = 20
_NUMBER = r"[+-]?\d[\d ()./-]*"
NUMBER_LIKE = re.compile(rf"{_NUMBER}(?:; {_NUMBER})*")


class CsvProblem(Frozen):
    line: int | None
    problem: str


class CsvInvalid(Exception):
    """The upload cannot become a job; `problems` says why, with line numbers where they exist."""

    def __init__(self, problems: Sequence[CsvProblem]) -> None:
        super().__init__("; ".join(p.problem for p in problems))
        self.problems = list(problems)


class CsvTooLarge(CsvInvalid):
    pass


@dataclass(frozen=True)
class IdentifyingColumns:
    company: str | None = None
    website: str | None = None
    email: str | None = None

    @property
    def any(self) -> bool:
        return bool(self.company or self.website or self.email)


@dataclass
class ParsedCsv:
    text: str
    """The upload decoded to text (always stored and re-parsed as this, never as bytes)."""
    encoding: str
    delimiter: str
    columns: list[str]
    identifying: IdentifyingColumns
    rows: list[dict[str, str]] = field(default_factory=list)


def _norm(header: str) -> str:
    return re.sub(r"[^a-z0-9]", "", header.lower())


def identifying_columns(columns: Sequence[str]) -> IdentifyingColumns:
    found: dict[str, str] = {}
    for column in columns:
        key = _norm(column)
        for kind, aliases in (
            ("company", COMPANY_ALIASES),
            ("website", WEBSITE_ALIASES),
            ("email", EMAIL_ALIASES),
        ):
            if key in aliases and kind not in found:
                found[kind] = column
    return IdentifyingColumns(**found)


def decode(data: bytes) -> tuple[str, str]:
    """UTF-8 (with or without BOM), else Latin-1 when the bytes look like text in it."""
    if data.startswith(b"\xef\xbb\xbf"):
        try:
            return data[3:].decode("utf-8"), "utf-8-sig"
        except UnicodeDecodeError as exc:
            raise CsvInvalid([_encoding_problem(data, exc)]) from exc
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as utf8_error:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data:
            # UTF-16 or binary: decoding as Latin-1 would "succeed" and produce garbage.
            raise CsvInvalid(
                [CsvProblem(line=None, problem="unsupported encoding (UTF-16 or binary data); "
                            "save the file as UTF-8")]
            ) from utf8_error  # fmt: skip
        text = data.decode("latin-1")
        # Latin-1 decodes any byte; C1 control characters mean it was something else (e.g. a
        # UTF-8 file with a few corrupt bytes would have shown up as valid-looking text).
        if re.search(r"[\x80-\x9f]", text):
            raise CsvInvalid([_encoding_problem(data, utf8_error)]) from utf8_error
        return text, "latin-1"


def _encoding_problem(data: bytes, exc: UnicodeDecodeError) -> CsvProblem:
    line = data[: exc.start].count(b"\n") + 1
    return CsvProblem(
        line=line,
        problem=f"not valid UTF-8 or Latin-1 text (byte 0x{data[exc.start]:02x}); "
        "save the file as UTF-8",
    )


def sniff_delimiter(text: str) -> str:
    sample = "\n".join(text.splitlines()[:50])
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        # The sniffer gives up on one-column files and on quoted cells; the header decides then.
        header = text.splitlines()[0] if text else ""
        counts = {d: header.count(d) for d in DELIMITERS}
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] else ","


def iter_rows(text: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(line number where the row starts, cells); line numbers are 1-based, the header is 1."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=False)
    line = 1
    for cells in reader:
        yield line, cells
        line = reader.line_num + 1


def parse_csv(data: bytes, *, max_bytes: int, max_rows: int) -> ParsedCsv:
    """Validate and parse an upload; raises CsvInvalid (or CsvTooLarge) listing every problem."""
    if len(data) > max_bytes:
        raise CsvTooLarge(
            [CsvProblem(line=None, problem=f"file is {len(data)} bytes; the limit is {max_bytes}")]
        )
    text, encoding = decode(data)
    if not text.strip():
        raise CsvInvalid([CsvProblem(line=None, problem="the file is empty")])
    delimiter = sniff_delimiter(text)
    return parse_text(text, delimiter=delimiter, max_rows=max_rows, encoding=encoding)


def parse_text(
    text: str, *, delimiter: str, max_rows: int | None = None, encoding: str = "utf-8"
) -> ParsedCsv:
    problems: list[CsvProblem] = []
    rows_iter = iter_rows(text, delimiter)
    try:
        _, header = next(rows_iter)
    except (StopIteration, csv.Error):
        raise CsvInvalid([CsvProblem(line=1, problem="no header row")]) from None
    columns = [h.strip() for h in header]
    if not any(columns):
        raise CsvInvalid([CsvProblem(line=1, problem="the header row is empty")])
    seen: set[str] = set()
    for index, name in enumerate(columns):
        if not name:
            problems.append(CsvProblem(line=1, problem=f"column {index + 1} has no name"))
        elif name in seen:
            problems.append(CsvProblem(line=1, problem=f"column {name!r} appears twice"))
        seen.add(name)
    identifying = identifying_columns(columns)
    if not identifying.any:
        problems.append(
            CsvProblem(
                line=1,
                problem="no identifying column: add one named like 'company', 'website' "
                f"(or 'domain') or 'email'; found {', '.join(repr(c) for c in columns)}",
            )
        )
    rows: list[dict[str, str]] = []
    try:
        for line, cells in rows_iter:
            if not any(c.strip() for c in cells):
                continue  # blank lines are not rows
            if len(cells) > len(columns) and any(c.strip() for c in cells[len(columns) :]):
                problems.append(
                    CsvProblem(
                        line=line,
                        problem=f"{len(cells)} cells but the header has {len(columns)} columns",
                    )
                )
            row = {
                name: (cells[i].strip() if i < len(cells) else "") for i, name in enumerate(columns)
            }
            rows.append(row)
            if max_rows is not None and len(rows) > max_rows:
                raise CsvTooLarge(
                    [CsvProblem(line=line, problem=f"more than {max_rows} rows (the limit)")]
                )
            if len(problems) >= MAX_PROBLEMS:
                break
    except csv.Error as exc:
        problems.append(CsvProblem(line=None, problem=f"unreadable CSV: {exc}"))
    if not rows and not problems:
        problems.append(CsvProblem(line=None, problem="the file has a header but no rows"))
    if problems:
        raise CsvInvalid(problems[:MAX_PROBLEMS])
    return ParsedCsv(
        text=text,
        encoding=encoding,
        delimiter=delimiter,
        columns=columns,
        identifying=identifying,
        rows=rows,
    )


def neutralise(cell: str) -> str:
    """A cell a spreadsheet would run as a formula gets a leading apostrophe (OWASP advice).

    Phone numbers and negative numbers (`+49 30 1234567`, `-12.5`, several joined by "; ") are
    left alone: with no letters, quotes or operators besides a leading sign they cannot call a
    function, and an apostrophe would spoil the column for everyone who reads it."""
    if cell.startswith(FORMULA_PREFIXES) and not NUMBER_LIKE.fullmatch(cell):
        return "'" + cell
    return cell


class SafeCsvWriter:
    """Writes rows as CSV text chunks, every cell neutralised; for streaming responses."""

    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = list(columns)

    def _line(self, cells: Iterable[str]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\r\n").writerow([neutralise(c) for c in cells])
        return buffer.getvalue()

    def header(self) -> str:
        return self._line(self.columns)

    def row(self, values: dict[str, str]) -> str:
        return self._line(values.get(c, "") for c in self.columns)
