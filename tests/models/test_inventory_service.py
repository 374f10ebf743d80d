"""The canonical inventory and KnowledgeService on SQLite and PostgreSQL: what an ingestion
changed, the database backend's filters against the reference filter, a mirroring backend that
fails and catches up, and a lead's wish answered with matches or the nearest alternatives."""

from __future__ import annotations

import random
from collections.abc import Sequence
from decimal import Decimal

import pytest

from models.db import Database
from models.inventory import (
    Fuel,
    InventoryItem,
    InventoryQuery,
    NewInventoryItem,
    Transmission,
    query_from_fields,
    relaxations,
)
from models.knowledge.database_index import DatabaseIndex
from models.knowledge.index import (
    DocumentMatch,
    IndexedDocument,
    ItemMatch,
    KnowledgeBackendUnavailable,
)
from models.knowledge.service import KnowledgeService
from models.repo import inventory as inventory_repo
from tests.conftest import make_tenant

MODELS = {
    "Volkswagen": ["Golf", "Polo", "Tiguan"],
    "Škoda": ["Octavia", "Fabia"],
    "Toyota": ["Yaris", "Corolla"],
}


def generated(n: int, seed: int = 7) -> list[InventoryItem]:
    rng = random.Random(seed)
    items = []
    for i in range(n):
        make = rng.choice(sorted(MODELS))
        items.append(
            NewInventoryItem(
                key=f"stock-{i}",
                make=make,
                model=rng.choice(MODELS[make]),
                year=rng.randint(2012, 2024),
                price=Decimal(rng.randrange(8_000, 45_000, 50)) if i % 11 else None,
                fuel=rng.choice(["diesel", "benzine", "hybrid", "electric"]),
                transmission=rng.choice(["manual", "automaat"]),
                mileage=rng.randrange(5_000, 220_000, 1000),
                url=f"https://dealer.example/occasions/{i}",
                available=i % 13 != 0,
            ).keyed()
        )
    return items


QUERIES = [
    InventoryQuery(make="volkswagen"),
    InventoryQuery(make="Skoda", limit=50),
    InventoryQuery(make="Volkswagen", model="golf", fuel="diesel", max_price=Decimal(25_000)),
    InventoryQuery(fuel=Fuel.ELECTRIC, min_year=2020, limit=50),
    InventoryQuery(transmission=Transmission.AUTOMATIC, max_mileage=60_000, limit=50),
    InventoryQuery(min_price=Decimal(20_000), max_price=Decimal(30_000), limit=50),
    InventoryQuery(make="Toyota", available_only=False, limit=50),
]


def reference(items: Sequence[InventoryItem], query: InventoryQuery) -> list[str]:
    """The reference filter, ordered like the database: known prices first, lowest first."""
    kept = [i for i in items if query.matches(i)]
    kept.sort(key=lambda i: (i.price is None, i.price or 0, i.key))
    return [i.key for i in kept[: query.limit]]


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: q.model_dump_json(exclude_defaults=True))
async def test_the_database_filters_like_the_reference(db: Database, query: InventoryQuery) -> None:
    tenant_id, _ = await make_tenant(db)
    other, _ = await make_tenant(db)
    items = generated(80)
    service = KnowledgeService(db, DatabaseIndex(db))
    await service.apply_items(tenant_id=tenant_id, items=items, replace=True)
    await service.apply_items(tenant_id=other, items=generated(20, seed=1), replace=True)
    hits = await service.search_items(tenant_id=tenant_id, query=query)
    assert [h.item.key for h in hits] == reference(items, query)
    assert all(h.item.key.startswith("stock-") for h in hits)


async def test_free_text_ranks_items_sharing_more_words(db: Database) -> None:
    tenant_id, _ = await make_tenant(db)
    service = KnowledgeService(db, DatabaseIndex(db))
    await service.apply_items(tenant_id=tenant_id, items=generated(80), replace=True)
    hits = await service.search_items(
        tenant_id=tenant_id, query=InventoryQuery(text="golf diesel automatic", limit=10)
    )
    assert hits
    assert hits[0].score == 1.0  # all three words
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all("golf" in h.item.describe().lower() or h.score < 1 for h in hits)


