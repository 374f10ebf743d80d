"""A dealer's inventory: the structured items the agent cites, their stable keys, and what an
ingestion changed.

Every backend (the database's SQL, Weaviate) and every source (the API, a listing page, a JSON or
CSV feed) speaks these models, and the rules that make two copies of one car the same item
(`item_key`) or a changed item (`content_hash`) live only here."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

MAX_KEY_LENGTH = 200
MAX_ITEMS_PER_LIST = 20_000
DIFF_SAMPLE = 20  # keys listed per kind of change in a result (the counts are always whole)


class Fuel(StrEnum):
    PETROL = "petrol"
    DIESEL = "diesel"
    HYBRID = "hybrid"
    PLUGIN_HYBRID = "plugin_hybrid"
    ELECTRIC = "electric"
    LPG = "lpg"
    CNG = "cng"
    HYDROGEN = "hydrogen"
    OTHER = "other"


class Transmission(StrEnum):
    MANUAL = "manual"
    AUTOMATIC = "automatic"


# What feeds, listing pages (schema.org fuelType), leads and models write for each fuel; matched
# on the lowercased, accent-free text. Dutch and German spellings because dealers' feeds are local.
_FUEL_WORDS: dict[Fuel, tuple[str, ...]] = {
    Fuel.PLUGIN_HYBRID: ("plug-in", "plugin", "phev", "plug in"),
    Fuel.HYBRID: ("hybrid", "hybride", "hev", "mhev", "mild hybrid"),
    Fuel.ELECTRIC: ("electric", "elektrisch", "elektro", "ev", "bev", "electricity"),
    Fuel.DIESEL: ("diesel", "tdi", "dci", "cdi", "hdi", "crdi"),
    Fuel.LPG: ("lpg", "autogas"),
    Fuel.CNG: ("cng", "aardgas", "erdgas"),
    Fuel.HYDROGEN: ("hydrogen", "waterstof", "wasserstoff", "fcev"),
    Fuel.PETROL: ("petrol", "benzine", "benzin", "gasoline", "gas", "tsi", "tfsi", "unleaded"),
}
_TRANSMISSION_WORDS: dict[Transmission, tuple[str, ...]] = {
    Transmission.AUTOMATIC: (
        "automatic",
        "automaat",
        "automatik",
        "auto",
        "dsg",
        "cvt",
        "semi-automaat",
        "semi-automatic",
        "semi-automatik",
    ),
    Transmission.MANUAL: ("manual", "handgeschakeld", "handschakeling", "schaltgetriebe"),
}


def plain_text(text: str) -> str:
    """Lowercase, accents dropped ("Škoda" → "skoda"): how makes and models are compared."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower().strip()


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)?", plain_text(text))


def normalize_fuel(value: str | None) -> Fuel | None:
    """The fuel a free-text value names (schema.org URLs such as
    `https://schema.org/Diesel` included), None when it names none. A value naming a
    combustion fuel and electricity together ("Benzine/Elektrisch", the Dutch notation of a
    hybrid) is a hybrid."""
    if value is None or not value.strip():
        return None
    text = plain_text(value)
    if text.startswith(("http://", "https://")) or "schema.org" in text:
        text = text.rstrip("/").rsplit("/", 1)[-1]
    words = set(_words(text))

    def names(fuel: Fuel) -> bool:
        return any(
            (spelling in text) if (" " in spelling or "-" in spelling) else (spelling in words)
            for spelling in _FUEL_WORDS[fuel]
        )

    named = [fuel for fuel in _FUEL_WORDS if names(fuel)]
    if not named:
        return Fuel.OTHER
    if Fuel.ELECTRIC in named and {Fuel.PETROL, Fuel.DIESEL} & set(named):
        return Fuel.PLUGIN_HYBRID if Fuel.PLUGIN_HYBRID in named else Fuel.HYBRID
    return named[0]


