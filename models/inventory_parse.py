"""A dealer's inventory source, read into items: a listing page (schema.org JSON-LD, or CSS
selectors), a JSON feed or a CSV feed, as described by a `SourceSpec`.

`parse_source` is pure (bytes in, items out), so the ingestion activity fetches through the SSRF
guard and hands the body here, and tests feed it fixture files. A document that cannot be read at
all raises `SourceFormatError`; a single entry that cannot be read (no make, a price that is not a
number) is skipped with a reason an operator can act on ("row 7: price 'call us' is not a
number"), never a crash, so one bad row does not hide the other 499 cars."""

from __future__ import annotations

import csv
import io
import json
import re
import reprlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from urllib.parse import urljoin

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from selectolax.lexbor import LexborHTMLParser, LexborNode, SelectolaxError

from models.inventory import (
    MAX_ITEMS_PER_LIST,
    InventoryItem,
    NewInventoryItem,
    normalize_fuel,
    normalize_transmission,
    plain_text,
)
from models.knowledge_sources import ITEM_FIELDS, ListingSelectors, SourceKind, SourceSpec
from models.text_decoding import decode_web_text, has_utf16_bom

MAX_BODY_BYTES = 20 * 1024 * 1024
MAX_ITEMS = MAX_ITEMS_PER_LIST
MAX_JSON_DEPTH = 64  # JSON-LD and feeds nest a few levels; deeper is a hostile or broken document
MILES_TO_KM = Decimal("1.609344")

FORMAT_JSON_LD = "json-ld"
FORMAT_SELECTORS = "selectors"
FORMAT_JSON = "json"
FORMAT_CSV = "csv"

# JSON feeds without items_path: the document itself when it is a list, else the first list
# under one of these keys (at the top, or one object deeper: {"data": {"vehicles": [...]}}).
AUTO_ITEMS_KEYS = ("items", "vehicles", "cars", "data", "results", "offers")
CSV_DELIMITERS = (",", ";", "\t", "|")

# schema.org types that describe one car (or product) for sale. Everything else in a JSON-LD
# block (Organization, BreadcrumbList, WebPage, AutoDealer...) is walked through, not read.
_ITEM_TYPES = frozenset(
    {
        "car",
        "vehicle",
        "motorvehicle",
        "motorcycle",
        "busorcoach",
        "product",
        "individualproduct",
        "productmodel",
        "someproducts",
    }
)
_OFFER_TYPES = frozenset({"offer", "aggregateoffer"})

_TRUE_WORDS = frozenset(
    {
        "yes",
        "y",
        "true",
        "1",
        "ja",
        "j",
        "available",
        "beschikbaar",
        "in stock",
        "instock",
        "op voorraad",
        "voorradig",
        "limitedavailability",
        "preorder",
        "presale",
        "onlineonly",
        "instoreonly",
        "backorder",
    }
)
# A reserved car is not offered to a new lead either, so it counts as not available.
_FALSE_WORDS = frozenset(
    {
        "no",
        "n",
        "false",
        "0",
        "nee",
        "sold",
        "verkocht",
        "sold out",
        "soldout",
        "outofstock",
        "out of stock",
        "discontinued",
        "reserved",
        "gereserveerd",
        "unavailable",
        "niet beschikbaar",
    }
)
_CURRENCY_SYMBOLS = {"€": "EUR", "$": "USD", "£": "GBP", "¥": "JPY", "₣": "CHF", "zł": "PLN"}
_CURRENCY_CODES = {
    **{code: code for code in ("EUR", "USD", "GBP", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK")},
    **{code: code for code in ("HUF", "JPY", "CAD", "AUD")},
    "EURO": "EUR",
    "EUROS": "EUR",
}
# Words dealers put around a price that do not change it ("€ 24.950,- incl. BTW", "vanaf").
# Any other word makes the value not a price ("call us", "prijs op aanvraag").
_PRICE_WORDS = frozenset(
    {"incl", "inc", "excl", "ex", "btw", "vat", "mwst", "ust", "vanaf", "from", "ab", "nu"}
    | {"now", "only", "voor", "for", "rijklaar", "marge", "margin", "tax", "inkl", "ttc"}
)
_MILE_UNITS = frozenset({"mi", "mile", "miles", "mijl", "mijlen", "smi", "meilen"})
_YEAR_RE = re.compile(r"(?<!\d)(1[89]\d\d|2[01]\d\d)(?!\d)")
_ATTRIBUTE_SELECTOR = re.compile(r"^(?P<css>.*?)@(?P<attr>[A-Za-z_:][-A-Za-z0-9_:.]*)$", re.S)
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9_\-:.]+)", re.I)
# Magic numbers of what dealers' URLs sometimes answer instead of a page: a PDF brochure, an
# image, an archive.
_PAGE_MEDIA_TYPES = frozenset(
    {"text/html", "application/xhtml+xml", "text/plain", "application/octet-stream"}
)
_BINARY_MAGIC = (b"%PDF", b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"PK\x03\x04", b"\x1f\x8b")