async def test_an_ingestion_reports_what_changed(db: Database) -> None:
    tenant_id, _ = await make_tenant(db)
    service = KnowledgeService(db, DatabaseIndex(db))
    items = generated(10)
    first = await service.apply_items(tenant_id=tenant_id, items=items, replace=True)
    assert (first.received, first.added, first.updated, first.removed) == (10, 10, 0, 0)

    cheaper = items[0].model_copy(update={"price": Decimal("999.00")})
    second = await service.apply_items(
        tenant_id=tenant_id, items=[cheaper, *items[1:8]], replace=True
    )
    assert (second.added, second.updated, second.removed, second.unchanged) == (0, 1, 2, 7)
    assert second.updated_keys == ("stock-0",)
    assert set(second.removed_keys) == {"stock-8", "stock-9"}

    # A removed item that comes back is added again; the same list twice changes nothing.
    third = await service.apply_items(tenant_id=tenant_id, items=items[:9], replace=True)
    assert (third.added, third.updated, third.removed) == (1, 1, 0)
    again = await service.apply_items(tenant_id=tenant_id, items=items[:9], replace=True)
    assert (again.added, again.updated, again.removed, again.unchanged) == (0, 0, 0, 9)
    found = await service.items_by_key(tenant_id=tenant_id, keys=["stock-9", "stock-8", "x"])
    assert [i.key for i in found] == ["stock-8"]


async def test_sources_remove_only_their_own_items(db: Database) -> None:
    tenant_id, _ = await make_tenant(db)
    service = KnowledgeService(db, DatabaseIndex(db))
    items = generated(6)
    await service.apply_items(tenant_id=tenant_id, items=items[:3], source_id="feed", replace=True)
    await service.apply_items(tenant_id=tenant_id, items=items[3:], replace=True)
    diff = await service.apply_items(tenant_id=tenant_id, items=[], source_id="feed", replace=True)
    assert diff.removed == 3
    async with db.session() as session:
        assert await inventory_repo.counts(session, tenant_id=tenant_id) == {"api": 3}
    upsert = await service.apply_items(tenant_id=tenant_id, items=items[:1], replace=False)
    assert (upsert.added, upsert.removed) == (1, 0)
    assert await service.remove_item(tenant_id=tenant_id, key="stock-0")
    assert not await service.remove_item(tenant_id=tenant_id, key="stock-0")


async def test_same_price_written_differently_is_unchanged(db: Database) -> None:
    tenant_id, _ = await make_tenant(db)
    service = KnowledgeService(db, DatabaseIndex(db))
    car = NewInventoryItem(key="a", make="Toyota", price=Decimal("18950"))
    await service.apply_items(tenant_id=tenant_id, items=[car.keyed()], replace=True)
    same = NewInventoryItem(key="a", make="Toyota", price=Decimal("18950.00"))
    diff = await service.apply_items(tenant_id=tenant_id, items=[same.keyed()], replace=True)
    assert diff.unchanged == 1


class FlakyIndex:
    """A mirroring backend kept in memory that can be made unreachable."""

    name = "flaky"
    mirrors = True

    def __init__(self) -> None:
        self.items: dict[str, InventoryItem] = {}
        self.down = False
        self.stale: list[str] = []  # keys it still answers with although they were removed

    def _up(self) -> None:
        if self.down:
            raise KnowledgeBackendUnavailable("flaky backend at memory:// is unreachable")

    async def check(self) -> None:
        self._up()

    async def upsert_documents(self, tenant_id: str, documents: Sequence[IndexedDocument]) -> None:
        self._up()

    async def delete_documents(self, tenant_id: str, document_ids: Sequence[str]) -> None:
        self._up()

    async def upsert_items(self, tenant_id: str, items: Sequence[InventoryItem]) -> None:
        self._up()
        self.items.update({i.key: i for i in items})

    async def delete_items(self, tenant_id: str, keys: Sequence[str]) -> None:
        self._up()
        for key in keys:
            self.items.pop(key, None)

    async def search_documents(self, tenant_id: str, query: str, limit: int) -> list[DocumentMatch]:
        self._up()
        return []

    async def search_items(self, tenant_id: str, query: InventoryQuery) -> list[ItemMatch]:
        self._up()
        keys = [k for k, i in self.items.items() if query.matches(i)] + self.stale
        return [ItemMatch(key=k, score=1.0) for k in keys]

    async def drop_tenant(self, tenant_id: str) -> None:
        self.items.clear()

    async def close(self) -> None:
        return None


