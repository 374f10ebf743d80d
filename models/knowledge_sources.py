"""A tenant's inventory sources: a dealer's listing page or a JSON/CSV feed, fetched on a
Temporal Schedule by the ingestion workflow (workflows/ingestion.py) and parsed by
models/inventory_parse.py. These are the shapes the API accepts and the database keeps."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

DEFAULT_EVERY_MINUTES = 10
MIN_EVERY_MINUTES = 1
MAX_EVERY_MINUTES = 7 * 24 * 60

# The item fields a feed column or a CSS selector can fill (InventoryItem's, minus `available`'s
# default and `currency`, which a source sets once).
ITEM_FIELDS = (
    "key",
    "make",
    "model",
    "variant",
    "year",
    "price",
    "currency",
    "fuel",
    "transmission",
    "mileage",
    "colour",
    "url",
    "image_url",
    "available",
)


class SourceKind(StrEnum):
    LISTING_PAGE = "listing_page"  # HTML: schema.org JSON-LD, or CSS selectors
    JSON_FEED = "json_feed"
    CSV_FEED = "csv_feed"


class ListingSelectors(BaseModel):
    """CSS selectors for a listing page without usable JSON-LD: `item` selects each car's
    element; each field's selector is matched inside it, and `selector@attribute` reads an
    attribute instead of the text (`a.title@href`, `img@src`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    item: str = Field(min_length=1, max_length=300)
    fields: dict[str, str] = Field(min_length=1)

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(ITEM_FIELDS))
        if unknown:
            raise ValueError(f"unknown item fields {unknown}; known: {list(ITEM_FIELDS)}")
        if "make" not in value:
            raise ValueError("a selector for 'make' is required")
        for name, selector in value.items():
            if not selector.strip() or len(selector) > 300:
                raise ValueError(f"selector of {name!r} must be 1-300 characters")
        return value


class SourceSpec(BaseModel):
    """What to fetch, how often, and how to read it."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=120)
    kind: SourceKind
    url: str = Field(min_length=1, max_length=2000)
    # None: the deployment's LEADFLOW_INVENTORY_EVERY_MINUTES (default DEFAULT_EVERY_MINUTES).
    every_minutes: int | None = Field(default=None, ge=MIN_EVERY_MINUTES, le=MAX_EVERY_MINUTES)
    paused: bool = False
    # Feeds: item field -> the feed's column (CSV) or key (JSON; dots walk into objects,
    # `price.amount`). Fields not named are read from a column/key of the same name.
    # `"available": "!Verkocht"` reads a "sold" column inverted.
    mapping: dict[str, str] = Field(default_factory=dict)
    # JSON feeds: where the list of items is (`data.vehicles`); empty = the document itself or
    # the first list found under `items`, `vehicles`, `cars`, `data`, `results`, `offers`.
    items_path: str = Field(default="", max_length=200)
    # Listing pages: JSON-LD is read when the page has it; selectors when set (they win).
    selectors: ListingSelectors | None = None
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    # CSV feeds: the delimiter, or empty to sniff it (`,` `;` tab).
    # Not stripped like the other strings: a tab is a delimiter.
    delimiter: Annotated[str, StringConstraints(strip_whitespace=False, max_length=1)] = ""

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value, re.IGNORECASE):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("mapping")
    @classmethod
    def _known_mapping(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(ITEM_FIELDS))
        if unknown:
            raise ValueError(f"unknown item fields {unknown}; known: {list(ITEM_FIELDS)}")
        return value

    @model_validator(mode="after")
    def _fits_kind(self) -> Self:
        if self.selectors is not None and self.kind != SourceKind.LISTING_PAGE:
            raise ValueError("selectors are for kind 'listing_page'")
        if self.items_path and self.kind != SourceKind.JSON_FEED:
            raise ValueError("items_path is for kind 'json_feed'")
        if self.delimiter and self.kind != SourceKind.CSV_FEED:
            raise ValueError("delimiter is for kind 'csv_feed'")
        return self
