"""The canonical inventory in the database: applying a list of items (what changed), the rows a
search backend has not taken yet, lookups by key, and the database's own structured search.

Removed items are kept as tombstones (`removed_at`) until the search backend has forgotten
them (`purge_forgotten`), so a backend that was down during an ingestion never keeps offering
a sold car."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import delete, func, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.inventory import (
    DIFF_SAMPLE,
    Fuel,
    IngestDiff,
    InventoryItem,
    InventoryQuery,
    ItemHit,
    Transmission,
    plain_text,
)
from models.knowledge_tables import InventoryItemRow

# The database ranks free text in Python over the rows the SQL filters leave; this bounds them.
MAX_SCAN_ROWS = 5000
_WORD = re.compile(r"\w+", re.UNICODE)


def norm(text: str) -> str:
    """What make/model filters compare: lowercase without accents ("Škoda" → "skoda")."""
    return plain_text(text)


def to_item(row: InventoryItemRow) -> InventoryItem:
    return InventoryItem(
        key=row.key,
        make=row.make,
        model=row.model,
        variant=row.variant,
        year=row.year,
        price=row.price,
        currency=row.currency,
        fuel=Fuel(row.fuel) if row.fuel else None,
        transmission=Transmission(row.transmission) if row.transmission else None,
        mileage=row.mileage,
        colour=row.colour,
        url=row.url,
        image_url=row.image_url,
        available=row.available,
    )


def _fill(row: InventoryItemRow, item: InventoryItem, source_id: str) -> None:
    row.source_id = source_id
    row.make = item.make
    row.make_norm = norm(item.make)
    row.model = item.model
    row.model_norm = norm(item.model)
    row.variant = item.variant
    row.year = item.year
    row.price = item.price
    row.currency = item.currency
    row.fuel = item.fuel.value if item.fuel else None
    row.transmission = item.transmission.value if item.transmission else None
    row.mileage = item.mileage
    row.colour = item.colour
    row.url = item.url
    row.image_url = item.image_url
    row.available = item.available
    row.description = item.describe()
    row.content_hash = item.content_hash()


async def apply_items(
    session: AsyncSession,
    *,
    tenant_id: str,
    source_id: str,
    items: Sequence[InventoryItem],
    replace: bool,
    indexed: bool,
) -> IngestDiff:
    """Upsert `items` (by key; an item moves to this source) and, with `replace`, tombstone this
    source's items that are not among them. Rows written are `indexed` as given (True when the
    database is the search backend). One transaction; the caller commits."""
    now = datetime.now(UTC)
    latest: dict[str, InventoryItem] = {}
    for item in items:
        latest[item.key] = item  # a key listed twice: the last copy wins
    existing = {
        row.key: row
        for row in (
            await session.exec(
                select(InventoryItemRow).where(col(InventoryItemRow.tenant_id) == tenant_id)
            )
        ).all()
    }
    added: list[str] = []
    updated: list[str] = []
    unchanged = 0
    for key, item in latest.items():
        row = existing.get(key)
        if row is None:
            row = InventoryItemRow(
                tenant_id=tenant_id, key=key, make="", make_norm="", content_hash=""
            )
            _fill(row, item, source_id)
            row.indexed = indexed
            session.add(row)
            added.append(key)
            continue
        if row.removed_at is None and row.content_hash == item.content_hash():
            if row.source_id != source_id:
                row.source_id = source_id
            unchanged += 1
            continue
        (added if row.removed_at is not None else updated).append(key)
        _fill(row, item, source_id)
        row.removed_at = None
        row.indexed = indexed
        row.updated_at = now
    removed: list[str] = []
    if replace:
        for key, row in existing.items():
            if row.source_id == source_id and row.removed_at is None and key not in latest:
                row.removed_at = now
                row.indexed = indexed
                row.updated_at = now
                removed.append(key)
    await session.flush()
    if indexed and removed:
        await purge_forgotten(session, tenant_id=tenant_id, keys=removed)
    return IngestDiff(
        received=len(items),
        added=len(added),
        updated=len(updated),
        removed=len(removed),
        unchanged=unchanged,
        added_keys=tuple(added[:DIFF_SAMPLE]),
        updated_keys=tuple(updated[:DIFF_SAMPLE]),
        removed_keys=tuple(removed[:DIFF_SAMPLE]),
    )


async def remove_item(session: AsyncSession, *, tenant_id: str, key: str, indexed: bool) -> bool:
    """Tombstone one item (deleted outright when the database is the search backend)."""
    row = await session.get(InventoryItemRow, (tenant_id, key))
    if row is None or row.removed_at is not None:
        return False
    if indexed:
        await session.delete(row)
    else:
        row.removed_at = datetime.now(UTC)
        row.indexed = False
        row.updated_at = row.removed_at
    return True


async def pending(
    session: AsyncSession, *, tenant_id: str, limit: int = 500
) -> tuple[list[tuple[InventoryItem, str]], list[str]]:
    """Rows the search backend has not taken: (item, content hash) to upsert, keys to forget."""
    rows = (
        await session.exec(
            select(InventoryItemRow)
            .where(
                col(InventoryItemRow.tenant_id) == tenant_id,
                col(InventoryItemRow.indexed).is_(False),
            )
            .limit(limit)
        )
    ).all()
    upserts = [(to_item(r), r.content_hash) for r in rows if r.removed_at is None]
    forgets = [r.key for r in rows if r.removed_at is not None]
    return upserts, forgets


async def mark_all_pending(session: AsyncSession, *, tenant_id: str) -> int:
    """Every live item of the tenant is to be pushed again (a new or emptied backend)."""
    connection = await session.connection()
    result = await connection.execute(
        update(InventoryItemRow)
        .where(
            col(InventoryItemRow.tenant_id) == tenant_id,
            col(InventoryItemRow.removed_at).is_(None),
        )
        .values(indexed=False)
    )
    return int(result.rowcount or 0)


async def tenants_with_pending(session: AsyncSession) -> list[str]:
    rows = await session.exec(
        select(InventoryItemRow.tenant_id)
        .where(col(InventoryItemRow.indexed).is_(False))
        .distinct()
    )
    return list(rows.all())


async def mark_indexed(
    session: AsyncSession, *, tenant_id: str, versions: Sequence[tuple[str, str]]
) -> None:
    """The backend took these (key, content hash) versions; a row changed since stays pending."""
    connection = await session.connection()  # Core statements: sqlmodel's exec types ORM ones
    for key, content_hash in versions:
        await connection.execute(
            update(InventoryItemRow)
            .where(
                col(InventoryItemRow.tenant_id) == tenant_id,
                col(InventoryItemRow.key) == key,
                col(InventoryItemRow.content_hash) == content_hash,
                col(InventoryItemRow.removed_at).is_(None),
            )
            .values(indexed=True)
        )


async def purge_forgotten(session: AsyncSession, *, tenant_id: str, keys: Sequence[str]) -> None:
    """The backend forgot these removed items: drop their tombstones."""
    if not keys:
        return
    connection = await session.connection()
    await connection.execute(
        delete(InventoryItemRow).where(
            col(InventoryItemRow.tenant_id) == tenant_id,
            col(InventoryItemRow.key).in_(list(keys)),
            col(InventoryItemRow.removed_at).is_not(None),
        )
    )


async def by_keys(
    session: AsyncSession, *, tenant_id: str, keys: Sequence[str]
) -> dict[str, InventoryItem]:
    """The live items with these keys (removed ones are not returned)."""
    if not keys:
        return {}
    rows = await session.exec(
        select(InventoryItemRow).where(
            col(InventoryItemRow.tenant_id) == tenant_id,
            col(InventoryItemRow.key).in_(list(keys)),
            col(InventoryItemRow.removed_at).is_(None),
        )
    )
    return {row.key: to_item(row) for row in rows.all()}


async def counts(session: AsyncSession, *, tenant_id: str) -> dict[str, int]:
    """Live items per source."""
    rows = await session.exec(
        select(InventoryItemRow.source_id, func.count())
        .where(
            col(InventoryItemRow.tenant_id) == tenant_id,
            col(InventoryItemRow.removed_at).is_(None),
        )
        .group_by(col(InventoryItemRow.source_id))
    )
    return {source: int(n) for source, n in rows.all()}


def text_score(description: str, terms: Sequence[str]) -> float:
    """How many of the query's words the item's description has (each word once)."""
    words = set(_WORD.findall(norm(description)))
    return float(sum(1 for t in terms if t in words))


async def search(session: AsyncSession, *, tenant_id: str, query: InventoryQuery) -> list[ItemHit]:
    """The database backend's structured search: SQL filters, then the free text ranks (ties:
    lowest price first); without free text, lowest price first, each hit scored 1."""
    statement = select(InventoryItemRow).where(
        col(InventoryItemRow.tenant_id) == tenant_id,
        col(InventoryItemRow.removed_at).is_(None),
    )
    if query.available_only:
        statement = statement.where(col(InventoryItemRow.available).is_(True))
    if query.make is not None:
        statement = statement.where(col(InventoryItemRow.make_norm) == norm(query.make))
    if query.model is not None:
        statement = statement.where(col(InventoryItemRow.model_norm) == norm(query.model))
    if query.fuel is not None:
        statement = statement.where(col(InventoryItemRow.fuel) == query.fuel.value)
    if query.transmission is not None:
        statement = statement.where(col(InventoryItemRow.transmission) == query.transmission.value)
    if query.min_price is not None:
        statement = statement.where(col(InventoryItemRow.price) >= query.min_price)
    if query.max_price is not None:
        statement = statement.where(col(InventoryItemRow.price) <= query.max_price)
    if query.min_year is not None:
        statement = statement.where(col(InventoryItemRow.year) >= query.min_year)
    if query.max_mileage is not None:
        statement = statement.where(col(InventoryItemRow.mileage) <= query.max_mileage)
    # Unknown prices last: NULLs sort differently per dialect, so order by "is null" first.
    statement = statement.order_by(
        col(InventoryItemRow.price).is_(None),
        col(InventoryItemRow.price),
        col(InventoryItemRow.key),
    )
    terms = [t for t in dict.fromkeys(_WORD.findall(norm(query.text))) if len(t) > 1]
    if not terms:
        rows = (await session.exec(statement.limit(query.limit))).all()
        return [ItemHit(item=to_item(r), score=1.0) for r in rows]
    rows = (await session.exec(statement.limit(MAX_SCAN_ROWS))).all()
    scored = [(text_score(r.description, terms), r) for r in rows]
    matching = [(s, r) for s, r in scored if s > 0]
    # Stable sort keeps the price order among equal scores.
    matching.sort(key=lambda pair: -pair[0])
    return [
        ItemHit(item=to_item(r), score=round(s / len(terms), 3)) for s, r in matching[: query.limit]
    ]


def price_distance(item: InventoryItem, target: Decimal | None) -> Decimal:
    if target is None or item.price is None:
        return Decimal(0)
    return abs(item.price - target)