def normalize_transmission(value: str | None) -> Transmission | None:
    if value is None or not value.strip():
        return None
    # schema.org writes `https://schema.org/AutomaticTransmission`: the last segment, its
    # camel case split into words.
    last = value.rstrip("/").rsplit("/", 1)[-1]
    words = set(_words(re.sub(r"(?<=[a-z])(?=[A-Z])", " ", last)))
    # "AT"/"MT" are transmissions only as the whole value ("at" is also an English word).
    short = {"at": Transmission.AUTOMATIC, "mt": Transmission.MANUAL}.get(plain_text(last))
    if short is not None:
        return short
    for transmission, spellings in _TRANSMISSION_WORDS.items():
        if words & set(spellings):
            return transmission
    return None


def same_text(a: str | None, b: str | None) -> bool:
    """Makes and models compare case- and accent-insensitively ("Škoda" is "skoda")."""
    return a is not None and b is not None and plain_text(a) == plain_text(b)


Money = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2)]


def _to_fuel(value: Any) -> Any:
    return normalize_fuel(value) if isinstance(value, str) else value


def _to_transmission(value: Any) -> Any:
    return normalize_transmission(value) if isinstance(value, str) else value


# Free text ("Benzine", "automaat", a schema.org URL) read as the enum wherever a model takes one.
FuelValue = Annotated[Fuel | None, BeforeValidator(_to_fuel)]
TransmissionValue = Annotated[Transmission | None, BeforeValidator(_to_transmission)]


