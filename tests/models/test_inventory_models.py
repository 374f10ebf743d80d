"""The inventory contracts: fuel and transmission normalisers, stable keys, content hashes, the
reference filter, and what SourceSpec / ListingSelectors refuse (models/inventory.py and
models/knowledge_sources.py)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from models.inventory import (
    MAX_KEY_LENGTH,
    Fuel,
    IngestDiff,
    InventoryItem,
    InventoryQuery,
    NewInventoryItem,
    Transmission,
    item_key,
    normalize_fuel,
    normalize_transmission,
    query_from_fields,
    relaxations,
    same_text,
)
from models.knowledge_sources import (
    DEFAULT_EVERY_MINUTES,
    ListingSelectors,
    SourceKind,
    SourceSpec,
)


@pytest.mark.parametrize(
    ("text", "fuel"),
    [
        ("Diesel", Fuel.DIESEL),
        ("https://schema.org/Diesel", Fuel.DIESEL),
        ("2.0 TDI", Fuel.DIESEL),
        ("Benzine", Fuel.PETROL),
        ("Benzin", Fuel.PETROL),
        ("Gasoline", Fuel.PETROL),
        ("Hybride", Fuel.HYBRID),
        ("Mild Hybrid", Fuel.HYBRID),
        ("Plug-in hybride", Fuel.PLUGIN_HYBRID),
        ("PHEV", Fuel.PLUGIN_HYBRID),
        ("Plug in Hybrid", Fuel.PLUGIN_HYBRID),
        ("Elektrisch", Fuel.ELECTRIC),
        ("Electric", Fuel.ELECTRIC),
        ("LPG", Fuel.LPG),
        ("Aardgas", Fuel.CNG),
        ("Waterstof", Fuel.HYDROGEN),
        ("Kerosine", Fuel.OTHER),
        ("", None),
        ("   ", None),
        (None, None),
    ],
)
def test_normalize_fuel(text: str | None, fuel: Fuel | None) -> None:
    assert normalize_fuel(text) is fuel


@pytest.mark.parametrize(
    ("text", "transmission"),
    [
        ("Automaat", Transmission.AUTOMATIC),
        ("Automatic", Transmission.AUTOMATIC),
        ("DSG", Transmission.AUTOMATIC),
        ("CVT", Transmission.AUTOMATIC),
        ("Automatik", Transmission.AUTOMATIC),
        ("Handgeschakeld", Transmission.MANUAL),
        ("6-speed manual", Transmission.MANUAL),
        ("Schaltgetriebe", Transmission.MANUAL),
        ("four wheels", None),
        ("", None),
        (None, None),
    ],
)
def test_normalize_transmission(text: str | None, transmission: Transmission | None) -> None:
    assert normalize_transmission(text) is transmission


def test_dutch_hybrid_notation_is_hybrid() -> None:
    assert normalize_fuel("Hybride (Benzine/Elektrisch)") is Fuel.HYBRID
    assert normalize_fuel("Benzine/Elektrisch") is Fuel.HYBRID


def test_same_text_ignores_case_and_accents() -> None:
    assert same_text("Škoda", "skoda")
    assert same_text(" Citroën ", "CITROEN")
    assert not same_text("Golf", "Polo")
    assert not same_text(None, "Golf")


def new(**fields: Any) -> NewInventoryItem:
    return NewInventoryItem(**{"make": "Volkswagen", "model": "Golf", **fields})


def test_item_key_prefers_the_source_id_then_the_url_then_a_hash() -> None:
    assert item_key(new(key="  VD-1 ", url="https://d.example/1")) == "VD-1"
    assert item_key(new(key="  ", url="https://d.example/1")) == "https://d.example/1"
    hashed = item_key(new(year=2019, mileage=85_000, colour="Grijs"))
    assert hashed.startswith("h:") and len(hashed) == 26
    # The hash ignores case and accents, and what may change without it being another car.
    same_car = new(make="VOLKSWAGEN", model="golf", year=2019, mileage=85_000, colour="grijs")
    assert item_key(same_car) == hashed
    assert item_key(new(year=2019, mileage=85_000, colour="Grijs", price=Decimal(1))) == hashed
    assert item_key(new(year=2019, mileage=85_001, colour="Grijs")) != hashed


def test_long_urls_keep_distinct_keys() -> None:
    url = "https://dealer.example/occasions/" + "volkswagen-golf-" * 12
    first, second = new(url=url + "?id=1"), new(url=url + "?id=2")
    assert item_key(first) != item_key(second)
    assert len(item_key(first)) <= MAX_KEY_LENGTH


def test_keyed_normalises_fuel_and_transmission() -> None:
    item = new(fuel="Diesel", transmission="Automaat", url="https://d.example/1").keyed()
    assert (item.key, item.fuel, item.transmission) == (
        "https://d.example/1",
        Fuel.DIESEL,
        Transmission.AUTOMATIC,
    )
    assert item.title() == "Volkswagen Golf"
    full = new(key="k", year=2019, variant="2.0 TDI", price=Decimal("18950"), mileage=9).keyed()
    assert full.title() == "2019 Volkswagen Golf 2.0 TDI"
    assert full.describe() == "2019 Volkswagen Golf 2.0 TDI, 9 km, EUR 18950.00"


def test_content_hash_changes_with_what_a_lead_is_told() -> None:
    item = new(key="k", price=Decimal("18950")).keyed()
    assert item.content_hash() == new(key="k", price=Decimal("18950.00")).keyed().content_hash()
    assert item.content_hash() != new(key="k", price=Decimal("17950")).keyed().content_hash()
    assert item.content_hash() != new(key="k", price=18950, available=False).keyed().content_hash()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("make", "", "at least 1 character"),
        ("year", 1899, "greater than or equal to 1900"),
        ("year", 2101, "less than or equal to 2100"),
        ("price", Decimal("-1"), "greater than or equal to 0"),
        ("price", Decimal("1.001"), "decimal places"),
        ("price", Decimal("12345678901.5"), "digits"),
        ("currency", "eur", "should match pattern"),
        ("mileage", -1, "greater than or equal to 0"),
        ("url", "ftp://d.example/1", "must be an http"),
        ("image_url", "/img/1.jpg", "must be an http"),
        ("colour", "x" * 81, "at most 80 characters"),
        ("seats", 5, "Extra inputs are not permitted"),
    ],
)
def test_inventory_item_refuses(field: str, value: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        InventoryItem(**{"key": "k", "make": "Opel", field: value})


def test_inventory_item_is_frozen_and_strips_text() -> None:
    item = InventoryItem(key=" k ", make=" Opel ", model="Astra ")
    assert (item.key, item.make, item.model) == ("k", "Opel", "Astra")
    with pytest.raises(ValidationError, match="frozen"):
        item.make = "Fiat"  # type: ignore[misc]


def test_new_item_refuses_a_bad_url_when_keyed() -> None:
    # The API's model takes the URL as text; the item it becomes checks it.
    with pytest.raises(ValidationError, match="must be an http"):
        new(url="javascript:alert(1)").keyed()


def test_query_matches_as_the_reference_filter() -> None:
    golf = new(key="1", fuel="diesel", price=Decimal("18950"), year=2019, mileage=96_000).keyed()
    sold = new(key="2", fuel="diesel", price=Decimal("15950"), available=False).keyed()
    assert InventoryQuery(make="volkswagen", model="GOLF", fuel="Diesel").matches(golf)
    assert InventoryQuery(max_price=Decimal(25_000), min_year=2018).matches(golf)
    assert not InventoryQuery(max_price=Decimal(18_000)).matches(golf)
    assert not InventoryQuery(min_price=Decimal(19_000)).matches(golf)
    assert not InventoryQuery(max_mileage=90_000).matches(golf)
    assert not InventoryQuery(transmission="automatic").matches(golf)
    assert not InventoryQuery(fuel="petrol").matches(golf)
    assert not InventoryQuery().matches(sold)
    assert InventoryQuery(available_only=False).matches(sold)
    # An unknown price never matches a price filter.
    assert not InventoryQuery(max_price=Decimal(99_999)).matches(new(key="3").keyed())
    assert InventoryQuery(fuel="TDI").fuel is Fuel.DIESEL
    assert InventoryQuery(max_mileage=1).structured() and not InventoryQuery(text="x").structured()


def test_query_refuses_a_reversed_price_range() -> None:
    with pytest.raises(ValidationError, match="min_price is above max_price"):
        InventoryQuery(min_price=Decimal(20_000), max_price=Decimal(10_000))
    with pytest.raises(ValidationError, match="less than or equal to 50"):
        InventoryQuery(limit=51)


def test_relaxations_give_up_details_first_and_the_make_last() -> None:
    wish = InventoryQuery(make="Volkswagen", model="Golf", fuel="diesel", max_price=Decimal(25_000))
    steps = relaxations(wish)
    assert [dropped for dropped, _ in steps] == [
        ("max_price",),
        ("fuel",),
        ("model",),
        ("make",),
        ("max_price", "fuel"),
        ("max_price", "fuel", "model"),
    ]
    # Giving up the budget alone keeps it as a floor: the nearest dearer cars come first.
    over_budget = steps[0][1]
    assert (over_budget.max_price, over_budget.min_price) == (None, Decimal(25_000))
    assert steps[-1][1] == InventoryQuery(make="Volkswagen")
    assert relaxations(InventoryQuery(make="Fiat")) == []


def test_query_from_a_leads_fields() -> None:
    fields: dict[str, str | int | float | bool] = {
        "make": "Volkswagen",
        "model": "Golf",
        "fuel_type": "diesel",
        "budget": "€25.000",
        "year": "2018",
        "max_mileage": "100.000 km",
    }
    assert query_from_fields(fields, limit=5) == InventoryQuery(
        make="Volkswagen",
        model="Golf",
        fuel=Fuel.DIESEL,
        max_price=Decimal(25_000),
        min_year=2018,
        max_mileage=100_000,
        limit=5,
    )
    # No car wish at all, an unknown fuel, out-of-range numbers: nothing to search for.
    assert query_from_fields({"name": "Piet", "make": "  "}) is None
    assert query_from_fields({"fuel_type": "kerosene"}) is None
    assert query_from_fields({"year": 3000, "budget": 0, "max_mileage": True}) is None


def test_a_budget_in_thousands() -> None:
    wish = query_from_fields({"make": "Volkswagen", "budget": "25k"})
    assert wish is not None and wish.max_price == Decimal(25_000)


def test_ingest_diff_summary() -> None:
    diff = IngestDiff(received=500, added=3, updated=2, removed=1, unchanged=495)
    assert diff.summary() == "500 received: 3 added, 2 updated, 1 removed, 495 unchanged"


# --- sources ---------------------------------------------------------------------------------

URL = "https://dealer.example/occasions"


def test_source_spec_defaults() -> None:
    spec = SourceSpec(name=" Occasions ", kind="listing_page", url=URL)
    # every_minutes None: the deployment's default applies.
    assert (spec.name, spec.kind, spec.every_minutes, spec.paused, spec.currency) == (
        "Occasions",
        SourceKind.LISTING_PAGE,
        None,
        False,
        "EUR",
    )
    every = SourceSpec(name="x", kind="csv_feed", url=URL, every_minutes=DEFAULT_EVERY_MINUTES)
    assert every.every_minutes == 10


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"url": "ftp://dealer.example/feed.csv"}, "must be an http"),
        ({"url": "dealer.example"}, "must be an http"),
        ({"every_minutes": 0}, "greater than or equal to 1"),
        ({"every_minutes": 7 * 24 * 60 + 1}, "less than or equal to 10080"),
        ({"mapping": {"brand": "Merk"}}, r"unknown item fields \['brand'\]"),
        ({"selectors": {"item": ".car", "fields": {"make": "b"}}}, "for kind 'listing_page'"),
        ({"items_path": "data"}, "items_path is for kind 'json_feed'"),
        ({"currency": "euro"}, "should match pattern"),
        ({"kind": "xml_feed"}, "listing_page"),
        ({"colour": "red"}, "Extra inputs are not permitted"),
    ],
)
def test_source_spec_refuses(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SourceSpec(**{"name": "Feed", "kind": "csv_feed", "url": URL, **fields})


def test_delimiter_is_for_csv_feeds() -> None:
    assert SourceSpec(name="Feed", kind="csv_feed", url=URL, delimiter=";").delimiter == ";"
    with pytest.raises(ValidationError, match="delimiter is for kind 'csv_feed'"):
        SourceSpec(name="Feed", kind="json_feed", url=URL, delimiter=";")


def test_a_tab_delimiter_is_kept() -> None:
    assert SourceSpec(name="Feed", kind="csv_feed", url=URL, delimiter="\t").delimiter == "\t"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"model": ".model"}, "a selector for 'make' is required"),
        ({"make": ".make", "seats": ".seats"}, r"unknown item fields \['seats'\]"),
        ({"make": "   "}, "selector of 'make' must be 1-300 characters"),
        ({"make": "x" * 301}, "selector of 'make' must be 1-300 characters"),
        ({}, "at least 1 item"),
    ],
)
def test_listing_selectors_refuse(fields: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ListingSelectors(item=".car", fields=fields)


def test_listing_selectors_need_an_item_selector() -> None:
    with pytest.raises(ValidationError, match="at least 1 character"):
        ListingSelectors(item="", fields={"make": ".make"})
    ok = ListingSelectors(item="article.car", fields={"make": ".make", "url": "a@href"})
    spec = SourceSpec(name="Page", kind="listing_page", url=URL, selectors=ok)
    assert spec.selectors == ok
