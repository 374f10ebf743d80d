"""`leadflow campaign …` against the real API served on loopback, with the real campaign
workflow and activities: create (held), a refused pause, approve, watch to the end, show, list,
and the CLI's own bad input."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import pytest
import typer
from temporalio.client import Client
from typer.testing import CliRunner, Result

from models.settings import Settings
from tests.campaigns.seed import Person, campaign_worker, seed_job
from tests.stack import live_stack
from workers import cli_campaign

pytestmark = pytest.mark.timeout(240)


def cli() -> typer.Typer:
    app = typer.Typer()
    cli_campaign.register(app)

    @app.callback()
    def _root() -> None:  # keeps `campaign` a subcommand, as in the real CLI
        pass

    return app


async def run(*args: str) -> Result:
    # In a thread: the CLI's HTTP calls are blocking, the API serves in this event loop.
    return await asyncio.to_thread(
        CliRunner().invoke,
        cli(),
        ["campaign", *args],
        env={"COLUMNS": "200", "LEADFLOW_API_KEY": ""},
    )


async def test_create_approve_watch_show_and_list(
    temporal_client: Client, settings_factory: Callable[..., Settings], sqlite_url: str
) -> None:
    settings = settings_factory(sqlite_url)
    async with live_stack(temporal_client, settings, start_worker=False) as stack:
        job_id, _ = await seed_job(
            stack.db,
            stack.tenant_id,
            [
                Person("Ann Ames", "ann@acme.test"),
                Person("Bob Bell", "bob@bell.test"),
                Person("Cid Cole", None, phone="+31612345678"),
            ],
        )
        api = ["--api-url", stack.api_url, "--api-key", stack.api_key]
        async with campaign_worker(stack.client, stack.db, settings):
            created = await run(
                "create", "--job", job_id, "--hold", "--rate", "3600", "--window", "0:00-0:00",
                "--name", "autumn", *api,
            )  # fmt: skip
            assert created.exit_code == 0, created.output
            match = re.search(r"campaign (\w+): awaiting_approval, 2 recipients", created.output)
            assert match, created.output
            assert "left out: 1 (no_email)" in created.output
            campaign_id = match.group(1)

            refused = await run("pause", campaign_id, *api)
            assert refused.exit_code == 3
            assert "approve it (or cancel it) first" in refused.output

            approved = await run("approve", campaign_id, "--idempotency-key", "a1", *api)
            assert approved.exit_code == 0 and f"campaign {campaign_id}: running" in approved.output

            watched = await run("watch", campaign_id, "--poll", "0.2", *api)
            assert watched.exit_code == 0, watched.output
            assert f"campaign {campaign_id}: completed" in watched.output
            assert "2/2" in watched.output and "2 sent" in watched.output

            shown = await run("show", campaign_id, *api)
            assert shown.exit_code == 0, shown.output
            assert "completed" in shown.output and "meetings booked" in shown.output
            assert f"job {job_id}" in shown.output

            listed = await run("list", *api)
            assert (
                listed.exit_code == 0 and campaign_id in listed.output and "autumn" in listed.output
            )

            ended = await run("resume", campaign_id, *api)
            assert ended.exit_code == 3 and "campaign is completed" in ended.output
            unknown = await run("show", "nope", *api)
            assert unknown.exit_code == 1 and "campaign not found" in unknown.output


async def test_bad_command_lines_are_refused_before_asking_the_api() -> None:
    api = ["--api-url", "http://127.0.0.1:9", "--api-key", "k"]
    nothing = await run("create", *api)
    assert nothing.exit_code == 2 and "which leads?" in nothing.output
    both = await run("create", "--job", "j", "--has-email", *api)
    assert both.exit_code == 2 and "not both" in both.output
    window = await run("create", "--job", "j", "--window", "9-5", *api)
    assert window.exit_code == 2 and "HH:MM-HH:MM" in window.output
    zone = await run("create", "--job", "j", "--timezone", "UTC", *api)
    assert zone.exit_code == 2 and "--timezone needs --window" in zone.output
    no_key = await run("list", "--api-url", "http://127.0.0.1:9")
    assert no_key.exit_code == 2 and "no API key" in no_key.output
    unreachable = await run("list", *api)
    assert unreachable.exit_code == 1 and "cannot reach the leadflow API" in unreachable.output
    helped = await run("--help")
    assert helped.exit_code == 0 and "approve" in helped.output and "watch" in helped.output
