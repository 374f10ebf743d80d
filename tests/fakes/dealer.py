"""A fake car dealer's website on loopback, for ingestion tests: the same in-memory stock served
as a used-car overview with schema.org JSON-LD, as an overview without it (for CSS selectors),
as a JSON feed and as a Dutch CSV feed, in the shapes real dealer sites and stock exports have.

    with FakeDealerSite(make_inventory(500, seed=7)) as site:
        site.url("/occasions")           # http://127.0.0.1:PORT/occasions
        site.listing_spec()              # a SourceSpec that reads it
        site.sell(site.inventory[0]["id"])
        site.fail_next(2)                # the next two requests answer 503
        site.serve_broken("/feed.json")  # a truncated document until site.restore(...)

Every format carries the car's stock number as its key, so all four parse to the same keys.

    /occasions          overview with JSON-LD (an ItemList of Car with Offer) and cards
    /occasions-plain    the same cards, no JSON-LD: read with `PLAIN_SELECTORS`
    /occasions/<id>     a car's page (the links of the overview)
    /feed.json          {"dealer": ..., "vehicles": [...]}, nested price and odometer
    /feed.csv           `;`-separated, Dutch headers, UTF-8 with BOM, Dutch number formats
    /img/<id>.jpg       a tiny JPEG
"""

from __future__ import annotations

import csv
import html
import io
import json
import random
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from models.knowledge_sources import ListingSelectors, SourceKind, SourceSpec
from tests.fakes.http_server import FailurePlan, LiveServer, RecordedRequest

DEALER_NAME = "Autobedrijf Van Dijk"
HTML = "text/html; charset=utf-8"
JSON = "application/json"
CSV = "text/csv; charset=utf-8"

# The cards of both overviews; these selectors read /occasions-plain.
PLAIN_SELECTORS = ListingSelectors(
    item="article.occasion",
    fields={
        "key": "@data-stock-id",
        "make": ".occasion__make",
        "model": ".occasion__model",
        "variant": ".occasion__variant",
        "year": ".occasion__specs .year",
        "price": ".occasion__price",
        "fuel": ".occasion__specs .fuel",
        "transmission": ".occasion__specs .transmission",
        "mileage": ".occasion__specs .mileage",
        "colour": ".occasion__specs .colour",
        "url": "a.occasion__link@href",
        "image_url": "img.occasion__photo@data-src",
        "available": ".occasion__status",
    },
)
JSON_MAPPING = {
    "key": "id",
    "price": "price.amount",
    "currency": "price.currency",
    "mileage": "odometer",
    "image_url": "images.0",
    "available": "status",
}
CSV_MAPPING = {
    "key": "Voorraadnummer",
    "make": "Merk",
    "model": "Model",
    "variant": "Uitvoering",
    "year": "Bouwjaar",
    "price": "Vraagprijs",
    "fuel": "Brandstof",
    "transmission": "Transmissie",
    "mileage": "Kilometerstand",
    "colour": "Kleur",
    "url": "Link",
    "image_url": "Foto",
    "available": "Status",
}
CSV_COLUMNS = (
    "Voorraadnummer",
    "Merk",
    "Model",
    "Uitvoering",
    "Bouwjaar",
    "Vraagprijs",
    "Brandstof",
    "Transmissie",
    "Kilometerstand",
    "Kleur",
    "Link",
    "Foto",
    "Status",
)

# A 1x1 JPEG: the overview's images resolve to something real.
TINY_JPEG = bytes.fromhex(
    "ffd8ffe000104a46494600010100000100010000ffdb004300080606070605080707070909080a0c140d0c0b0b0c"
    "1912130f141d1a1f1e1d1a1c1c20242e2720222c231c1c2837292c30313434341f27393d38323c2e333432ffc0000b"
    "080001000101011100ffc4001f0000010501010101010100000000000000000102030405060708090a0bffc400b5"
    "100002010303020403050504040000017d01020300041105122131410613516107227114328191a1082342b1c115"
    "52d1f02433627282090a161718191a25262728292a3435363738393a434445464748494a535455565758595a6364"
    "65666768696a737475767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7"
    "b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffda000801"
    "0100003f00fbd3ffd9"
)

