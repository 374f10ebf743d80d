"""Citing the inventory in a reply: when a turn looks a lead's wish up, and how a cited car,
its price and the wish itself are written.

Every writer uses these words — the offline templates, the `<inventory>` block a hosted model
reads, the scripted fake model of the tests — so a price is spelt one way per language ("€ 18.950"
in Dutch, "€18,950" in English, as dealers write them) and always in a form the reply guard's
amount reader (activities/llm/amounts.py) reads as money. The guard compares values, not
spellings, so a model writing "EUR 18950" instead is accepted just the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from models.agent import FieldValue, Perception
from models.common import Intent
from models.inventory import Fuel, InventoryItem, InventoryQuery

# The playbook fields that make up a wish (models.inventory.query_from_fields reads them).
WISH_FIELDS = frozenset({"make", "model", "fuel_type", "budget", "year", "max_mileage"})
# A lead asking about a car, its price or whether it is there: the inventory answers that.
INVENTORY_INTENTS = frozenset({Intent.PRODUCT_INQUIRY, Intent.PRICING})
MAX_CITED = 3

_CURRENCY_SIGNS = {"EUR": "€", "USD": "$", "GBP": "£"}

FUEL_NAMES: dict[str, dict[Fuel, str]] = {
    "nl": {
        Fuel.PETROL: "benzine",
        Fuel.DIESEL: "diesel",
        Fuel.HYBRID: "hybride",
        Fuel.PLUGIN_HYBRID: "plug-in hybride",
        Fuel.ELECTRIC: "elektrisch",
        Fuel.LPG: "lpg",
        Fuel.CNG: "aardgas",
        Fuel.HYDROGEN: "waterstof",
        Fuel.OTHER: "overig",
    },
    "en": {
        Fuel.PETROL: "petrol",
        Fuel.DIESEL: "diesel",
        Fuel.HYBRID: "hybrid",
        Fuel.PLUGIN_HYBRID: "plug-in hybrid",
        Fuel.ELECTRIC: "electric",
        Fuel.LPG: "LPG",
        Fuel.CNG: "CNG",
        Fuel.HYDROGEN: "hydrogen",
        Fuel.OTHER: "other fuel",
    },
}


def wants_inventory(perception: Perception | None) -> bool:
    """Whether this turn's reply should look the lead's wish up: they ask about a car, a price
    or availability, or they just told (part of) what they want."""
    if perception is None:
        return False
    intents = {perception.intent, *perception.secondary_intents}
    if intents & {Intent.COMPLAINT, Intent.HUMAN_REQUEST, Intent.NOT_INTERESTED}:
        return False
    if perception.fields.get("opt_out") is True:
        return False
    return bool(intents & INVENTORY_INTENTS) or bool(WISH_FIELDS & set(perception.fields))


def wish_fields(known: Mapping[str, FieldValue]) -> dict[str, FieldValue]:
    return {name: value for name, value in known.items() if name in WISH_FIELDS}


def _grouped(value: int, lang: str) -> str:
    text = f"{value:,}"
    return text.replace(",", ".") if lang == "nl" else text


def amount_text(amount: Decimal, lang: str, *, currency: str | None = "EUR") -> str:
    """'€ 18.950' (nl) / '€18,950' (en); cents only when there are any ('€ 18.950,50'). Without
    a currency the bare number ('25.000'): for a budget the lead did not write as money."""
    whole, cents = divmod(amount.quantize(Decimal("0.01")), 1)
    number = _grouped(int(whole), lang)
    if cents:
        number += ("," if lang == "nl" else ".") + f"{int(cents * 100):02d}"
    if currency is None:
        return number
    sign = _CURRENCY_SIGNS.get(currency)
    if sign is None:
        return f"{currency} {number}"
    return f"{sign} {number}" if lang == "nl" else f"{sign}{number}"


def price_text(item: InventoryItem, lang: str) -> str | None:
    return None if item.price is None else amount_text(item.price, lang, currency=item.currency)


def mileage_text(item: InventoryItem, lang: str) -> str | None:
    return None if item.mileage is None else f"{_grouped(item.mileage, lang)} km"


def fuel_text(fuel: Fuel | None, lang: str) -> str | None:
    if fuel is None:
        return None
    return FUEL_NAMES.get(lang, FUEL_NAMES["en"]).get(fuel, fuel.value)


def item_facts(item: InventoryItem, lang: str) -> list[str]:
    """The facts a reply names after the title, in order: fuel, mileage, price."""
    facts = [fuel_text(item.fuel, lang), mileage_text(item, lang), price_text(item, lang)]
    return [fact for fact in facts if fact]


_WISH_WORDS = {
    "nl": {"car": "auto", "up_to": "tot", "from": "vanaf", "max_km": "met maximaal {km}"},
    "en": {"car": "car", "up_to": "up to", "from": "from", "max_km": "with at most {km}"},
}


def wish_text(query: InventoryQuery, lang: str, *, budget_as_money: bool) -> str:
    """'Volkswagen Golf diesel tot € 25.000' / 'diesel Volkswagen Golf up to 25,000': what the
    lead asked for, in their words' order. The budget carries the currency only when the lead
    wrote it as money (the guard accepts no amount the lead did not give)."""
    words = _WISH_WORDS.get(lang, _WISH_WORDS["en"])
    car = " ".join(part for part in (query.make or "", query.model or "") if part)
    parts = [car or words["car"]]
    fuel = fuel_text(query.fuel, lang)
    if fuel:
        # Dealers' Dutch names the fuel after the car ("Golf diesel"); English before it
        # ("electric Volkswagen Golf").
        parts = [*parts, fuel] if lang == "nl" else [fuel, *parts]
    if query.min_year is not None:
        parts.append(f"{words['from']} {query.min_year}")
    if query.max_mileage is not None:
        parts.append(words["max_km"].format(km=f"{_grouped(query.max_mileage, lang)} km"))
    if query.max_price is not None:
        currency = "EUR" if budget_as_money else None
        parts.append(f"{words['up_to']} {amount_text(query.max_price, lang, currency=currency)}")
    return " ".join(parts)


# What an alternative gives up, per relaxed wish (models.inventory.RELAX_ORDER).
RELAXED_WORDS: dict[str, dict[str, str]] = {
    "nl": {
        "max_mileage": "meer kilometers",
        "min_year": "een ouder bouwjaar",
        "transmission": "een andere transmissie",
        "max_price": "boven je budget",
        "fuel": "een andere brandstof",
        "model": "een ander model",
        "make": "een ander merk",
    },
    "en": {
        "max_mileage": "higher mileage",
        "min_year": "older",
        "transmission": "a different gearbox",
        "max_price": "above your budget",
        "fuel": "a different fuel",
        "model": "a different model",
        "make": "a different make",
    },
}


def relaxed_text(relaxed: tuple[str, ...], lang: str) -> str:
    words = RELAXED_WORDS.get(lang, RELAXED_WORDS["en"])
    named = [words[name] for name in relaxed if name in words]
    if not named:
        return ""
    joiner = " en " if lang == "nl" else " and "
    return named[0] if len(named) == 1 else ", ".join(named[:-1]) + joiner + named[-1]