class SourceFormatError(ValueError):
    """The whole document cannot be read as the source's kind; the message says why."""


class SkippedEntry(BaseModel):
    """One entry of the source that did not become an item. `index` counts entries from 0 in
    source order; `where` names it as an operator finds it ("row 7" is the spreadsheet's row,
    the header being row 1; "item 3" counts from 1)."""

    model_config = ConfigDict(frozen=True)

    index: int = Field(ge=0)
    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


class ParsedInventory(BaseModel):
    """What a source holds: items deduplicated by key (the last entry of a key wins, at the
    position of its first), what was skipped and why, and the format that was read. Never
    empty when the source had entries: if none of them is an item, parse_source refuses."""

    model_config = ConfigDict(frozen=True)

    items: tuple[InventoryItem, ...]
    skipped: tuple[SkippedEntry, ...] = ()
    format: str

    def keys(self) -> tuple[str, ...]:
        return tuple(item.key for item in self.items)

    def summary(self) -> str:
        return f"{len(self.items)} items read as {self.format}, {len(self.skipped)} skipped"


class _Skip(Exception):  # internal control flow: never escapes this module
    """An entry cannot be read; the message is the reason."""


def parse_source(
    spec: SourceSpec, body: bytes, *, content_type: str, base_url: str
) -> ParsedInventory:
    """Read `body` (fetched from `spec.url`, finally at `base_url`, served as `content_type`)
    as the source's kind. Raises SourceFormatError when the document cannot be read at all."""
    if len(body) > MAX_BODY_BYTES:
        raise SourceFormatError(
            f"the document is {len(body):,} bytes; at most {MAX_BODY_BYTES:,} are read"
        )
    if not body.strip():
        raise SourceFormatError("the document is empty")
    declared = _declared_charset(content_type)
    if spec.kind == SourceKind.LISTING_PAGE:
        return _parse_listing(
            spec, body, content_type=content_type, charset=declared, base=base_url
        )
    if spec.kind == SourceKind.JSON_FEED:
        return _parse_json_feed(
            spec, body, content_type=content_type, charset=declared, base=base_url
        )
    return _parse_csv_feed(spec, body, content_type=content_type, charset=declared, base=base_url)


# --- values -------------------------------------------------------------------------------


_SHORT = reprlib.Repr()  # keyword arguments only from Python 3.12
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict = 2, 3, 3
_SHORT.maxstring = _SHORT.maxother = 40


def _show(value: Any) -> str:
    """A value as a reason quotes it: short, and safe on any nesting a hostile feed has."""
    text = value if isinstance(value, str) else _SHORT.repr(value)
    text = " ".join(text.split())
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _number_text(text: str) -> Decimal | None:
    """A number as people write it: "24.950,-", "24,950", "24.950,00", "18 950", "1'234.50".
    One separator followed by exactly three digits groups thousands ("24.950" is 24950, which
    is what a car price or a mileage means); otherwise the last separator is the decimal one."""
    text = re.sub(r"[\s\u00a0\u2009\u202f'\u2019]", "", text)
    text = re.sub(r"[.,]-+$", "", text)  # "24.950,-": whole euros, Dutch style
    if not re.fullmatch(r"\d[\d.,]*", text) or text.endswith((".", ",")):
        return None
    dots, commas = text.count("."), text.count(",")
    if dots and commas:
        decimal_mark = "." if text.rfind(".") > text.rfind(",") else ","
        grouping = "," if decimal_mark == "." else "."
        whole, _, fraction = text.rpartition(decimal_mark)
        if decimal_mark in whole or not _well_grouped(whole, grouping):
            return None
        text = whole.replace(grouping, "") + "." + fraction
    elif dots or commas:
        mark = "." if dots else ","
        parts = text.split(mark)
        if len(parts) > 2 or (len(parts[-1]) == 3 and _well_grouped(text, mark)):
            if not _well_grouped(text, mark):
                return None
            text = text.replace(mark, "")
        else:  # "24,95", "24950.499": a decimal mark
            text = text.replace(mark, ".")
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def _well_grouped(text: str, mark: str) -> bool:
    parts = text.split(mark)
    return 1 <= len(parts[0]) <= 3 and all(len(p) == 3 for p in parts[1:])


