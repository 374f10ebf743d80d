"""`leadflow inventory import|search|sync` against a migrated SQLite file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from models.db import Database
from models.settings import get_settings
from tests.conftest import make_tenant
from workers import cli_inventory

CSV = """voorraadnummer;merk;model;uitvoering;bouwjaar;prijs;brandstof;km-stand;url
A1;Volkswagen;Golf;1.6 TDI Highline;2019;€ 18.950,-;Diesel;85.000 km;https://dealer.example/a1
A2;Volkswagen;Golf;2.0 TDI Style;2021;€ 24.450,-;Diesel;41.000 km;https://dealer.example/a2
A3;Toyota;Yaris;1.5 Hybrid;2020;€ 17.900,-;Hybride;52.000 km;https://dealer.example/a3
A4;;Polo;1.0 TSI;2018;€ 11.950,-;Benzine;90.000 km;https://dealer.example/a4
"""
MAPPING_FREE_JSON = """[{"key": "A1", "make": "Volkswagen", "model": "Golf", "price": 18950,
  "fuel": "diesel", "url": "https://dealer.example/a1"}]"""


@pytest.fixture
def app(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("COLUMNS", "400")  # rich wraps long paths at the terminal's width
    get_settings.cache_clear()
    app = typer.Typer()
    cli_inventory.register(app)
    return app


async def _run(app: typer.Typer, *args: str) -> tuple[int, str]:
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args))
    return result.exit_code, result.output


async def test_import_search_and_replace(
    sqlite_db: Database, app: typer.Typer, tmp_path: Path
) -> None:
    tid, _ = await make_tenant(sqlite_db)
    feed = tmp_path / "voorraad.csv"
    # A Dutch dealer's export (`;`, Dutch headers, Dutch money and kilometres), mapped on the
    # command line; the row without a make is reported, not imported.
    feed.write_text(CSV, encoding="utf-8")
    dutch = [
        "-m",
        "key=voorraadnummer",
        "-m",
        "make=merk",
        "-m",
        "variant=uitvoering",
        "-m",
        "year=bouwjaar",
        "-m",
        "price=prijs",
        "-m",
        "fuel=brandstof",
        "-m",
        "mileage=km-stand",
    ]
    code, out = await _run(app, "inventory", "import", str(feed), "--tenant", tid, *dutch)
    assert code == 0, out
    assert "3 received: 3 added" in out
    assert "row 5" in out  # the spreadsheet row of the Polo without a make

    code, out = await _run(
        app,
        "inventory",
        "search",
        "--tenant",
        tid,
        "--make",
        "volkswagen",
        "--fuel",
        "diesel",
        "--max-price",
        "20000",
    )
    assert code == 0, out
    assert "Golf" in out and "18,950.00" in out and "24,450" not in out

    json_feed = tmp_path / "one.json"
    json_feed.write_text(MAPPING_FREE_JSON, encoding="utf-8")
    code, out = await _run(app, "inventory", "import", str(json_feed), "--tenant", tid)
    assert code == 0, out
    assert "removed" in out  # the JSON file replaced the CSV's list: only A1 stays

    code, out = await _run(app, "inventory", "search", "--tenant", tid, "--make", "toyota")
    assert code == 0 and "nothing matches" in out

    code, out = await _run(app, "inventory", "sync", "--tenant", tid)
    assert code == 0 and "0 pending" in out


async def test_bad_input_is_refused_clearly(
    sqlite_db: Database, app: typer.Typer, tmp_path: Path
) -> None:
    tid, _ = await make_tenant(sqlite_db)
    odd = tmp_path / "stock.txt"
    odd.write_text("hello", encoding="utf-8")
    code, out = await _run(app, "inventory", "import", str(odd), "--tenant", tid)
    assert code == 1 and "--format csv" in out

    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    code, out = await _run(app, "inventory", "import", str(broken), "--tenant", tid)
    assert code == 1 and "broken.json" in out

    feed = tmp_path / "feed.csv"
    feed.write_text(CSV.replace("merk", "make"), encoding="utf-8")
    code, out = await _run(app, "inventory", "import", str(feed), "--tenant", "nobody")
    assert code == 1 and "unknown tenant" in out
    code, out = await _run(
        app, "inventory", "import", str(feed), "--tenant", tid, "-m", "colour_code=kleur"
    )
    assert code == 1 and "unknown item fields" in out
    code, out = await _run(app, "inventory", "import", str(feed), "--tenant", tid, "-m", "make")
    assert code == 2 and "FIELD=COLUMN" in out

    code, out = await _run(
        app, "inventory", "search", "--tenant", tid, "--fuel", "diesel", "--limit", "0"
    )
    assert code == 2


async def test_the_demo_inventory_loads_and_has_the_examples_golfs(
    sqlite_db: Database, app: typer.Typer
) -> None:
    """`up` seeds the demo dealership from docs/examples/demo-inventory.csv; the example WAHA
    message asks for a Golf around €25,000, so the stock must have some."""
    from decimal import Decimal

    from models.inventory import InventoryQuery
    from models.knowledge.database_index import DatabaseIndex
    from models.knowledge.service import KnowledgeService

    tid, _ = await make_tenant(sqlite_db)
    path = Path(__file__).resolve().parents[2] / "docs" / "examples" / "demo-inventory.csv"
    parsed = cli_inventory.parse_file(
        cli_inventory.file_spec(path.name, cli_inventory.SourceKind.CSV_FEED), path.read_bytes()
    )
    assert len(parsed.items) == 28 and not parsed.skipped
    done = await cli_inventory.seed_demo_inventory(get_settings(), sqlite_db, tid, path)
    assert done.startswith("28 received: 28 added")
    knowledge = KnowledgeService(sqlite_db, DatabaseIndex(sqlite_db))
    golfs = await knowledge.search_items(
        tenant_id=tid,
        query=InventoryQuery(make="Volkswagen", model="Golf", max_price=Decimal(25_000)),
    )
    assert len(golfs) == 3
