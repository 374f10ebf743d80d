"""`leadflow integrations add --kind gohighlevel`, list and test against the GoHighLevel fake."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import typer
from typer.testing import CliRunner, Result

from models.db import Database
from models.settings import Settings, get_settings
from tests.conftest import make_tenant
from tests.fakes.gohighlevel import GoHighLevelFake
from workers import cli_crm

LOCATION = "ve9EPM428h8vShlRW1KT"


async def test_add_list_test_gohighlevel(
    sqlite_db: Database,
    sqlite_url: str,
    settings_factory: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tid, _ = await make_tenant(sqlite_db)
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", sqlite_url)
    get_settings.cache_clear()
    app = typer.Typer()
    cli_crm.register(app)
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(app, list(args))

    add = ["integrations", "add", "--tenant", tid, "--kind", "gohighlevel", "--name", "ghl"]
    try:
        with GoHighLevelFake(token="pit-cli", location_id=LOCATION) as ghl:
            # the location id is part of the credentials: without it nothing is stored
            missing = await asyncio.to_thread(invoke, *add, "-c", "private_integration_token=x")
            assert missing.exit_code == 2 and "credentials.location_id" in missing.output
            bad_map = await asyncio.to_thread(
                invoke,
                *add,
                "-c",
                "private_integration_token=pit-cli",
                "-c",
                f"location_id={LOCATION}",
                "-m",
                "score=lead_score",
            )
            assert bad_map.exit_code == 2
            assert "not a valid gohighlevel property" in bad_map.output
            added = await asyncio.to_thread(
                invoke,
                *add,
                "-c",
                "private_integration_token=pit-cli",
                "-c",
                f"location_id={LOCATION}",
                "--base-url",
                ghl.url,
            )
            assert added.exit_code == 0, added.output
            integration_id = added.output.strip().split()[-1]
            listed = await asyncio.to_thread(invoke, "integrations", "list", "--tenant", tid)
            assert "gohighlevel" in listed.output and "pit-cli" not in listed.output
            tested = await asyncio.to_thread(
                invoke, "integrations", "test", integration_id, "--tenant", tid
            )
            assert tested.exit_code == 0, tested.output
            assert "reachable" in tested.output
            [call] = ghl.calls("GET", f"^/locations/{LOCATION}/customFields$")
            assert call.headers["authorization"] == "Bearer pit-cli"
    finally:
        get_settings.cache_clear()
