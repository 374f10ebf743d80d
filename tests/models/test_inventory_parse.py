"""parse_source on realistic fixture documents (tests/fixtures/inventory/), on every bad input
path, and on the fake dealer site's four renderings of one stock served over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from models.inventory import Fuel, Transmission
from models.inventory_parse import (
    MAX_BODY_BYTES,
    MAX_ITEMS,
    ParsedInventory,
    SourceFormatError,
    parse_available,
    parse_mileage,
    parse_price,
    parse_source,
    parse_year,
)
from models.knowledge_sources import ListingSelectors, SourceKind, SourceSpec
from tests.fakes.dealer import FakeDealerSite, make_inventory

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "inventory"
HTML = "text/html; charset=utf-8"


def spec(
    kind: SourceKind | str, url: str = "https://dealer.example/occasions", **more: Any
) -> SourceSpec:
    return SourceSpec(name="test", kind=SourceKind(kind), url=url, **more)


def parse(
    source: SourceSpec, body: bytes | str, *, content_type: str = "", base: str | None = None
) -> ParsedInventory:
    data = body.encode() if isinstance(body, str) else body
    return parse_source(source, data, content_type=content_type, base_url=base or source.url)


def refused(source: SourceSpec, body: bytes | str, content_type: str = "") -> str:
    with pytest.raises(SourceFormatError) as caught:
        parse(source, body, content_type=content_type)
    return str(caught.value)


def reasons(parsed: ParsedInventory) -> list[str]:
    return [str(entry) for entry in parsed.skipped]


def by_key(parsed: ParsedInventory) -> dict[str, Any]:
    return {item.key: item for item in parsed.items}


# --- values as dealers write them ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "amount", "currency"),
    [
        ("€ 24.950,-", "24950", "EUR"),
        ("€24,950", "24950", "EUR"),
        ("24.950,00", "24950", None),
        ("EUR 18 950", "18950", "EUR"),
        ("18\u00a0950 €", "18950", "EUR"),
        ("$12,500.50", "12500.50", "USD"),
        ("£9,995", "9995", "GBP"),
        ("€ 24.950,- incl. BTW", "24950", "EUR"),
        ("vanaf € 19.950", "19950", "EUR"),
        ("24,95", "24.95", None),
        ("1.234.567", "1234567", None),
        ("24950.499", "24950.50", None),
        (24950, "24950", None),
        (24950.0, "24950", None),
    ],
)
def test_prices_in_local_formats(text: Any, amount: str, currency: str | None) -> None:
    assert parse_price(text) == (Decimal(amount), currency)


def test_a_zero_price_is_no_price() -> None:
    # Feeds write 0 for "price on request"; the agent must never quote a car at nothing.
    assert parse_price("0") == (None, None)
    assert parse_price("€ 0,-") == (None, "EUR")
    assert parse_price(None) == (None, None)


@pytest.mark.parametrize(
    "text", ["call us", "Prijs op aanvraag", "12.34.5", "1,2,3", "€", "-5", True, [1], "NaN"]
)
def test_prices_that_are_not_numbers(text: Any) -> None:
    with pytest.raises(ValueError, match=r"price .* is not a number"):
        parse_price(text)


@pytest.mark.parametrize(
    ("text", "km"),
    [
        ("85.000 km", 85000),
        ("85,000 km", 85000),
        ("85 000 km", 85000),
        ("ca. 85.000 km NAP", 85000),
        ("52.000 mi", 83686),
        ("31,200 miles", 50212),
        (120500, 120500),
        ("0 km", 0),
    ],
)
def test_mileages(text: Any, km: int) -> None:
    assert parse_mileage(text) == km


def test_mileage_unit_given_apart() -> None:
    assert parse_mileage(41000, unit="SMI") == 65983
    assert parse_mileage("41000", unit="KMT") == 41000


@pytest.mark.parametrize("text", ["veel", "-3 km", True, {"value": 1}])
def test_mileages_that_are_not_numbers(text: Any) -> None:
    with pytest.raises(ValueError, match="mileage"):
        parse_mileage(text)


@pytest.mark.parametrize(
    ("text", "year"),
    [("2019", 2019), ("03/2019", 2019), ("2019-03-01", 2019), ("11-2020", 2020), (2018, 2018)],
)
def test_years(text: Any, year: int) -> None:
    assert parse_year(text) == year


@pytest.mark.parametrize("text", ["twee duizend", "20190", 1850, "1850", "19", True])
def test_years_that_are_not_years(text: Any) -> None:
    with pytest.raises(ValueError, match=r"year .* is not (a year|between 1900 and 2100)"):
        parse_year(text)


@pytest.mark.parametrize(
    ("text", "available"),
    [
        ("yes", True),
        ("Ja", True),
        ("1", True),
        (1, True),
        ("true", True),
        ("https://schema.org/InStock", True),
        ("no", False),
        ("nee", False),
        ("0", False),
        ("false", False),
        ("Sold", False),
        ("Verkocht", False),
        ("https://schema.org/SoldOut", False),
        ("OutOfStock", False),
        ("Gereserveerd", False),
        ("", None),
    ],
)
def test_availability_words(text: Any, available: bool | None) -> None:
    assert parse_available(text) is available


def test_availability_that_is_not_yes_or_no() -> None:
    with pytest.raises(ValueError, match="available 'misschien' is not yes or no"):
        parse_available("misschien")


# --- listing pages: JSON-LD ------------------------------------------------------------------


def test_json_ld_item_list() -> None:
    base = "https://www.autohaus-berger.example/occasions"
    parsed = parse(
        spec("listing_page", base),
        (FIXTURES / "itemlist_cars.html").read_bytes(),
        content_type=HTML,
    )
    assert parsed.format == "json-ld"
    assert parsed.keys() == ("AB-1001", "AB-1002", "AB-1005")
    items = by_key(parsed)
    golf = items["AB-1001"]
    # The later entry of a key wins, at the place of the first.
    assert golf.price == Decimal("17950")
    assert (golf.make, golf.model, golf.variant, golf.year) == (
        "Volkswagen",
        "Golf",
        "2.0 TDI Highline",
        2019,
    )
    assert (golf.fuel, golf.transmission, golf.mileage, golf.colour) == (
        Fuel.DIESEL,
        Transmission.MANUAL,
        96412,
        "Grijs",
    )
    assert golf.url == "https://www.autohaus-berger.example/occasions/ab-1001-volkswagen-golf"
    assert golf.available
    yaris = items["AB-1002"]
    assert yaris.model == "Yaris"  # from a ProductModel object
    assert yaris.variant == "1.5 Hybrid Dynamic"  # the name without year, make and model
    assert yaris.year == 2021  # productionDate
    assert yaris.fuel == Fuel.HYBRID  # vehicleEngine.fuelType
    assert yaris.transmission == Transmission.AUTOMATIC  # a schema.org-style URL
    assert yaris.mileage == 50292  # 31,250 miles
    assert yaris.price == Decimal("21450")  # priceSpecification
    assert yaris.image_url == "https://cdn.autohaus-berger.example/ab-1002.jpg"  # ImageObject
    assert not yaris.available  # SoldOut
    niro = items["AB-1005"]
    # No model: the word after the make in the name.
    assert (niro.model, niro.variant) == ("Niro", "EV 64 kWh DynamicPlusLine")
    assert niro.price == Decimal("27495")
    assert niro.currency == "EUR"  # from the € in the price
    assert niro.year == 2022
    assert niro.available  # LimitedAvailability is still for sale
    assert reasons(parsed) == [
        "JSON-LD item 1: key 'AB-1001' again at JSON-LD item 6; the later entry is kept",
        "JSON-LD item 3: price 'Prijs op aanvraag' is not a number",
        "JSON-LD item 4: no make",
    ]


def test_json_ld_graph_offers_and_a_broken_block() -> None:
    source = spec("listing_page", "https://northside.example/used/", currency="GBP")
    parsed = parse(
        source, (FIXTURES / "graph_products.html").read_bytes(), content_type="text/html"
    )
    assert parsed.keys() == ("NS-778", "NS-779", "JMZDE14L201234567")
    items = by_key(parsed)
    focus = items["NS-778"]
    # The first offer of the list has no price; the one with a price is the one told.
    assert (focus.price, focus.currency) == (Decimal("12995"), "GBP")
    assert focus.url == "https://northside.example/used/ford-focus-1"  # from the offer
    assert focus.year == 2020
    octavia = items["NS-779"]
    assert octavia.make == "Škoda"  # manufacturer
    assert octavia.price == Decimal("15495")  # AggregateOffer lowPrice
    mazda = items["JMZDE14L201234567"]  # an Offer wrapping itemOffered; the VIN is the key
    assert (mazda.make, mazda.model, mazda.variant) == ("Mazda", "2", "1.5 SkyActiv-G Sport Nav")
    assert mazda.transmission == Transmission.MANUAL  # a QualitativeValue
    assert mazda.mileage == 65983
    assert mazda.url == "https://northside.example/used/mazda-2"
    assert not mazda.available  # OutOfStock
    # The broken third block is not an entry: the page still reads.
    assert parsed.skipped == ()


def test_json_ld_alone_at_top_level_array_and_relative_links() -> None:
    page = """<html><head><script type="application/ld+json">
    [{"@type": "Car", "brand": "Fiat", "model": "500", "name": "Fiat 500 1.2 Lounge",
      "url": "auto/17", "image": "../img/17.jpg",
      "offers": {"@type": "Offer", "price": 8950, "priceCurrency": "EUR"}},
     {"@type": "Car", "brand": "Fiat", "model": "Panda", "url": "javascript:void(0)",
      "image": "data:image/gif;base64,R0lGOD"}]
    </script></head><body></body></html>"""
    parsed = parse(spec("listing_page"), page, base="https://dealer.example/nl/voorraad/")
    first, second = parsed.items
    assert first.url == "https://dealer.example/nl/voorraad/auto/17"
    assert first.image_url == "https://dealer.example/nl/img/17.jpg"
    assert first.key == first.url  # no id: the listing URL is the key
    # A non-http link is dropped, not the car; the key falls back to the facts' hash.
    assert (second.url, second.image_url) == ("", "")
    assert second.key.startswith("h:")


def test_relative_links_follow_the_base_tag() -> None:
    page = """<html><head><base href="https://cdn.dealer.example/site/">
    <script type="application/ld+json">{"@type": "Car", "brand": "Opel", "model": "Astra",
      "url": "occasions/9", "image": "img/9.jpg"}</script></head></html>"""
    (item,) = parse(spec("listing_page"), page, base="https://dealer.example/occasions").items
    assert item.url == "https://cdn.dealer.example/site/occasions/9"
    assert item.image_url == "https://cdn.dealer.example/site/img/9.jpg"


def test_json_ld_invalid_values_are_skipped_with_the_field_named() -> None:
    long_model = "X" * 130
    page = f"""<script type="application/ld+json">
    {{"@type": "ItemList", "itemListElement": [
      {{"@type": "ListItem", "item": {{"@type": "Car", "sku": "1", "brand": "Audi",
        "model": "{long_model}"}}}},
      {{"@type": "ListItem", "item": {{"@type": "Car", "sku": "2", "brand": "Audi",
        "model": "A4", "vehicleModelDate": "1850"}}}},
      {{"@type": "ListItem", "item": {{"@type": "Car", "sku": "3", "brand": "Audi",
        "model": "A4", "offers": {{"price": 10, "priceCurrency": "euro?"}}}}}},
      {{"@type": "ListItem", "item": {{"@type": "Car", "sku": "4", "brand": "Audi",
        "model": "A6"}}}}
    ]}}</script>"""
    parsed = parse(spec("listing_page"), page)
    assert parsed.keys() == ("4",)
    found = reasons(parsed)
    assert found[0].startswith("JSON-LD item 1: model 'XXXX") and "120 characters" in found[0]
    assert found[1] == "JSON-LD item 2: year '1850' is not between 1900 and 2100"
    assert found[2].startswith("JSON-LD item 3: currency 'EURO?'")


# --- listing pages: CSS selectors ------------------------------------------------------------

GARAGE_SELECTORS = ListingSelectors(
    item="div.auto",
    fields={
        "key": "@data-id",
        "make": ".merk",
        "model": ".type",
        "variant": ".uitvoering",
        "year": ".bouwjaar",
        "mileage": ".km",
        "fuel": ".brandstof",
        "transmission": ".bak",
        "colour": ".kleur",
        "price": ".prijs",
        "url": "a.auto-link@href",
        "image_url": "img.foto@data-src",
        "available": ".status",
    },
)


def test_selectors_page_in_windows_1252() -> None:
    base = "https://www.garagedevries.example/voorraad/"
    source = spec("listing_page", base, selectors=GARAGE_SELECTORS)
    # No charset in the header: the page's <meta> says windows-1252 (Citroën, €).
    parsed = parse(
        source, (FIXTURES / "selectors_page.html").read_bytes(), content_type="text/html"
    )
    assert parsed.format == "selectors"
    assert parsed.keys() == ("GDV-31", "GDV-32", "GDV-35")
    citroen, volvo, zoe = parsed.items
    assert (citroen.make, citroen.model, citroen.variant) == ("Citroën", "C3", "1.2 PureTech Feel")
    assert (citroen.year, citroen.price, citroen.mileage) == (2018, Decimal("10950"), 67250)
    assert citroen.url == "https://www.garagedevries.example/voorraad/auto/gdv-31/citroen-c3"
    # data-src, not the lazy-loading placeholder in src.
    assert citroen.image_url == "https://www.garagedevries.example/fotos/gdv-31.jpg"
    assert (citroen.fuel, citroen.transmission, citroen.colour) == (
        Fuel.PETROL,
        Transmission.MANUAL,
        "Rood",
    )
    assert volvo.mileage == 142266  # 88,400 miles
    assert not volvo.available  # Verkocht
    assert volvo.url == "https://www.garagedevries.example/voorraad/auto/gdv-32/volvo-v60"
    assert (zoe.price, zoe.year, zoe.colour, zoe.image_url) == (Decimal("12950"), 2020, "", "")
    assert reasons(parsed) == [
        "item 3: price 'Prijs op aanvraag' is not a number",
        "item 4: no make",
    ]


def test_selectors_win_over_json_ld() -> None:
    page = """<html><head><script type="application/ld+json">
    {"@type": "Car", "brand": "Tesla", "model": "Model 3", "sku": "ld"}</script></head>
    <body><div class="car" id="c1"><b>Opel</b><i>Corsa</i></div></body></html>"""
    selectors = ListingSelectors(item=".car", fields={"key": "@id", "make": "b", "model": "i"})
    parsed = parse(spec("listing_page", selectors=selectors), page)
    assert parsed.format == "selectors"
    assert [(i.key, i.make, i.model) for i in parsed.items] == [("c1", "Opel", "Corsa")]


# --- JSON feeds -------------------------------------------------------------------------------

JANSEN_MAPPING = {
    "key": "stockId",
    "make": "vehicle.make",
    "model": "vehicle.model",
    "variant": "vehicle.trim",
    "year": "registration.firstDate",
    "price": "pricing.price",
    "mileage": "odometer",
    "transmission": "gearbox",
    "url": "links.detail",
    "image_url": "links.images.0",
    "available": "status",
}


def test_json_feed_nested_and_found_without_items_path() -> None:
    source = spec("json_feed", "https://www.jansen.example/feed.json", mapping=JANSEN_MAPPING)
    parsed = parse(
        source, (FIXTURES / "feed_nested.json").read_bytes(), content_type="application/json"
    )
    assert parsed.format == "json"
    assert parsed.keys() == ("J-501", "J-502", "J-505")
    golf, mercedes, kona = parsed.items
    assert (golf.price, golf.currency, golf.year) == (Decimal("23950"), "EUR", 2019)
    assert golf.image_url == "https://www.jansen.example/img/j-501-1.jpg"
    assert golf.colour == "Grijs metallic"  # not mapped: the key of the same name
    assert mercedes.mileage == 50694  # {"value": 31500, "unit": "mi"}
    assert mercedes.fuel == Fuel.PLUGIN_HYBRID
    assert mercedes.url == "https://www.jansen.example/aanbod/j-502"  # relative, resolved
    assert not mercedes.available
    assert (kona.price, kona.mileage, kona.transmission) == (
        Decimal("23495"),
        54000,
        Transmission.AUTOMATIC,
    )
    assert reasons(parsed) == [
        "item 1: key 'J-501' again at item 7; the later entry is kept",
        "item 3: not an object but a string",
        "item 4: no make",
        "item 6: price 'twaalfduizend' is not a number",
    ]


def test_json_feed_items_path_and_a_plain_list() -> None:
    cars = [{"make": "Volvo", "model": "XC40", "price": "€ 31.950,-", "key": 7}]
    nested = {"result": {"page": [{"ignored": True}], "stock": cars}}
    source = spec("json_feed", items_path="result.stock")
    assert [(i.key, i.price) for i in parse(source, json.dumps(nested)).items] == [
        ("7", Decimal("31950"))
    ]
    plain = parse(spec("json_feed"), json.dumps(cars))
    assert plain.keys() == ("7",)
    # Keys match case-insensitively when no exact key exists.
    shouting = parse(spec("json_feed"), json.dumps([{"MAKE": "Volvo", "Model": "V90"}]))
    assert [(i.make, i.model) for i in shouting.items] == [("Volvo", "V90")]


def test_hostile_nesting_is_a_skipped_entry_not_a_crash() -> None:
    deep = "[" * 900 + '"Opel"' + "]" * 900
    feed = (
        f'[{{"make": {deep}}}, {{"make": {{"name": true}}}}, {{"make": "Opel", "price": {deep}}}]'
    )
    assert refused(spec("json_feed"), feed) == (
        "none of the 3 entries is an item: item 1: make '[[[...]]]' is not text; "
        "item 2: make 'True' is not text; item 3: price '[[[...]]]' is not a number"
    )


def test_json_feed_in_a_declared_charset() -> None:
    body = '[{"make": "Citroën", "price": "€ 9.950,-"}]'.encode("cp1252")
    (item,) = parse(spec("json_feed"), body, content_type="application/json; charset=cp1252").items
    assert (item.make, item.price) == ("Citroën", Decimal("9950"))


def test_a_source_whose_every_entry_fails_is_refused() -> None:
    # A new price notation must not read as "the dealer sold everything".
    rows = "make;price\nOpel;op aanvraag\nFiat;bel ons\n"
    assert refused(spec("csv_feed"), rows) == (
        "none of the 2 entries is an item: row 2: price 'op aanvraag' is not a number; "
        "row 3: price 'bel ons' is not a number"
    )
    cards = "<div class='car'><i>Astra</i></div>"
    selectors = ListingSelectors(item=".car", fields={"make": "b", "model": "i"})
    assert refused(spec("listing_page", selectors=selectors), cards) == (
        "none of the 1 entries is an item: item 1: no make"
    )


def test_json_feed_empty_list_is_an_empty_inventory() -> None:
    # A feed that says "nothing in stock" explicitly is believed (unlike an empty page).
    parsed = parse(spec("json_feed"), '{"vehicles": []}')
    assert parsed.items == () and parsed.skipped == ()
    assert parsed.summary() == "0 items read as json, 0 skipped"


# --- CSV feeds --------------------------------------------------------------------------------

DUTCH_MAPPING = {
    "key": "Voorraadnr",
    "make": "Merk",
    "model": "Model",
    "variant": "Uitvoering",
    "year": "Bouwjaar",
    "price": "Prijs",
    "fuel": "Brandstof",
    "transmission": "Transmissie",
    "mileage": "KM-stand",
    "colour": "Kleur",
    "available": "Beschikbaar",
    "url": "Link",
}


def test_dutch_csv_with_semicolons_in_windows_1252() -> None:
    source = spec(
        "csv_feed", "https://www.autodealer.example/occasions/feed.csv", mapping=DUTCH_MAPPING
    )
    parsed = parse(source, (FIXTURES / "dutch_feed.csv").read_bytes(), content_type="text/csv")
    assert parsed.format == "csv"
    assert parsed.keys() == ("1001", "1002", "1005")
    golf, skoda, prius = parsed.items
    assert (golf.price, golf.mileage, golf.fuel) == (Decimal("14950"), 142300, Fuel.DIESEL)
    assert golf.url == "https://www.autodealer.example/occasions/1001"
    assert skoda.make == "Škoda"  # cp1252
    assert (skoda.year, skoda.transmission) == (2020, Transmission.AUTOMATIC)  # 03/2020, DSG
    assert prius.fuel == Fuel.PLUGIN_HYBRID
    assert not prius.available  # Beschikbaar: nee
    # Rows as a spreadsheet numbers them: the header is row 1, the blank line is row 5.
    assert reasons(parsed) == [
        "row 4: price 'call us' is not a number",
        "row 6: no make",
        "row 8: year 'twee duizend' is not a year",
        "row 9: available 'misschien' is not yes or no",
    ]


def test_comma_csv_with_bom_quotes_and_same_name_columns() -> None:
    source = spec("csv_feed", "https://cars.example/feed.csv", currency="USD")
    parsed = parse(source, (FIXTURES / "comma_feed.csv").read_bytes(), content_type="text/csv")
    assert parsed.keys() == ("US-1", "US-2", "US-3", "US-5")
    subaru, honda, jeep, tesla = parsed.items
    assert subaru.variant == "2.5i, AWD, Premium"
    assert (subaru.price, subaru.currency, subaru.mileage) == (Decimal("24950"), "USD", 83686)
    assert honda.price == Decimal("18450")
    assert honda.transmission == Transmission.AUTOMATIC  # CVT
    assert jeep.variant == 'Unlimited Sahara "Freedom"'
    assert not jeep.available
    assert (tesla.url, tesla.image_url, tesla.fuel) == ("", "", Fuel.ELECTRIC)
    assert reasons(parsed) == ["row 5: 15 cells, the header has 13 (quoting?)"]


def test_csv_delimiters_given_and_sniffed() -> None:
    tabbed = "make\tmodel\tprice\nOpel\tAstra\t9950\n"
    assert [i.model for i in parse(spec("csv_feed"), tabbed).items] == ["Astra"]
    piped = "make|model\nOpel|Mokka\n"
    assert [i.model for i in parse(spec("csv_feed"), piped).items] == ["Mokka"]
    # Given explicitly, the delimiter is used even where another one is more frequent.
    given = 'make;model;variant\nOpel;Insignia;"1,5,T"\n'
    assert [i.variant for i in parse(spec("csv_feed", delimiter=";"), given).items] == ["1,5,T"]


def test_a_sold_column_maps_to_available_inverted() -> None:
    rows = "Merk;Verkocht\nOpel;ja\nFiat;nee\nKia;\n"
    csv_source = spec("csv_feed", mapping={"make": "Merk", "available": "!Verkocht"})
    assert [i.available for i in parse(csv_source, rows).items] == [False, True, True]
    feed = '[{"make": "Opel", "flags": {"sold": true}}, {"make": "Fiat", "flags": {"sold": 0}}]'
    json_source = spec("json_feed", mapping={"available": "!flags.sold"})
    assert [i.available for i in parse(json_source, feed).items] == [False, True]


def test_csv_in_utf16_from_excel() -> None:
    text = "make\tmodel\tcolour\r\nCitroën\tBerlingo\tBeige\r\n"
    parsed = parse(spec("csv_feed"), text.encode("utf-16"))
    assert [(i.make, i.colour) for i in parsed.items] == [("Citroën", "Beige")]


def test_csv_header_only_is_an_empty_inventory() -> None:
    assert parse(spec("csv_feed"), "make;model\n").items == ()


# --- documents that cannot be read ------------------------------------------------------------


@pytest.mark.parametrize("kind", list(SourceKind))
def test_too_large_or_empty(kind: SourceKind) -> None:
    assert "at most 20,971,520 are read" in refused(spec(kind), b" " * (MAX_BODY_BYTES + 1))
    assert refused(spec(kind), b"  \n ") == "the document is empty"


@pytest.mark.parametrize("kind", list(SourceKind))
def test_binary_documents(kind: SourceKind) -> None:
    message = refused(spec(kind), b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj")
    assert message.startswith("the document is binary data")


def test_listing_page_refusals() -> None:
    page = spec("listing_page")
    assert refused(page, "[]", "application/json") == "expected an HTML page, got application/json"
    assert refused(page, "just some words") == "the document is not an HTML page (no markup)"
    assert (
        refused(page, "<html><body><h1>Occasions</h1></body></html>")
        == "the page has no schema.org JSON-LD and the source has no selectors"
    )
    only_breadcrumbs = """<script type="application/ld+json">{"@type": "BreadcrumbList",
      "itemListElement": [{"@type": "ListItem", "item": {"@type": "WebPage", "name": "x"}}]}
      </script>"""
    assert refused(page, only_breadcrumbs) == (
        "the page's JSON-LD has no items: none describes a Car, Vehicle, Product or Offer"
    )
    broken = '<script type="application/ld+json">{"@type": "Car", </script>'
    assert refused(page, broken).startswith(
        "the page's JSON-LD has no items: JSON-LD block 1 is not valid JSON"
    )


def test_selector_refusals() -> None:
    page = "<html><body><div class='car'><b>Opel</b></div></body></html>"
    missing = spec(
        "listing_page", selectors=ListingSelectors(item=".vehicle", fields={"make": "b"})
    )
    assert refused(missing, page) == (
        "no element matches the item selector '.vehicle' (has the page changed?)"
    )
    bad_item = spec("listing_page", selectors=ListingSelectors(item="div[[", fields={"make": "b"}))
    assert refused(bad_item, page) == "the item selector 'div[[' is not valid CSS"
    bad_field = spec(
        "listing_page", selectors=ListingSelectors(item=".car", fields={"make": "b::x(@href"})
    )
    assert "the selector of 'make'" in refused(bad_field, page)


def test_json_feed_refusals() -> None:
    feed = spec("json_feed")
    assert refused(feed, '{"vehicles": [1, 2').startswith("the feed is not valid JSON")
    assert "it looks like an HTML page" in refused(feed, "<html><form>Log in</form></html>", HTML)
    assert refused(spec("json_feed", items_path="data.cars"), '{"data": {"vans": []}}') == (
        "items_path 'data.cars' not found: data has no 'cars' (keys: vans)"
    )
    assert refused(spec("json_feed", items_path="data"), '{"data": {"vans": []}}') == (
        "items_path 'data' is an object, not a list"
    )
    assert refused(feed, '{"dealer": "x", "total": 3}') == (
        "no list of items in the feed; set items_path (top-level keys: dealer, total)"
    )
    assert refused(feed, '"vehicles"') == "the feed is a string, not a list or an object"
    assert refused(feed, "[" * 100_000 + "]" * 100_000) == "the JSON is nested too deeply"


def test_too_many_entries() -> None:
    many = json.dumps([{"make": "Fiat"}] * (MAX_ITEMS + 1))
    assert (
        refused(spec("json_feed"), many) == "the feed has 20,001 entries; at most 20,000 are read"
    )
    rows = "make\n" + "Fiat\n" * (MAX_ITEMS + 1)
    assert refused(spec("csv_feed"), rows) == "more than 20,000 entries; at most that many are read"


def test_csv_feed_refusals() -> None:
    feed = spec("csv_feed")
    assert refused(feed, "merk;model\nOpel;Astra\n") == (
        "the CSV has no make column (name one in the mapping); columns: 'merk', 'model'"
    )
    mapped = spec("csv_feed", mapping={"make": "Merk", "price": "Prijs"})
    assert refused(mapped, "Merk;Vraagprijs\nOpel;9950\n") == (
        "the CSV has no column 'Prijs' (mapped to price); columns: 'Merk', 'Vraagprijs'"
    )
    # 0x81 is a byte neither UTF-8 nor Windows-1252 has.
    assert refused(feed, b"make;model\nOpel;Astra \x81\xc3\n") == (
        "the CSV is neither UTF-8 nor Windows-1252 text"
    )
    assert refused(feed, "<!DOCTYPE html><html>Sign in</html>", HTML) == (
        "expected CSV, got an HTML page (a login or error page?)"
    )
    assert refused(feed, '[{"make": "Opel"}]') == (
        "expected CSV, got JSON (is the source's kind json_feed?)"
    )
    assert refused(feed, "\n\n").startswith("the document is empty")


# --- the fake dealer site, over real HTTP -----------------------------------------------------


@pytest.fixture(scope="module")
def site() -> Iterator[FakeDealerSite]:
    with FakeDealerSite(make_inventory(500, seed=7)) as running:
        yield running


def fetch_and_parse(source: SourceSpec) -> ParsedInventory:
    response = httpx.get(source.url, timeout=30)
    response.raise_for_status()
    return parse_source(
        source,
        response.content,
        content_type=response.headers.get("content-type", ""),
        base_url=str(response.url),
    )


def test_the_json_and_csv_feeds_of_500_cars_parse_to_the_same_items(site: FakeDealerSite) -> None:
    from_json = fetch_and_parse(site.json_spec())
    from_csv = fetch_and_parse(site.csv_spec())
    assert len(from_json.items) == 500
    assert from_json.skipped == () and from_csv.skipped == ()
    assert set(from_json.keys()) == set(from_csv.keys()) == set(site.keys())
    assert from_csv.items == from_json.items


def test_both_overviews_parse_to_the_feed_items(site: FakeDealerSite) -> None:
    from_json = fetch_and_parse(site.json_spec())
    with_json_ld = fetch_and_parse(site.listing_spec())
    with_selectors = fetch_and_parse(site.plain_spec())
    assert (with_json_ld.format, with_selectors.format) == ("json-ld", "selectors")
    assert with_json_ld.items == from_json.items
    assert with_selectors.items == from_json.items


def test_the_example_car_is_on_the_site(site: FakeDealerSite) -> None:
    parsed = fetch_and_parse(site.listing_spec())
    golf = parsed.items[0]
    assert (golf.make, golf.model, golf.fuel) == ("Volkswagen", "Golf", Fuel.DIESEL)
    assert golf.price is not None and golf.price < 25_000
    assert golf.url.startswith(site.base_url) and golf.image_url.startswith(site.base_url)
    page = httpx.get(golf.url, timeout=30)
    assert page.status_code == 200 and "18.950" in page.text
    assert httpx.get(golf.image_url, timeout=30).headers["content-type"] == "image/jpeg"


def test_make_inventory_is_deterministic_and_realistic() -> None:
    assert make_inventory(50, seed=3) == make_inventory(50, seed=3)
    assert make_inventory(50, seed=3) != make_inventory(50, seed=4)
    cars = make_inventory(500, seed=7)
    assert len({c["id"] for c in cars}) == 500
    assert len({c["make"] for c in cars}) >= 10
    assert {c["fuel"] for c in cars} >= {"petrol", "diesel", "hybrid", "electric"}
    assert all(1_500 <= c["price"] <= 60_000 for c in cars)
    assert all(2013 <= c["year"] <= 2025 and 0 < c["mileage"] < 400_000 for c in cars)
    golfs = [c for c in cars if c["model"] == "Golf" and c["fuel"] == "diesel"]
    assert any(c["price"] < 25_000 for c in golfs)


def test_the_stock_changes_show_in_every_format() -> None:
    with FakeDealerSite(make_inventory(5, seed=1)) as site:
        first, second = site.keys()[:2]
        site.sell(first)
        site.remove_car(second)
        added = site.add_car(make="Kia", model="Ceed", price=15_950, fuel="hybrid")
        site.change_car(site.keys()[-2], price=9_999)
        for source in (site.listing_spec(), site.plain_spec(), site.json_spec(), site.csv_spec()):
            items = by_key(fetch_and_parse(source))
            assert second not in items and not items[first].available
            assert items[added["id"]].model == "Ceed"
            assert items[added["id"]].price == Decimal("15950")
            assert items[site.keys()[-2]].price == Decimal("9999")
        with pytest.raises(KeyError):
            site.remove_car("VD-99999")


def test_failures_broken_pages_and_recorded_requests() -> None:
    with FakeDealerSite(make_inventory(3, seed=2)) as site:
        site.fail_next(2)
        assert httpx.get(site.url("/feed.json"), timeout=30).status_code == 503
        assert httpx.get(site.url("/feed.csv"), timeout=30).status_code == 503
        assert httpx.get(site.url("/feed.json"), timeout=30).status_code == 200
        site.fail_next(1, status=500, path="/feed.csv")
        assert httpx.get(site.url("/occasions"), timeout=30).status_code == 200
        assert httpx.get(site.url("/feed.csv"), timeout=30).status_code == 500
        assert site.paths() == [
            "/feed.json",
            "/feed.csv",
            "/feed.json",
            "/occasions",
            "/feed.csv",
        ]
        for source, message in (
            (site.json_spec(), "the feed is not valid JSON"),
            (site.csv_spec(), "the document is binary data"),
            (site.listing_spec(), "the page has no schema.org JSON-LD"),
        ):
            path = source.url.removeprefix(site.base_url)
            site.serve_broken(path)
            with pytest.raises(SourceFormatError, match=message):
                fetch_and_parse(source)
            site.restore(path)
            assert len(fetch_and_parse(source).items) == 3
        site.serve("/feed.json", '{"vehicles": []}', content_type="application/json", status=200)
        assert fetch_and_parse(site.json_spec()).items == ()
        site.restore()
        assert httpx.get(site.url("/nope"), timeout=30).status_code == 404