async def test_a_backend_that_was_down_catches_up_and_never_offers_removed_items(
    db: Database,
) -> None:
    tenant_id, _ = await make_tenant(db)
    index = FlakyIndex()
    service = KnowledgeService(db, index)
    items = generated(5)
    await service.apply_items(tenant_id=tenant_id, items=items, replace=True)
    assert set(index.items) == {i.key for i in items}

    index.down = True
    with pytest.raises(KnowledgeBackendUnavailable, match="unreachable"):
        await service.apply_items(tenant_id=tenant_id, items=items[:3], replace=True)
    # Stored, but the backend still has the two removed cars: the service reads every hit
    # back from the database, so they are not offered.
    index.down = False
    everything = InventoryQuery(available_only=False, limit=50)
    hits = await service.search_items(tenant_id=tenant_id, query=everything)
    assert {h.item.key for h in hits} == {i.key for i in items[:3]}
    async with db.session() as session:
        upserts, forgets = await inventory_repo.pending(session, tenant_id=tenant_id)
    assert not upserts and sorted(forgets) == ["stock-3", "stock-4"]

    assert await service.sync_index(tenant_id=tenant_id) == 2
    assert set(index.items) == {i.key for i in items[:3]}
    assert await service.sync_index(tenant_id=tenant_id) == 0
    index.stale = ["stock-4"]
    hits = await service.search_items(tenant_id=tenant_id, query=everything)
    assert "stock-4" not in {h.item.key for h in hits}


def _car(key: str, model: str, fuel: str, price: int, make: str = "Volkswagen") -> InventoryItem:
    return NewInventoryItem(
        key=key, make=make, model=model, fuel=fuel, price=Decimal(price), year=2019
    ).keyed()


async def test_a_wish_is_answered_with_matches_or_the_nearest_alternatives(db: Database) -> None:
    tenant_id, _ = await make_tenant(db)
    service = KnowledgeService(db, DatabaseIndex(db))
    stock = [
        _car("g1", "Golf", "diesel", 18_950),
        _car("g2", "Golf", "diesel", 23_400),
        _car("g3", "Golf", "diesel", 27_900),
        _car("g4", "Golf", "benzine", 16_500),
        _car("p1", "Polo", "diesel", 12_000),
    ]
    await service.apply_items(tenant_id=tenant_id, items=stock, replace=True)

    wish = query_from_fields(
        {"make": "Volkswagen", "model": "Golf", "fuel_type": "diesel", "budget": 25_000}
    )
    assert wish is not None
    answer = await service.answer_wish(tenant_id=tenant_id, wish=wish)
    assert [h.item.key for h in answer.matches] == ["g1", "g2"]
    assert answer.cited() == tuple(h.item for h in answer.matches)

    cheap = wish.model_copy(update={"max_price": Decimal(15_000)})
    answer = await service.answer_wish(tenant_id=tenant_id, wish=cheap)
    assert not answer.matches
    # Giving up the budget first: the nearest prices above it.
    assert answer.relaxed == ("max_price",)
    assert [h.item.key for h in answer.alternatives] == ["g1", "g2", "g3"]

    nothing = InventoryQuery(make="Ferrari")
    answer = await service.answer_wish(tenant_id=tenant_id, wish=nothing)
    assert answer.matches == () and answer.alternatives == () and answer.cited() == ()


def test_relaxations_give_up_one_wish_then_more() -> None:
    wish = InventoryQuery(make="Volkswagen", model="Golf", max_price=Decimal(20_000))
    steps = [dropped for dropped, _ in relaxations(wish)]
    assert (
        steps
        == [
            ("max_price",),
            ("model",),
            ("make",),
            ("max_price", "model"),
            ("max_price", "model", "make"),
        ][: len(steps)]
    )
    assert all(q.structured() for _, q in relaxations(wish))


def test_fields_become_a_wish() -> None:
    wish = query_from_fields(
        {
            "make": "Toyota",
            "fuel_type": "hybride",
            "budget": "€ 25.000",
            "year": 2019,
            "max_mileage": 80_000,
            "name": "Piet",
        }
    )
    assert wish == InventoryQuery(
        make="Toyota",
        fuel=Fuel.HYBRID,
        max_price=Decimal(25_000),
        min_year=2019,
        max_mileage=80_000,
    )
    assert query_from_fields({"name": "Piet", "financing": True}) is None
    assert query_from_fields({"fuel_type": "steam"}) is None
