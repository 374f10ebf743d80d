"""`leadflow integrations add|list|test` against a migrated SQLite file and a fake HubSpot."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from models.db import Database
from models.settings import Settings, get_settings
from tests.conftest import make_tenant
from tests.fakes.crm import HubSpotFake
from workers import cli_crm


async def test_add_list_test(
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
    try:
        with HubSpotFake(token="pat-cli") as hs:
            bad = await asyncio.to_thread(
                runner.invoke,
                app,
                [
                    "integrations",
                    "add",
                    "--tenant",
                    tid,
                    "--kind",
                    "hubspot",
                    "--name",
                    "hs",
                    "-c",
                    "access_token=pat-cli",
                    "-m",
                    "score=Bad Name",
                ],
            )
            assert bad.exit_code == 2 and "not a valid hubspot property" in bad.output
            added = await asyncio.to_thread(
                runner.invoke,
                app,
                [
                    "integrations",
                    "add",
                    "--tenant",
                    tid,
                    "--kind",
                    "hubspot",
                    "--name",
                    "hs",
                    "-c",
                    "access_token=pat-cli",
                    "--base-url",
                    hs.url,
                ],
            )
            assert added.exit_code == 0, added.output
            integration_id = added.output.strip().split()[-1]
            listed = await asyncio.to_thread(
                runner.invoke, app, ["integrations", "list", "--tenant", tid]
            )
            assert "hs" in listed.output and "pat-cli" not in listed.output
            tested = await asyncio.to_thread(
                runner.invoke, app, ["integrations", "test", integration_id, "--tenant", tid]
            )
            assert tested.exit_code == 0, tested.output
            assert "reachable" in tested.output
            result: Any = hs.calls("GET", "/crm/v3/objects/contacts$")
            assert len(result) == 1
    finally:
        get_settings.cache_clear()