# --- a realistic stock ----------------------------------------------------------------------

FUELS_NL = {
    "petrol": "Benzine",
    "diesel": "Diesel",
    "hybrid": "Hybride",
    "plugin_hybrid": "Plug-in hybride",
    "electric": "Elektrisch",
    "lpg": "LPG",
}
TRANSMISSIONS_NL = {"manual": "Handgeschakeld", "automatic": "Automaat"}
COLOURS = ("Zwart", "Grijs", "Wit", "Zilver", "Blauw", "Rood", "Groen", "Bruin", "Beige")


@dataclass(frozen=True)
class _Model:
    make: str
    model: str
    new_price: int  # euros, a typical new price; used cars cost less with age and kilometres
    variants: tuple[tuple[str, str, str], ...]  # (variant, fuel, transmission)


CATALOGUE = (
    _Model(
        "Volkswagen",
        "Golf",
        34_000,
        (
            ("1.0 TSI Life", "petrol", "manual"),
            ("1.5 eTSI Style", "hybrid", "automatic"),
            ("2.0 TDI Highline", "diesel", "manual"),
            ("1.6 TDI Comfortline", "diesel", "manual"),
            ("GTE 1.4 eHybrid", "plugin_hybrid", "automatic"),
        ),
    ),
    _Model(
        "Volkswagen",
        "Polo",
        24_000,
        (("1.0 TSI Comfortline", "petrol", "manual"), ("1.6 TDI Highline", "diesel", "manual")),
    ),
    _Model(
        "Volkswagen",
        "ID.3",
        40_000,
        (("Pro 58 kWh", "electric", "automatic"), ("Pure 45 kWh", "electric", "automatic")),
    ),
    _Model(
        "Volkswagen",
        "Passat Variant",
        45_000,
        (
            ("2.0 TDI Business", "diesel", "automatic"),
            ("1.4 TSI GTE", "plugin_hybrid", "automatic"),
        ),
    ),
    _Model(
        "Toyota",
        "Yaris",
        25_000,
        (("1.5 Hybrid Dynamic", "hybrid", "automatic"), ("1.0 VVT-i Comfort", "petrol", "manual")),
    ),
    _Model(
        "Toyota",
        "Corolla Touring Sports",
        36_000,
        (
            ("1.8 Hybrid Active", "hybrid", "automatic"),
            ("2.0 Hybrid GR-Sport", "hybrid", "automatic"),
        ),
    ),
    _Model(
        "Toyota",
        "RAV4",
        48_000,
        (("2.5 Hybrid AWD Style", "hybrid", "automatic"),),
    ),
    _Model(
        "Peugeot",
        "208",
        26_000,
        (("1.2 PureTech Allure", "petrol", "manual"), ("e-208 GT 50 kWh", "electric", "automatic")),
    ),
    _Model(
        "Peugeot",
        "3008",
        40_000,
        (("1.2 PureTech GT", "petrol", "automatic"), ("1.5 BlueHDi Allure", "diesel", "manual")),
    ),
    _Model(
        "Renault",
        "Clio",
        23_000,
        (("TCe 90 Zen", "petrol", "manual"), ("E-Tech Hybrid 140 Intens", "hybrid", "automatic")),
    ),
    _Model(
        "Opel",
        "Corsa",
        22_000,
        (("1.2 Edition", "petrol", "manual"), ("Corsa-e Elegance", "electric", "automatic")),
    ),
    _Model(
        "Ford",
        "Focus Wagon",
        32_000,
        (
            ("1.0 EcoBoost Titanium", "petrol", "manual"),
            ("1.5 EcoBlue ST Line", "diesel", "manual"),
        ),
    ),
    _Model(
        "Kia",
        "Niro",
        38_000,
        (
            ("1.6 GDi Hybrid DynamicLine", "hybrid", "automatic"),
            ("EV 64 kWh", "electric", "automatic"),
        ),
    ),
    _Model(
        "Skoda",
        "Octavia Combi",
        35_000,
        (
            ("1.5 TSI Business Edition", "petrol", "manual"),
            ("2.0 TDI Style", "diesel", "automatic"),
        ),
    ),
    _Model(
        "BMW",
        "3-serie Touring",
        55_000,
        (("320i M Sport", "petrol", "automatic"), ("320d High Executive", "diesel", "automatic")),
    ),
    _Model(
        "Audi",
        "A3 Sportback",
        42_000,
        (
            ("30 TFSI Pro Line", "petrol", "manual"),
            ("40 TFSI e S-line", "plugin_hybrid", "automatic"),
        ),
    ),
    _Model(
        "Tesla",
        "Model 3",
        48_000,
        (
            ("Long Range AWD", "electric", "automatic"),
            ("Standard Range Plus", "electric", "automatic"),
        ),
    ),
    _Model(
        "Fiat",
        "500",
        19_000,
        (("1.2 Lounge", "petrol", "manual"), ("0.9 TwinAir Turbo Popstar", "lpg", "manual")),
    ),
)
CURRENT_YEAR = 2026


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _dealer_price(amount: float) -> int:
    # Dealers price just under a round number: 24.950, 18.450, 9.995 for the cheap ones.
    if amount < 10_000:
        return max(1_995, int(amount // 500) * 500 - 5)
    return int(amount // 500) * 500 - 50


def make_car(rng: random.Random, number: int, model: _Model | None = None) -> dict[str, Any]:
    """One realistic used car: age 1-12 years, ~15,000 km a year (more for diesels), a price
    that falls with age and kilometres."""
    model = model or rng.choice(CATALOGUE)
    variant, fuel, transmission = rng.choice(model.variants)
    age = rng.randint(1, 12)
    yearly = rng.randint(17_000, 30_000) if fuel == "diesel" else rng.randint(8_000, 20_000)
    mileage = int(age * yearly // 100 * 100 + rng.randint(0, 99))
    value = model.new_price * (0.85**age) * max(0.55, 1 - mileage / 600_000)
    return {
        "id": f"VD-{number:05d}",
        "make": model.make,
        "model": model.model,
        "variant": variant,
        "year": CURRENT_YEAR - age,
        "month": rng.randint(1, 12),
        "price": _dealer_price(value),
        "fuel": fuel,
        "transmission": transmission,
        "mileage": mileage,
        "colour": rng.choice(COLOURS),
        "available": True,
    }


def make_inventory(n: int, seed: int = 1) -> list[dict[str, Any]]:
    """n realistic cars, the same for the same seed. The first is always a Volkswagen Golf
    diesel under €25,000, the car of the example lead ("a Golf diesel under 25k?")."""
    rng = random.Random(seed)
    cars = [make_car(rng, number) for number in range(1, n + 1)]
    if cars:
        cars[0].update(
            make="Volkswagen",
            model="Golf",
            variant="2.0 TDI Highline",
            year=2019,
            month=3,
            price=18_950,
            fuel="diesel",
            transmission="manual",
            mileage=96_412,
            colour="Grijs",
        )
    return cars


def _dutch_number(value: int) -> str:
    return f"{value:,}".replace(",", ".")


def dutch_price(value: int) -> str:
    """€ 18.950,- as Dutch dealers write it."""
    return f"€ {_dutch_number(value)},-"


# --- the site -----------------------------------------------------------------------------------


@dataclass
class _Override:
    body: bytes
    content_type: str
    status: int


class FakeDealerSite:
    """The dealer's site on 127.0.0.1. `inventory` is mutable (under `lock`, or through the
    helpers); every request renders the stock as it is at that moment."""

    def __init__(self, inventory: Iterable[dict[str, Any]] | None = None) -> None:
        self.inventory: list[dict[str, Any]] = [dict(car) for car in (inventory or [])]
        self.lock = threading.Lock()
        self.requests: list[RecordedRequest] = []
        self.failures = FailurePlan()
        self._overrides: dict[str, _Override] = {}
        self._server = LiveServer(self._app())

    # --- lifecycle
    def start(self) -> FakeDealerSite:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> FakeDealerSite:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return self._server.url

    def url(self, path: str) -> str:
        return f"{self._server.url}{path}"

    # --- sources that read this site
    def listing_spec(self, **changes: Any) -> SourceSpec:
        return SourceSpec(
            name="Occasions",
            kind=SourceKind.LISTING_PAGE,
            url=self.url("/occasions"),
            **changes,
        )

    def plain_spec(self, **changes: Any) -> SourceSpec:
        return SourceSpec(
            name="Occasions (selectors)",
            kind=SourceKind.LISTING_PAGE,
            url=self.url("/occasions-plain"),
            selectors=PLAIN_SELECTORS,
            **changes,
        )

    def json_spec(self, **changes: Any) -> SourceSpec:
        return SourceSpec(
            name="Voorraad JSON",
            kind=SourceKind.JSON_FEED,
            url=self.url("/feed.json"),
            mapping=JSON_MAPPING,
            items_path="vehicles",
            **changes,
        )

    def csv_spec(self, **changes: Any) -> SourceSpec:
        return SourceSpec(
            name="Voorraad CSV",
            kind=SourceKind.CSV_FEED,
            url=self.url("/feed.csv"),
            mapping=CSV_MAPPING,
            **changes,
        )

    # --- the stock
    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(car) for car in self.inventory]

    def keys(self, *, available_only: bool = False) -> list[str]:
        return [c["id"] for c in self.snapshot() if c["available"] or not available_only]

    def add_car(self, **fields: Any) -> dict[str, Any]:
        """A generated car (with the next stock number) with `fields` set over it."""
        with self.lock:
            number = 1 + max((int(c["id"].rsplit("-", 1)[-1]) for c in self.inventory), default=0)
            car = make_car(random.Random(number), number)
            car.update(fields)
            self.inventory.append(car)
            return dict(car)

    def remove_car(self, car_id: str) -> None:
        with self.lock:
            before = len(self.inventory)
            self.inventory[:] = [c for c in self.inventory if c["id"] != car_id]
            if len(self.inventory) == before:
                raise KeyError(car_id)

    def change_car(self, car_id: str, **changes: Any) -> dict[str, Any]:
        with self.lock:
            for car in self.inventory:
                if car["id"] == car_id:
                    car.update(changes)
                    return dict(car)
        raise KeyError(car_id)

    def sell(self, car_id: str) -> dict[str, Any]:
        """Sold cars stay on the page a while, marked sold, as on real dealer sites."""
        return self.change_car(car_id, available=False)

    # --- failures
    def fail_next(self, times: int = 1, *, status: int = 503, path: str | None = None) -> None:
        self.failures.add(
            times,
            status=status,
            body={"error": "Service Unavailable"},
            retry_after=None,
            path_contains=path,
        )

    def serve(self, path: str, body: bytes | str, *, content_type: str, status: int = 200) -> None:
        """Answer `path` with this body until `restore(path)`."""
        data = body.encode() if isinstance(body, str) else body
        with self.lock:
            self._overrides[path] = _Override(data, content_type, status)

    def serve_broken(self, path: str) -> None:
        """A cut-off document of the path's kind (a deploy gone wrong, a proxy's truncation)."""
        if path.endswith(".json"):
            self.serve(path, '{"vehicles": [{"id": "VD-1", "make": "Volks', content_type=JSON)
        elif path.endswith(".csv"):
            self.serve(path, b"\x00\x01PK\x03\x04 not a csv", content_type=CSV)
        else:
            page = "<html><head><title>Onderhoud</title></head><body><h1>We zijn zo terug"
            self.serve(path, page, content_type=HTML)

    def restore(self, path: str | None = None) -> None:
        with self.lock:
            if path is None:
                self._overrides.clear()
            else:
                self._overrides.pop(path, None)

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    # --- rendering
    def car_url(self, car: dict[str, Any]) -> str:
        return self.url(f"/occasions/{car['id']}-{_slug(car['make'] + ' ' + car['model'])}")

    def image_url(self, car: dict[str, Any]) -> str:
        return self.url(f"/img/{car['id']}.jpg")

    def _app(self) -> Starlette:
        async def handle(request: Request) -> Response:
            self.requests.append(await RecordedRequest.of(request))
            failure = self.failures.take(request.url.path)
            if failure is not None:
                return failure.response()
            with self.lock:
                override = self._overrides.get(request.url.path)
            if override is not None:
                return Response(
                    override.body, status_code=override.status, media_type=override.content_type
                )
            return self._route(request.url.path)

        return Starlette(routes=[Route("/{path:path}", handle, methods=["GET", "HEAD"])])

    def _route(self, path: str) -> Response:
        cars = self.snapshot()
        if path in ("/occasions", "/occasions/"):
            return Response(self.overview(cars, json_ld=True), media_type=HTML)
        if path == "/occasions-plain":
            return Response(self.overview(cars, json_ld=False), media_type=HTML)
        if path == "/feed.json":
            return Response(self.json_feed(cars), media_type=JSON)
        if path == "/feed.csv":
            return Response(self.csv_feed(cars), media_type=CSV)
        if path.startswith("/img/") and path.endswith(".jpg"):
            return Response(TINY_JPEG, media_type="image/jpeg")
        if path.startswith("/occasions/"):
            match = re.match(r"/occasions/(VD-\d+)", path)
            car = next((c for c in cars if match and c["id"] == match.group(1)), None)
            if car is not None:
                return Response(self.car_page(car), media_type=HTML)
        return Response("<h1>Pagina niet gevonden</h1>", status_code=404, media_type=HTML)

    def json_ld(self, cars: list[dict[str, Any]]) -> dict[str, Any]:
        """An ItemList of Car, each with an Offer, as dealer-site CMS plugins write it."""
        elements = []
        for position, car in enumerate(cars, start=1):
            availability = "InStock" if car["available"] else "SoldOut"
            elements.append(
                {
                    "@type": "ListItem",
                    "position": position,
                    "item": {
                        "@type": "Car",
                        "@id": f"{self.car_url(car)}#car",
                        "sku": car["id"],
                        "name": f"{car['make']} {car['model']} {car['variant']}",
                        "brand": {"@type": "Brand", "name": car["make"]},
                        "model": car["model"],
                        "vehicleModelDate": str(car["year"]),
                        "productionDate": f"{car['year']}-{car['month']:02d}",
                        "fuelType": FUELS_NL[car["fuel"]],
                        "vehicleTransmission": TRANSMISSIONS_NL[car["transmission"]],
                        "mileageFromOdometer": {
                            "@type": "QuantitativeValue",
                            "value": car["mileage"],
                            "unitCode": "KMT",
                        },
                        "color": car["colour"],
                        "url": self.car_url(car),
                        "image": [self.image_url(car)],
                        "offers": {
                            "@type": "Offer",
                            "price": str(car["price"]),
                            "priceCurrency": "EUR",
                            "availability": f"https://schema.org/{availability}",
                            "seller": {"@type": "AutoDealer", "name": DEALER_NAME},
                        },
                    },
                }
            )
        return {
            "@context": "https://schema.org",
            "@type": "ItemList",
            "name": "Occasions",
            "numberOfItems": len(cars),
            "itemListElement": elements,
        }

    def card(self, car: dict[str, Any]) -> str:
        path = self.car_url(car).removeprefix(self.base_url)  # relative, as CMSs write links
        status = "Beschikbaar" if car["available"] else "Verkocht"
        title = html.escape(f"{car['make']} {car['model']}")
        return f"""
<article class="occasion{" occasion--sold" if not car["available"] else ""}"
         data-stock-id="{html.escape(car["id"])}">
  <a class="occasion__link" href="{html.escape(path)}" title="{title}">
    <img class="occasion__photo" src="data:image/gif;base64,R0lGODlhAQABAAAAACw="
         data-src="/img/{html.escape(car["id"])}.jpg" alt="{title}" loading="lazy">
  </a>
  <h2 class="occasion__title"><span class="occasion__make">{html.escape(car["make"])}</span>
    <span class="occasion__model">{html.escape(car["model"])}</span></h2>
  <p class="occasion__variant">{html.escape(car["variant"])}</p>
  <ul class="occasion__specs">
    <li class="year">{car["month"]:02d}/{car["year"]}</li>
    <li class="mileage">{_dutch_number(car["mileage"])} km</li>
    <li class="fuel">{FUELS_NL[car["fuel"]]}</li>
    <li class="transmission">{TRANSMISSIONS_NL[car["transmission"]]}</li>
    <li class="colour">{html.escape(car["colour"])}</li>
  </ul>
  <div class="occasion__price">{dutch_price(car["price"])}</div>
  <span class="occasion__status">{status}</span>
</article>"""

    def overview(self, cars: list[dict[str, Any]], *, json_ld: bool) -> str:
        script = ""
        if json_ld:
            # "</" inside a script would end it early; JSON allows the escaped form.
            data = json.dumps(self.json_ld(cars), ensure_ascii=False, indent=1)
            data = data.replace("</", "<\\/")
            script = f'<script type="application/ld+json">{data}</script>'
        organisation = json.dumps(
            {
                "@context": "https://schema.org",
                "@type": "AutoDealer",
                "name": DEALER_NAME,
                "address": {"@type": "PostalAddress", "addressLocality": "Utrecht"},
                "telephone": "+31 30 123 4567",
            }
        )
        breadcrumbs = json.dumps(
            {
                "@context": "https://schema.org",
                "@type": "BreadcrumbList",
                "itemListElement": [
                    {"@type": "ListItem", "position": 1, "name": "Home", "item": self.url("/")},
                    {"@type": "ListItem", "position": 2, "name": "Occasions"},
                ],
            }
        )
        cards = "".join(self.card(car) for car in cars)
        return f"""<!DOCTYPE html>
<html lang="nl"><head><meta charset="utf-8">
<title>Occasions | {DEALER_NAME}</title>
<meta name="description" content="Bekijk ons actuele aanbod van {len(cars)} occasions.">
<script type="application/ld+json">{organisation}</script>
<script type="application/ld+json">{breadcrumbs}</script>
{script}
</head><body>
<header><nav><a href="/">Home</a> <a href="/occasions">Occasions</a> <a href="/contact">Contact</a>
</nav></header>
<main><h1>Occasions</h1><p class="count">{len(cars)} auto's gevonden</p>
<section class="occasions">{cards}
</section></main>
<footer>{DEALER_NAME}, Utrecht. Alle prijzen zijn inclusief BTW en exclusief afleverkosten.
</footer></body></html>"""

    def car_page(self, car: dict[str, Any]) -> str:
        title = html.escape(f"{car['make']} {car['model']} {car['variant']}")
        return f"""<!DOCTYPE html><html lang="nl"><head><meta charset="utf-8">
<title>{title} | {DEALER_NAME}</title></head><body><h1>{title}</h1>
<p>{dutch_price(car["price"])}</p><p>{_dutch_number(car["mileage"])} km</p></body></html>"""

    def json_feed(self, cars: list[dict[str, Any]]) -> bytes:
        vehicles = [
            {
                "id": car["id"],
                "make": car["make"],
                "model": car["model"],
                "variant": car["variant"],
                "year": car["year"],
                "first_registration": f"{car['year']}-{car['month']:02d}-01",
                "price": {"amount": car["price"], "currency": "EUR", "vat_included": True},
                "fuel": car["fuel"],
                "transmission": car["transmission"],
                "odometer": {"value": car["mileage"], "unit": "km"},
                "colour": car["colour"],
                "url": self.car_url(car),
                "images": [self.image_url(car)],
                "status": "available" if car["available"] else "sold",
            }
            for car in cars
        ]
        document = {
            "dealer": {"name": DEALER_NAME, "city": "Utrecht"},
            "count": len(vehicles),
            "vehicles": vehicles,
        }
        return json.dumps(document, ensure_ascii=False).encode()

    def csv_feed(self, cars: list[dict[str, Any]]) -> bytes:
        """What a Dutch stock export looks like: `;`, a BOM for Excel, Dutch formats."""
        out = io.StringIO(newline="")
        writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
        writer.writerow(CSV_COLUMNS)
        for car in cars:
            writer.writerow(
                (
                    car["id"],
                    car["make"],
                    car["model"],
                    car["variant"],
                    f"{car['month']:02d}/{car['year']}",
                    f"{_dutch_number(car['price'])},00",
                    FUELS_NL[car["fuel"]],
                    TRANSMISSIONS_NL[car["transmission"]],
                    f"{_dutch_number(car['mileage'])} km",
                    car["colour"],
                    self.car_url(car),
                    self.image_url(car),
                    "Beschikbaar" if car["available"] else "Verkocht",
                )
            )
        return ("\ufeff" + out.getvalue()).encode()
