"""`leadflow inventory import|search|sync`: a tenant's inventory from the command line.

Works on the database and the configured knowledge backend directly (operators on the server
need no API key), through the same KnowledgeService and parser the API and the ingestion
workflow use."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from models.db import Database, migrate
from models.inventory import IngestDiff, InventoryQuery, ItemHit
from models.inventory_parse import ParsedInventory, SourceFormatError, parse_source
from models.knowledge.index import KnowledgeBackendError
from models.knowledge.service import IndexPending, KnowledgeService, build_index
from models.knowledge_sources import SourceKind, SourceSpec
from models.repo import tenants as tenant_repo
from models.settings import Settings, get_settings

inventory = typer.Typer(
    help="A tenant's inventory: import a CSV or JSON feed file, search it as the agent "
    "would, push pending changes to the search backend.",
    no_args_is_help=True,
)
console = Console()
err = Console(stderr=True)

# A local file has no URL of its own: its links must be absolute (relative ones are resolved
# against this and are therefore wrong, so the parser's URL check refuses nothing useful).
LOCAL_BASE = "http://localhost/"


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(1)


@asynccontextmanager
async def _knowledge(settings: Settings, tenant: str) -> AsyncIterator[KnowledgeService]:
    """The tenant's knowledge service for one command: a backend error is the command's error
    (IndexPending, a partial success, is the caller's to report)."""
    await asyncio.to_thread(migrate, settings.resolved_database_url)
    db = Database(settings.resolved_database_url)
    try:
        async with db.session() as session:
            if await tenant_repo.get_tenant(session, tenant_id=tenant) is None:
                raise _fail(f"unknown tenant {tenant!r} (see `leadflow tenant list`)")
        service = KnowledgeService(db, build_index(settings, db))
        try:
            yield service
        except IndexPending:
            raise
        except KnowledgeBackendError as exc:
            raise _fail(str(exc)) from exc
        finally:
            await service.index.close()
    finally:
        await db.dispose()


def file_spec(name: str, kind: SourceKind, mapping: dict[str, str] | None = None) -> SourceSpec:
    """A feed read from a file rather than fetched (a local file has no URL of its own)."""
    return SourceSpec(name=name, kind=kind, url=LOCAL_BASE, mapping=mapping or {})


def parse_file(spec: SourceSpec, body: bytes) -> ParsedInventory:
    content_type = "text/csv" if spec.kind == SourceKind.CSV_FEED else "application/json"
    return parse_source(spec, body, content_type=content_type, base_url=LOCAL_BASE)


async def seed_demo_inventory(settings: Settings, db: Database, tenant_id: str, path: Path) -> str:
    """`up`'s demo tenant gets a small stock (docs/examples/demo-inventory.csv) when it is
    made, so the first conversation can cite cars. Returns what happened, for the log."""
    body = await asyncio.to_thread(path.read_bytes)
    parsed = parse_file(file_spec(path.name, SourceKind.CSV_FEED), body)
    knowledge = KnowledgeService(db, build_index(settings, db))
    try:
        diff = await knowledge.apply_items(tenant_id=tenant_id, items=parsed.items, replace=True)
    finally:
        await knowledge.index.close()
    return diff.summary()


def _print_diff(diff: IngestDiff) -> None:
    console.print(diff.summary())
    for label, keys in (
        ("added", diff.added_keys),
        ("updated", diff.updated_keys),
        ("removed", diff.removed_keys),
    ):
        if keys:
            more = getattr(diff, label) - len(keys)
            console.print(f"  {label}: " + ", ".join(keys) + (f" (+{more} more)" if more else ""))


async def _import(
    settings: Settings, tenant: str, path: Path, body: bytes, spec: SourceSpec, replace: bool
) -> int:
    try:
        parsed = parse_file(spec, body)
    except SourceFormatError as exc:
        raise _fail(f"{path}: {exc}") from exc
    for skipped in parsed.skipped[:20]:
        err.print(f"[yellow]skipped[/yellow] {skipped}")
    if len(parsed.skipped) > 20:
        err.print(f"[yellow]… and {len(parsed.skipped) - 20} more skipped[/yellow]")
    try:
        async with _knowledge(settings, tenant) as service:
            diff = await service.apply_items(tenant_id=tenant, items=parsed.items, replace=replace)
    except IndexPending as exc:
        _print_diff(exc.diff)
        err.print(f"[yellow]stored; search index pending:[/yellow] {exc.reason}")
        return 2
    _print_diff(diff)
    return 0


@inventory.command("import")
def import_command(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A CSV or JSON feed.")],
    tenant: Annotated[str, typer.Option("--tenant", "-t", help="The tenant's id.")],
    replace: Annotated[
        bool,
        typer.Option(
            "--replace/--upsert",
            help="--replace (default): the file is the whole list of imported items; those "
            "missing from it are removed. --upsert: add and update only.",
        ),
    ] = True,
    kind: Annotated[
        str | None,
        typer.Option("--format", help="csv or json (default: from the file's extension)."),
    ] = None,
    mapping: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            "-m",
            help="FIELD=COLUMN, repeatable: which column (CSV) or key (JSON, dots walk into "
            "objects) holds an item field, e.g. -m make=merk -m price=prijs. Fields not "
            "mapped are read from a column of their own name.",
        ),
    ] = None,
) -> None:
    """Import a feed file as the tenant's API-posted list and print what changed."""
    chosen = (kind or path.suffix.lstrip(".")).lower()
    if chosen not in ("csv", "json"):
        raise _fail(f"cannot tell the format of {path.name}; pass --format csv or --format json")
    pairs: dict[str, str] = {}
    for entry in mapping or []:
        field, sep, column = entry.partition("=")
        if not sep or not field.strip() or not column.strip():
            raise typer.BadParameter(f"--map must look like FIELD=COLUMN, got {entry!r}")
        pairs[field.strip()] = column.strip()
    try:
        spec = file_spec(
            path.name, SourceKind.CSV_FEED if chosen == "csv" else SourceKind.JSON_FEED, pairs
        )
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    code = asyncio.run(_import(get_settings(), tenant, path, path.read_bytes(), spec, replace))
    if code:
        raise typer.Exit(code)