class InventoryItem(BaseModel):
    """One car (or product) in stock. `key` is stable across ingestions: the feed's own id,
    else the listing URL, else a hash of what tells two cars apart (`item_key`)."""

    model_config = ConfigDict(frozen=True, str_strip_whitespace=True, extra="forbid")

    key: str = Field(min_length=1, max_length=MAX_KEY_LENGTH)
    make: str = Field(min_length=1, max_length=80)
    model: str = Field(default="", max_length=120)
    variant: str = Field(default="", max_length=200)
    year: int | None = Field(default=None, ge=1900, le=2100)
    price: Money | None = None
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    fuel: FuelValue = None
    transmission: TransmissionValue = None
    mileage: int | None = Field(default=None, ge=0, le=5_000_000, description="Kilometres.")
    colour: str = Field(default="", max_length=80)
    url: str = Field(default="", max_length=2000)
    image_url: str = Field(default="", max_length=2000)
    available: bool = True

    @field_validator("price")
    @classmethod
    def _cents(cls, value: Decimal | None) -> Decimal | None:
        # 18950 and 18950.00 are one price: the content hash must not see a change.
        return None if value is None else value.quantize(Decimal("0.01"))

    @field_validator("url", "image_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not re.match(r"^https?://[^\s/]+", value, re.IGNORECASE):
            raise ValueError("must be an http(s) URL")
        return value

    def title(self) -> str:
        """'2019 Volkswagen Golf 1.6 TDI Highline': how replies and operators name the car."""
        parts = [str(self.year) if self.year else "", self.make, self.model, self.variant]
        return " ".join(p for p in parts if p)

    def describe(self) -> str:
        """The item as one line of text: what full-text and vector search index."""
        facts = [self.title()]
        if self.fuel:
            facts.append(self.fuel.value.replace("_", "-"))
        if self.transmission:
            facts.append(self.transmission.value)
        if self.mileage is not None:
            facts.append(f"{self.mileage} km")
        if self.colour:
            facts.append(self.colour)
        if self.price is not None:
            facts.append(f"{self.currency} {self.price}")
        return ", ".join(facts)

    def content_hash(self) -> str:
        """Changes exactly when something a lead could be told changes."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]


class NewInventoryItem(BaseModel):
    """An item as the API and the parsers receive it: the key may be left out (`item_key`)."""

    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")

    key: str | None = Field(default=None, max_length=MAX_KEY_LENGTH)
    make: str = Field(min_length=1, max_length=80)
    model: str = Field(default="", max_length=120)
    variant: str = Field(default="", max_length=200)
    year: int | None = Field(default=None, ge=1900, le=2100)
    price: Money | None = None
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    fuel: str | None = Field(default=None, max_length=60)
    transmission: str | None = Field(default=None, max_length=60)
    mileage: int | None = Field(default=None, ge=0, le=5_000_000)
    colour: str = Field(default="", max_length=80)
    url: str = Field(default="", max_length=2000)
    image_url: str = Field(default="", max_length=2000)
    available: bool = True

    def keyed(self) -> InventoryItem:
        data = self.model_dump(exclude={"key"})
        return InventoryItem(key=item_key(self), **data)


def item_key(item: NewInventoryItem | InventoryItem) -> str:
    """The stable key: the source's own id when it has one, else the listing URL, else a hash of
    the facts that tell two cars apart (make, model, variant, year, mileage, colour)."""
    if item.key and item.key.strip():
        return item.key.strip()[:MAX_KEY_LENGTH]
    if item.url:
        if len(item.url) <= MAX_KEY_LENGTH:
            return item.url
        # Long listing URLs often differ only at the end (a slug, then ?id=): keep a readable
        # head and make the rest a hash, so two cars never share a key.
        digest = hashlib.sha256(item.url.encode()).hexdigest()[:24]
        return item.url[: MAX_KEY_LENGTH - 26] + "#~" + digest
    facts = [
        plain_text(item.make),
        plain_text(item.model),
        plain_text(item.variant),
        str(item.year or ""),
        str(item.mileage if item.mileage is not None else ""),
        plain_text(item.colour),
    ]
    return "h:" + hashlib.sha256("|".join(facts).encode()).hexdigest()[:24]


class InventoryQuery(BaseModel):
    """What a lead (or an operator) is looking for. Every field narrows; None is "any"."""

    model_config = ConfigDict(frozen=True, str_strip_whitespace=True, extra="forbid")

    make: str | None = Field(default=None, max_length=80)
    model: str | None = Field(default=None, max_length=120)
    fuel: FuelValue = None
    transmission: TransmissionValue = None
    min_price: Money | None = None
    max_price: Money | None = None
    min_year: int | None = Field(default=None, ge=1900, le=2100)
    max_mileage: int | None = Field(default=None, ge=0)
    text: str = Field(default="", max_length=500, description="Free text, searched too.")
    available_only: bool = True
    limit: int = Field(default=3, ge=1, le=50)

    @model_validator(mode="after")
    def _price_range(self) -> InventoryQuery:
        if (
            self.min_price is not None
            and self.max_price is not None
            and self.min_price > self.max_price
        ):
            raise ValueError("min_price is above max_price")
        return self

    def structured(self) -> bool:
        """Whether any structured filter is set (else only the free text can narrow)."""
        return any(
            v is not None
            for v in (
                self.make,
                self.model,
                self.fuel,
                self.transmission,
                self.min_price,
                self.max_price,
                self.min_year,
                self.max_mileage,
            )
        )

    def matches(self, item: InventoryItem) -> bool:
        """The filter as plain code: the reference every backend's filter is tested against."""
        if self.available_only and not item.available:
            return False
        if self.make is not None and not same_text(self.make, item.make):
            return False
        if self.model is not None and not same_text(self.model, item.model):
            return False
        if self.fuel is not None and item.fuel != self.fuel:
            return False
        if self.transmission is not None and item.transmission != self.transmission:
            return False
        if self.min_price is not None and (item.price is None or item.price < self.min_price):
            return False
        if self.max_price is not None and (item.price is None or item.price > self.max_price):
            return False
        if self.min_year is not None and (item.year is None or item.year < self.min_year):
            return False
        return not (
            self.max_mileage is not None
            and (item.mileage is None or item.mileage > self.max_mileage)
        )


class ItemHit(BaseModel):
    model_config = ConfigDict(frozen=True)

    item: InventoryItem
    score: float = 0.0


class IngestDiff(BaseModel):
    """What one ingestion changed: whole counts, and up to DIFF_SAMPLE keys of each kind."""

    model_config = ConfigDict(frozen=True)

    received: int = 0
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    added_keys: tuple[str, ...] = ()
    updated_keys: tuple[str, ...] = ()
    removed_keys: tuple[str, ...] = ()

    def summary(self) -> str:
        return (
            f"{self.received} received: {self.added} added, {self.updated} updated, "
            f"{self.removed} removed, {self.unchanged} unchanged"
        )


class InventoryAnswer(BaseModel):
    """What the inventory holds for a lead's wish: the matches, or — when nothing matches — the
    nearest alternatives and which of the wishes they give up (`relaxed`, in the order given up)."""

    model_config = ConfigDict(frozen=True)

    query: InventoryQuery
    matches: tuple[ItemHit, ...] = ()
    alternatives: tuple[ItemHit, ...] = ()
    relaxed: tuple[str, ...] = ()

    def cited(self) -> tuple[InventoryItem, ...]:
        return tuple(hit.item for hit in (self.matches or self.alternatives))


# The order in which a wish is given up to find the nearest alternatives: details first, the
# make last (a lead who asked for a Golf is better served by a dearer Golf than by a Polo).
RELAX_ORDER = ("max_mileage", "min_year", "transmission", "max_price", "fuel", "model", "make")


def relaxations(query: InventoryQuery) -> list[tuple[tuple[str, ...], InventoryQuery]]:
    """The queries tried, in order, when `query` matches nothing: first each wish given up on its
    own (in RELAX_ORDER), then more and more of them together. Giving up only `max_price` keeps
    the budget as a floor, so the nearest prices above it come first (searches order by price).
    Steps that would leave no wish at all are not tried."""
    wishes = [name for name in RELAX_ORDER if getattr(query, name) is not None]
    steps: list[tuple[tuple[str, ...], InventoryQuery]] = []
    for name in wishes:
        changes: dict[str, Any] = {name: None}
        if name == "max_price":
            changes["min_price"] = query.max_price
        steps.append(((name,), query.model_copy(update=changes)))
    for n in range(2, len(wishes) + 1):
        dropped = tuple(wishes[:n])
        steps.append((dropped, query.model_copy(update=dict.fromkeys(dropped))))
    return [(dropped, q) for dropped, q in steps if q.structured() or q.text]


_AMOUNT = re.compile(r"(\d+(?:[.,\s]\d{3})*(?:[.,]\d+)?)\s*(k|K|duizend|thousand)?")


def _int_of(value: object) -> int | None:
    """A whole number a field holds: 25000, "€ 25.000", "25,000", "25k"; of a range
    ("15-20k", "15.000 tot 20.000") the upper end, since a budget is a ceiling."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if not isinstance(value, str):
        return None
    amounts = list(_AMOUNT.finditer(value))
    if not amounts:
        return None
    # "15-20k": the k of the last number applies to the whole range.
    thousands = any(m.group(2) for m in amounts)
    number = amounts[-1].group(1)
    digits = re.sub(r"[.,\s]\d{1,2}$", "", number)  # drop cents ("25.000,50")
    digits = re.sub(r"[^\d]", "", digits)
    if not digits or len(digits) > 9:
        return None
    amount = int(digits)
    if thousands and amount < 10_000:
        amount *= 1000
    return amount


def query_from_fields(
    fields: dict[str, str | int | float | bool], *, limit: int = 3
) -> InventoryQuery | None:
    """The inventory search a lead's extracted fields ask for (playbook fields `make`, `model`,
    `fuel_type`, `budget`, `year`, `max_mileage`), None when they name no car wish at all."""
    make = fields.get("make")
    model = fields.get("model")
    fuel = fields.get("fuel_type")
    budget = _int_of(fields.get("budget"))
    year = _int_of(fields.get("year"))
    mileage = _int_of(fields.get("max_mileage"))
    wish = InventoryQuery(
        make=make if isinstance(make, str) and make.strip() else None,
        model=model if isinstance(model, str) and model.strip() else None,
        fuel=normalize_fuel(fuel) if isinstance(fuel, str) else None,
        max_price=Decimal(budget) if budget and budget > 0 else None,
        min_year=year if year and 1900 <= year <= 2100 else None,
        max_mileage=mileage if mileage and mileage > 0 else None,
        limit=limit,
    )
    if wish.fuel == Fuel.OTHER:
        wish = wish.model_copy(update={"fuel": None})
    return wish if wish.structured() else None