def parse_price(value: Any) -> tuple[Decimal | None, str | None]:
    """(amount, currency named in the value or None). Raises ValueError with the reason.
    A price of 0 is no price: feeds write 0 for "price on request", and the agent must never
    tell a lead a car costs nothing."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, None
    if isinstance(value, bool):
        raise ValueError(f"price {_show(value)} is not a number")
    currency: str | None = None
    if isinstance(value, int | float | Decimal):
        amount: Decimal | None = Decimal(str(value))
    elif isinstance(value, str):
        text = value.strip()
        for symbol, code in _CURRENCY_SYMBOLS.items():
            if symbol in text:
                currency = code
                text = text.replace(symbol, " ")
        for word in re.findall(r"[^\W\d_]+\.?", text):
            bare = word.rstrip(".").upper()
            if bare in _CURRENCY_CODES:
                currency = _CURRENCY_CODES[bare]
            elif bare.lower() not in _PRICE_WORDS:
                raise ValueError(f"price {_show(value)} is not a number")
            text = text.replace(word, " ", 1)
        amount = _number_text(text.strip())
    else:
        raise ValueError(f"price {_show(value)} is not a number")
    if amount is None or not amount.is_finite():
        raise ValueError(f"price {_show(value)} is not a number")
    if amount < 0:
        raise ValueError(f"price {_show(value)} is negative")
    if amount == 0:
        return None, currency
    return _canonical_money(amount), currency


def _canonical_money(amount: Decimal) -> Decimal:
    # Money keeps cents; a feed's "24950.499" is rounded as a till would, not refused.
    return amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def parse_mileage(value: Any, *, unit: str | None = None) -> int | None:
    """Kilometres from "85.000 km", "85,000 km", "52.000 mi" (converted) or a number; `unit`
    is a separately given unit (schema.org unitCode KMT/SMI, a feed's unit column). Other words
    ("85.000 km NAP", "ca.") are ignored: only miles change the number."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError(f"mileage {_show(value)} is not a number")
    words: set[str] = set(re.findall(r"[a-z]+", unit.lower())) if unit else set()
    if isinstance(value, int | float | Decimal):
        amount: Decimal | None = Decimal(str(value))
    elif isinstance(value, str):
        if re.match(r"^\s*[-\u2212]\s*\d", value):
            raise ValueError(f"mileage {_show(value)} is negative")
        words |= set(re.findall(r"[a-z]+", value.lower()))
        digits = re.sub(r"[^\d.,\s'\u2019]", " ", value).strip(" .,\u00a0")
        amount = _number_text(digits) if digits else None
    else:
        raise ValueError(f"mileage {_show(value)} is not a number")
    if amount is None or not amount.is_finite():
        raise ValueError(f"mileage {_show(value)} is not a number")
    if amount < 0:
        raise ValueError(f"mileage {_show(value)} is negative")
    if words & _MILE_UNITS:
        amount *= MILES_TO_KM
    return int(amount.to_integral_value(rounding=ROUND_HALF_UP))


def parse_year(value: Any) -> int | None:
    """The year of "2019", "03/2019", "2019-03-01", 2019."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if 1900 <= value <= 2100:
            return value
        raise ValueError(f"year {_show(value)} is not between 1900 and 2100")
    if isinstance(value, str):
        found = _YEAR_RE.search(value)
        if found and not re.search(r"\d{5}", value):
            year = int(found.group(1))
            if 1900 <= year <= 2100:
                return year
            raise ValueError(f"year {_show(value)} is not between 1900 and 2100")
    raise ValueError(f"year {_show(value)} is not a year")


def parse_available(value: Any) -> bool | None:
    """yes/no, true/false, 1/0, ja/nee, sold/verkocht, schema.org InStock/SoldOut URLs."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = " ".join(value.rsplit("/", 1)[-1].lower().replace("_", " ").split())
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    raise ValueError(f"available {_show(value)} is not yes or no")


def _text(name: str, value: Any) -> str:
    # Objects (schema.org Brand, Organization, QualitativeValue) give their name; lists their
    # first element. A loop, not recursion: a hostile feed may nest a thousand lists deep.
    for _ in range(MAX_JSON_DEPTH):
        if isinstance(value, Mapping):
            value = value.get("name") or value.get("@value") or value.get("value")
        elif isinstance(value, list):
            value = value[0] if value else None
        else:
            break
    if value is None:
        return ""
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return str(value)  # a Mazda "3", a model year given as a number
    if isinstance(value, str):
        return " ".join(value.split())
    raise ValueError(f"{name} {_show(value)} is not text")


def _link(value: Any, base: str) -> str:
    """An absolute http(s) URL, or "" when there is none: a lazy-loading `data:` placeholder or
    a `javascript:` link should not cost a car its place in the inventory."""
    for _ in range(MAX_JSON_DEPTH):
        if isinstance(value, Mapping):
            value = value.get("url") or value.get("contentUrl") or value.get("@id")
        elif isinstance(value, list):
            value = next((v for v in value if v), None)
        else:
            break
    if not isinstance(value, str) or not value.strip():
        return ""
    resolved = urljoin(base, value.strip())
    return resolved if re.match(r"^https?://[^\s/]+", resolved, re.I) else ""


@dataclass
class _Raw:
    """One entry's values as the source has them, before coercion."""

    values: dict[str, Any] = field(default_factory=dict)
    mileage_unit: str | None = None
    negate_available: bool = False  # the mapping named a "sold" column (`!Verkocht`)
    name: str = ""  # schema.org `name`: the variant when it says more than make and model


def _build(raw: _Raw, *, default_currency: str, base: str) -> InventoryItem:
    values = raw.values
    try:
        make = _text("make", values.get("make"))
        model = _text("model", values.get("model"))
        variant = _text("variant", values.get("variant"))
        price, price_currency = parse_price(values.get("price"))
        mileage = parse_mileage(values.get("mileage"), unit=raw.mileage_unit)
        year = parse_year(values.get("year"))
        available = parse_available(values.get("available"))
        if available is not None and raw.negate_available:
            available = not available
        currency = _text("currency", values.get("currency")).upper()
        fuel_text = _text("fuel", values.get("fuel"))
        transmission_text = _text("transmission", values.get("transmission"))
        key = _text("key", values.get("key"))
        colour = _text("colour", values.get("colour"))
    except ValueError as error:
        raise _Skip(str(error)) from None
    if not make:
        raise _Skip("no make")
    if raw.name and not model:
        model, variant = _model_from_name(raw.name, make, variant)
    elif raw.name and not variant:
        variant = _rest_of_name(raw.name, make, model)
    currency = _CURRENCY_SYMBOLS.get(currency, currency) or price_currency or default_currency
    fuel = normalize_fuel(_uncamel(fuel_text))
    transmission = normalize_transmission(_uncamel(transmission_text))
    try:
        return NewInventoryItem(
            key=key or None,
            make=make,
            model=model,
            variant=variant,
            year=year,
            price=price,
            currency=currency,
            fuel=fuel.value if fuel else None,
            transmission=transmission.value if transmission else None,
            mileage=mileage,
            colour=colour,
            url=_link(values.get("url"), base),
            image_url=_link(values.get("image_url"), base),
            available=True if available is None else available,
        ).keyed()
    except ValidationError as error:
        raise _Skip(_validation_reason(error)) from None


def _uncamel(text: str) -> str:
    # schema.org-style values run words together ("https://schema.org/AutomaticTransmission",
    # "BlueHDi"); the normalisers match whole words.
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", text)


def _validation_reason(error: ValidationError) -> str:
    reasons = []
    for problem in error.errors()[:3]:
        where = ".".join(str(p) for p in problem["loc"]) or "item"
        reasons.append(f"{where} {_show(problem.get('input'))}: {problem['msg']}")
    return "; ".join(reasons)


def _strip_prefix(text: str, prefix: str) -> str | None:
    """`text` without a leading `prefix` (accent- and case-insensitive, whole words), else None."""
    if prefix and plain_text(text).startswith(plain_text(prefix)):
        rest = text[len(prefix) :]
        if not rest or not rest[0].isalnum():
            return rest.strip(" -\u2013\u2014,|:")
    return None


def _rest_of_name(name: str, make: str, model: str) -> str:
    rest = re.sub(r"^\s*(?:19|20)\d\d\s+", "", name)  # "2019 Volkswagen Golf ..."
    for prefix in (make, model):
        stripped = _strip_prefix(rest, prefix)
        if stripped is not None:
            rest = stripped
    if plain_text(rest) in {plain_text(make), plain_text(model), ""}:
        return ""
    return rest


def _model_from_name(name: str, make: str, variant: str) -> tuple[str, str]:
    """(model, variant) from a name when the entry has no model. Dealers' JSON-LD often names
    the car ("Volkswagen Golf 1.6 TDI") with a brand but no model; the word after the make is
    the model, so "Golf" searches still find it. A name that does not start with the make
    becomes the variant."""
    rest = _strip_prefix(re.sub(r"^\s*(?:19|20)\d\d\s+", "", name), make)
    if rest is None:
        return "", variant or name
    model, _, more = rest.partition(" ")
    return model, variant or more.strip()


# --- entries into items ----------------------------------------------------------------------


@dataclass
class _Collector:
    default_currency: str
    base: str
    by_key: dict[str, tuple[int, str, InventoryItem]] = field(default_factory=dict)
    skipped: list[SkippedEntry] = field(default_factory=list)
    entries: int = 0

    def count(self) -> int:
        self.entries += 1
        if self.entries > MAX_ITEMS:
            raise SourceFormatError(f"more than {MAX_ITEMS:,} entries; at most that many are read")
        return self.entries - 1

    def add(self, index: int, where: str, raw: _Raw) -> None:
        try:
            item = _build(raw, default_currency=self.default_currency, base=self.base)
        except _Skip as skip:
            self.skip(index, where, str(skip))
            return
        earlier = self.by_key.get(item.key)
        if earlier is not None:
            earlier_index, earlier_where, _ = earlier
            self.skip(
                earlier_index,
                earlier_where,
                f"key {_show(item.key)} again at {where}; the later entry is kept",
            )
        self.by_key[item.key] = (index, where, item)

    def skip(self, index: int, where: str, reason: str) -> None:
        self.skipped.append(SkippedEntry(index=index, where=where, reason=reason))

    def result(self, format_name: str) -> ParsedInventory:
        if self.entries and not self.by_key:
            # Every entry failed: the source changed its format (a new price notation, renamed
            # columns), not the dealer's stock. An empty result would remove every car.
            reasons = "; ".join(str(s) for s in sorted(self.skipped, key=lambda s: s.index)[:3])
            raise SourceFormatError(f"none of the {self.entries:,} entries is an item: {reasons}")
        return ParsedInventory(
            items=tuple(item for _, _, item in self.by_key.values()),
            skipped=tuple(sorted(self.skipped, key=lambda s: s.index)),
            format=format_name,
        )


def _declared_charset(content_type: str) -> str | None:
    match = _CHARSET.search(content_type or "")
    return match.group(1) if match else None


def _media_type(content_type: str) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _refuse_binary(body: bytes, expected: str) -> None:
    if body.startswith(_BINARY_MAGIC) or (b"\x00" in body[:4096] and not has_utf16_bom(body)):
        raise SourceFormatError(f"the document is binary data, not {expected}")


def _decode(body: bytes, *, declared: str | None, meta: bool, expected: str) -> str:
    """The declared charset, else (HTML) <meta charset>, else UTF-8, else Windows-1252 — the
    order browsers use (models/text_decoding.py), so a dealer's Latin-1 page reads as it shows."""
    text = decode_web_text(body, declared=declared, meta=meta)
    if text is None:
        raise SourceFormatError(f"the {expected} is neither UTF-8 nor Windows-1252 text")
    return text


# --- listing pages ---------------------------------------------------------------------------


def _parse_listing(
    spec: SourceSpec, body: bytes, *, content_type: str, charset: str | None, base: str
) -> ParsedInventory:
    media = _media_type(content_type)
    # Some servers label pages text/plain or octet-stream; JSON, images and PDFs are not pages.
    if media and media not in _PAGE_MEDIA_TYPES:
        raise SourceFormatError(f"expected an HTML page, got {media}")
    _refuse_binary(body, "an HTML page")
    html = _decode(body, declared=charset, meta=True, expected="page")
    if "<" not in html[:65536]:
        raise SourceFormatError("the document is not an HTML page (no markup)")
    tree = LexborHTMLParser(html)
    # Relative links resolve against <base href> when the page sets one, as browsers do.
    base_tag = tree.css_first("base[href]")
    if base_tag is not None:
        base = urljoin(base, (base_tag.attributes.get("href") or "").strip())
    collector = _Collector(default_currency=spec.currency, base=base)
    if spec.selectors is not None:
        _read_selectors(tree, spec.selectors, collector)
        return collector.result(FORMAT_SELECTORS)
    _read_json_ld(tree, collector)
    return collector.result(FORMAT_JSON_LD)


def _read_selectors(tree: LexborHTMLParser, selectors: ListingSelectors, out: _Collector) -> None:
    try:
        elements = tree.css(selectors.item)
    except SelectolaxError:
        raise SourceFormatError(f"the item selector {selectors.item!r} is not valid CSS") from None
    if not elements:
        # An empty result would remove every car; a redesigned page is the likelier cause.
        raise SourceFormatError(
            f"no element matches the item selector {selectors.item!r} (has the page changed?)"
        )
    fields = {name: _field_selector(name, sel) for name, sel in selectors.fields.items()}
    for position, element in enumerate(elements):
        index = out.count()
        raw = _Raw()
        for name, (css, attribute) in fields.items():
            raw.values[name] = _select(element, css, attribute, name)
        out.add(index, f"item {position + 1}", raw)


def _field_selector(name: str, selector: str) -> tuple[str, str | None]:
    """`a.title@href` reads the attribute; `@data-id` reads the item element's own."""
    match = _ATTRIBUTE_SELECTOR.match(selector.strip())
    css, attribute = (match["css"].strip(), match["attr"]) if match else (selector.strip(), None)
    if css:
        try:
            LexborHTMLParser("<p></p>").css(css)
        except SelectolaxError:
            raise SourceFormatError(
                f"the selector of {name!r} ({selector!r}) is not valid CSS"
            ) from None
    return css, attribute


def _select(element: LexborNode, css: str, attribute: str | None, name: str) -> str | None:
    node = element.css_first(css) if css else element
    if node is None:
        return None
    if attribute is not None:
        return node.attributes.get(attribute.lower())
    text = node.text(deep=True, separator=" ")
    return " ".join(text.split()) if text else None


def _read_json_ld(tree: LexborHTMLParser, out: _Collector) -> None:
    blocks = [
        node
        for node in tree.css("script")
        if (node.attributes.get("type") or "").strip().lower() == "application/ld+json"
    ]
    if not blocks:
        raise SourceFormatError(
            "the page has no schema.org JSON-LD and the source has no selectors"
        )
    errors: list[str] = []
    candidates: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    for number, block in enumerate(blocks, start=1):
        text = (block.text() or "").strip()
        # CMSs wrap the JSON in HTML comments or CDATA to protect it from old parsers.
        text = re.sub(
            r"^(?:<!--|/\*<!\[CDATA\[\*/|<!\[CDATA\[)|(?:-->|/\*\]\]>\*/|\]\]>)$", "", text
        )
        try:
            document = json.loads(text.strip(), strict=False)
        except (ValueError, RecursionError) as error:
            errors.append(f"JSON-LD block {number} is not valid JSON ({error})")
            continue
        for node, offer in _json_ld_items(document, 0):
            candidates.append((node, offer))
            if len(candidates) > MAX_ITEMS:
                raise SourceFormatError(
                    f"more than {MAX_ITEMS:,} entries; at most that many are read"
                )
    if not candidates:
        reason = "; ".join(errors) if errors else "none describes a Car, Vehicle, Product or Offer"
        raise SourceFormatError(f"the page's JSON-LD has no items: {reason}")
    for number, (node, offer) in enumerate(candidates, start=1):
        out.add(out.count(), f"JSON-LD item {number}", _json_ld_raw(node, offer))


def _types(node: Mapping[str, Any]) -> set[str]:
    declared = node.get("@type")
    names = declared if isinstance(declared, list) else [declared]
    return {n.rsplit("/", 1)[-1].lower() for n in names if isinstance(n, str)}


def _json_ld_items(
    value: Any, depth: int
) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
    """(item node, the Offer that wraps it or None) for every car or product, in document
    order, walking @graph, ItemList/ListItem, arrays and any other node's values."""
    if depth > MAX_JSON_DEPTH:
        return
    if isinstance(value, list):
        for element in value:
            yield from _json_ld_items(element, depth + 1)
        return
    if not isinstance(value, dict):
        return
    types = _types(value)
    if types & _ITEM_TYPES:
        yield value, None
        return
    if types & _OFFER_TYPES:
        offered = value.get("itemOffered")
        offered_list = offered if isinstance(offered, list) else [offered]
        nodes = [o for o in offered_list if isinstance(o, dict)]
        if nodes:
            for node in nodes:
                yield node, value
        else:  # an Offer that names the car itself
            yield value, value
        return
    for key, child in value.items():
        if key not in {"@context", "breadcrumb"} and isinstance(child, list | dict):
            yield from _json_ld_items(child, depth + 1)


def _first(node: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        value = node.get(name)
        if value not in (None, "", [], {}):
            return value
    return None


def _one(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


def _json_ld_raw(node: dict[str, Any], offer: dict[str, Any] | None) -> _Raw:
    offers = offer if offer is not None else node.get("offers")
    if isinstance(offers, list):  # the first offer with a price is the one a lead is told
        offers = next((o for o in offers if isinstance(o, dict) and _offer_price(o)), _one(offers))
    offers = offers if isinstance(offers, dict) else {}
    price_spec = _one(offers.get("priceSpecification"))
    price_spec = price_spec if isinstance(price_spec, dict) else {}
    odometer = _one(node.get("mileageFromOdometer"))
    mileage: Any = odometer
    unit: str | None = None
    if isinstance(odometer, dict):
        mileage = odometer.get("value")
        unit = _text("unit", odometer.get("unitCode") or odometer.get("unitText")) or None
    engine = _one(node.get("vehicleEngine"))
    key = _first(node, "sku", "vehicleIdentificationNumber", "productID", "@id")
    if key is None:
        key = _first(offers, "sku", "serialNumber")
    raw = _Raw(mileage_unit=unit, name=_text("name", node.get("name") or offers.get("name")))
    raw.values = {
        "key": key,
        "make": _first(node, "brand", "manufacturer") or _first(offers, "brand"),
        "model": node.get("model"),
        "variant": node.get("vehicleConfiguration"),
        "year": _first(node, "vehicleModelDate", "productionDate", "modelDate", "releaseDate"),
        "price": _offer_price(offers) or price_spec.get("price"),
        "currency": _first(offers, "priceCurrency") or price_spec.get("priceCurrency"),
        "fuel": node.get("fuelType")
        or (engine.get("fuelType") if isinstance(engine, dict) else None),
        "transmission": node.get("vehicleTransmission"),
        "mileage": mileage,
        "colour": _first(node, "color", "colour"),
        "url": _first(node, "url") or _first(offers, "url"),
        "image_url": _first(node, "image"),
        "available": offers.get("availability"),
    }
    return raw


def _offer_price(offer: Mapping[str, Any]) -> Any:
    # AggregateOffer: lowPrice is what "from € ..." means; a single car's Offer has price.
    return _first(offer, "price", "lowPrice")


# --- feeds ------------------------------------------------------------------------------------


def _parse_json_feed(
    spec: SourceSpec, body: bytes, *, content_type: str, charset: str | None, base: str
) -> ParsedInventory:
    media = _media_type(content_type)
    _refuse_binary(body, "JSON")
    text = _decode(body, declared=charset, meta=False, expected="feed")
    try:
        document = json.loads(text)
    except RecursionError:
        raise SourceFormatError("the JSON is nested too deeply") from None
    except ValueError as error:
        what = f" (served as {media})" if media else ""
        if media in {"text/html", "application/xhtml+xml"} or text.lstrip().startswith("<"):
            what = " (it looks like an HTML page: a login or error page?)"
        raise SourceFormatError(f"the feed is not valid JSON{what}: {error}") from None
    entries = _items_list(document, spec.items_path)
    if len(entries) > MAX_ITEMS:
        raise SourceFormatError(
            f"the feed has {len(entries):,} entries; at most {MAX_ITEMS:,} are read"
        )
    collector = _Collector(default_currency=spec.currency, base=base)
    mapping, negate = _feed_mapping(spec)
    paths = {name: mapping.get(name, name) for name in ITEM_FIELDS}
    for position, entry in enumerate(entries):
        index = collector.count()
        where = f"item {position + 1}"
        if not isinstance(entry, dict):
            collector.skip(index, where, f"not an object but {_json_kind(entry)}")
            continue
        raw = _Raw(negate_available=negate)
        for name, path in paths.items():
            raw.values[name] = _walk(entry, path)
        _unnest(raw)
        collector.add(index, where, raw)
    return collector.result(FORMAT_JSON)


def _json_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number" if isinstance(value, int | float) else "a string"


def _unnest(raw: _Raw) -> None:
    """Feeds nest prices and mileages ({"amount": 24950, "currency": "EUR"},
    {"value": 85000, "unit": "mi"}); read them when the mapping names the object itself."""
    price = raw.values.get("price")
    if isinstance(price, dict):
        raw.values["price"] = _first(price, "amount", "value", "price")
        if raw.values.get("currency") is None:
            raw.values["currency"] = _first(price, "currency", "currencyCode", "priceCurrency")
    mileage = raw.values.get("mileage")
    if isinstance(mileage, dict):
        raw.values["mileage"] = _first(mileage, "value", "amount", "km")
        raw.mileage_unit = _text("unit", _first(mileage, "unit", "unitCode", "unitText")) or None


def _walk(value: Any, path: str) -> Any:
    """`price.amount`, `images.0`: keys (exact, else case-insensitive) and list positions."""
    for part in path.split("."):
        if isinstance(value, dict):
            if part in value:
                value = value[part]
                continue
            folded = part.casefold()
            match = next((k for k in value if isinstance(k, str) and k.casefold() == folded), None)
            if match is None:
                return None
            value = value[match]
        elif isinstance(value, list) and part.isdigit():
            if int(part) >= len(value):
                return None
            value = value[int(part)]
        else:
            return None
    return value


def _items_list(document: Any, items_path: str) -> list[Any]:
    if items_path:
        value = document
        walked: list[str] = []
        for part in items_path.split("."):
            if isinstance(value, dict) and part in value:
                value = value[part]
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                at = ".".join(walked) or "the document"
                keys = (
                    f" (keys: {', '.join(sorted(map(str, value))[:20])})"
                    if isinstance(value, dict)
                    else ""
                )
                raise SourceFormatError(
                    f"items_path {items_path!r} not found: {at} has no {part!r}{keys}"
                )
            walked.append(part)
        if not isinstance(value, list):
            raise SourceFormatError(f"items_path {items_path!r} is {_json_kind(value)}, not a list")
        return value
    if isinstance(document, list):
        return document
    if isinstance(document, dict):
        for scope in (document, *(document.get(k) for k in AUTO_ITEMS_KEYS)):
            if not isinstance(scope, dict):
                continue
            for key in AUTO_ITEMS_KEYS:
                if isinstance(scope.get(key), list):
                    return list(scope[key])
        keys = ", ".join(sorted(map(str, document))[:20])
        raise SourceFormatError(
            f"no list of items in the feed; set items_path (top-level keys: {keys})"
        )
    raise SourceFormatError(f"the feed is {_json_kind(document)}, not a list or an object")


def _parse_csv_feed(
    spec: SourceSpec, body: bytes, *, content_type: str, charset: str | None, base: str
) -> ParsedInventory:
    _refuse_binary(body, "CSV")
    text = _decode(body, declared=charset, meta=False, expected="CSV")
    start = text.lstrip()[:200].lower()
    if _media_type(content_type) in {"text/html", "application/xhtml+xml"} or start.startswith(
        ("<!doctype", "<html")
    ):
        raise SourceFormatError("expected CSV, got an HTML page (a login or error page?)")
    if start.startswith(("{", "[")):
        raise SourceFormatError("expected CSV, got JSON (is the source's kind json_feed?)")
    delimiter = spec.delimiter or _sniff_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    # Rows are numbered as a spreadsheet shows them (records, the header being row 1), which
    # is where an operator looks; a quoted cell may span several lines of the file.
    row_number = 0
    try:
        header: list[str] | None = None
        for candidate in reader:
            row_number += 1
            if any(cell.strip() for cell in candidate):
                header = candidate
                break
        if header is None:
            raise SourceFormatError("the CSV has no header row")
        columns = {cell.strip().lstrip("\ufeff").casefold(): i for i, cell in enumerate(header)}
        mapping, negate = _feed_mapping(spec)
        positions = _csv_positions(mapping, columns, header)
        collector = _Collector(default_currency=spec.currency, base=base)
        for row in reader:
            row_number += 1
            if not any(cell.strip() for cell in row):
                continue  # blank lines between blocks are common in exported sheets
            index = collector.count()
            where = f"row {row_number}"
            extra = [cell for cell in row[len(header) :] if cell.strip()]
            if extra:
                collector.skip(
                    index, where, f"{len(row)} cells, the header has {len(header)} (quoting?)"
                )
                continue
            raw = _Raw(negate_available=negate)
            for name, column in positions.items():
                cell = row[column].strip() if column < len(row) else ""
                raw.values[name] = cell or None
            collector.add(index, where, raw)
    except csv.Error as error:
        raise SourceFormatError(
            f"the CSV cannot be read at line {reader.line_num}: {error}"
        ) from None
    return collector.result(FORMAT_CSV)


def _feed_mapping(spec: SourceSpec) -> tuple[dict[str, str], bool]:
    """The mapping, and whether `available` reads a "sold" column: `"available": "!Verkocht"`
    inverts it, because Dutch stock exports say whether a car is sold, not whether it is for
    sale."""
    mapping = dict(spec.mapping)
    column = mapping.get("available", "")
    negate = column.startswith("!")
    if negate:
        mapping["available"] = column[1:].strip()
    return mapping, negate


def _csv_positions(
    mapping: dict[str, str], columns: dict[str, int], header: list[str]
) -> dict[str, int]:
    """Each item field's column: the mapped one (which must exist), else one of the same name."""
    shown = ", ".join(repr(c.strip()) for c in header[:30])
    positions: dict[str, int] = {}
    for name in ITEM_FIELDS:
        mapped = mapping.get(name)
        if mapped is not None:
            if mapped.strip().casefold() not in columns:
                raise SourceFormatError(
                    f"the CSV has no column {mapped!r} (mapped to {name}); columns: {shown}"
                )
            positions[name] = columns[mapped.strip().casefold()]
        elif name in columns:
            positions[name] = columns[name]
    if "make" not in positions:
        raise SourceFormatError(
            f"the CSV has no make column (name one in the mapping); columns: {shown}"
        )
    return positions


def _sniff_delimiter(text: str) -> str:
    """The delimiter the header row uses most (outside quotes): feeds put one record per line,
    and the header is the line least likely to hold commas in prices or text."""
    first = next((line for line in text[:65536].splitlines() if line.strip()), "")
    unquoted = re.sub(r'"[^"]*"', "", first)
    counts = {d: unquoted.count(d) for d in CSV_DELIMITERS}
    best = max(CSV_DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","