def _hits_table(hits: list[ItemHit]) -> Table:
    table = Table("score", "key", "car", "fuel", "km", "price", "url")
    for hit in hits:
        item = hit.item
        table.add_row(
            f"{hit.score:.3f}",
            item.key,
            item.title(),
            item.fuel.value if item.fuel else "",
            f"{item.mileage:,}" if item.mileage is not None else "",
            f"{item.currency} {item.price:,.2f}" if item.price is not None else "",
            item.url,
        )
    return table


async def _search(settings: Settings, tenant: str, query: InventoryQuery) -> list[ItemHit]:
    async with _knowledge(settings, tenant) as service:
        return await service.search_items(tenant_id=tenant, query=query)


@inventory.command("search")
def search_command(
    tenant: Annotated[str, typer.Option("--tenant", "-t", help="The tenant's id.")],
    make: Annotated[str | None, typer.Option(help="e.g. Volkswagen")] = None,
    model: Annotated[str | None, typer.Option(help="e.g. Golf")] = None,
    fuel: Annotated[str | None, typer.Option(help="petrol, diesel, hybrid, electric, …")] = None,
    max_price: Annotated[Decimal | None, typer.Option("--max-price")] = None,
    min_year: Annotated[int | None, typer.Option("--min-year")] = None,
    max_mileage: Annotated[int | None, typer.Option("--max-mileage", help="km")] = None,
    text: Annotated[str, typer.Option("--text", "-q", help="Free text, ranked.")] = "",
    limit: Annotated[int, typer.Option(min=1, max=50)] = 10,
) -> None:
    """What the agent would find for these wishes, best first, with scores."""
    try:
        query = InventoryQuery(
            make=make,
            model=model,
            fuel=fuel,
            max_price=max_price,
            min_year=min_year,
            max_mileage=max_mileage,
            text=text,
            limit=limit,
        )
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    hits = asyncio.run(_search(get_settings(), tenant, query))
    if not hits:
        console.print("nothing matches")
        return
    console.print(_hits_table(hits))


async def _sync(settings: Settings, tenant: str, everything: bool) -> int:
    async with _knowledge(settings, tenant) as service:
        if everything:
            documents, items = await service.reindex(tenant_id=tenant)
            return documents + items
        return await service.sync_index(tenant_id=tenant)


@inventory.command("sync")
def sync_command(
    tenant: Annotated[str, typer.Option("--tenant", "-t", help="The tenant's id.")],
    everything: Annotated[
        bool,
        typer.Option(
            "--all",
            help="Push every document and item again, not only pending changes: after "
            "pointing leadflow at a new or emptied Weaviate.",
        ),
    ] = False,
) -> None:
    """Push the changes the search backend has not taken yet (after a Weaviate outage)."""
    settings = get_settings()
    pushed = asyncio.run(_sync(settings, tenant, everything))
    backend = "Weaviate" if settings.weaviate_url else "the database (nothing to push)"
    what = "document(s) and item(s)" if everything else "pending change(s)"
    console.print(f"{pushed} {what} pushed to {backend}")


def register(app: typer.Typer) -> None:
    app.add_typer(inventory, name="inventory")
