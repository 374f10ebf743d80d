"""`leadflow simulate`: a busy day of synthetic leads through a running leadflow.

The command serves a fake WAHA on loopback (workers/fake_waha.py), points a tenant's WAHA
channel at it, and plays dialogues (workers/simulator.py) as signed WAHA webhooks into the
running API; the replies leadflow sends through WAHA arrive at the fake and are timed there.

Tenant: by default `simulate`, created on first use in the database of the local settings
(LEADFLOW_DATABASE_URL / the data dir, like `leadflow tenant create`) with the car dealership
playbook, a WAHA channel at the fake (the key marks it as the simulator's) and a webhook secret
the leads sign with. `--tenant` uses another tenant of that database; one whose WAHA points at
a real WAHA is refused, since the simulated leads' replies would go out there."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from models.tenant import TenantSettings, WahaSettings
from workers.fake_waha import FakeWaha, FakeWahaError
from workers.simulator import (
    DEFAULT_DIALOGUES,
    DIALOGUE_FORMAT,
    Dialogue,
    DialogueError,
    LeadflowApi,
    Simulation,
    SimulationError,
    Target,
    load_dialogues,
)

if TYPE_CHECKING:
    from models.db import Database

DEFAULT_API_URL = "http://127.0.0.1:8000"
SIM_TENANT = "simulate"
SIM_KEY_PREFIX = "leadflow-simulate-"
"""The WAHA API key the simulator gives a tenant: its mark that the simulator may repoint it."""
DEFAULT_WAHA_PORT = 3300
"""A fixed port keeps the tenant's settings the same from run to run (no cache to wait out)."""
SETTINGS_CACHE_SECONDS = 5.0
"""Workers cache a tenant's settings this long (models/playbook_service.py PlaybookResolver)."""
PROGRESS_SECONDS = 0.25

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


# ---- the tenant ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    target: Target
    waha: WahaSettings
    created: bool
    changed: bool  # an existing tenant's WAHA settings changed (workers may hold the old ones)
    lent: bool  # a --tenant without WAHA: its WAHA channel is removed again after the run


def takeover_problem(tenant_id: str, waha: WahaSettings | None, fake_url: str) -> str | None:
    """Why the simulator must not point this tenant's WAHA at its fake (None: it may)."""
    if waha is None or waha.base_url.rstrip("/") == fake_url:
        return None
    if waha.api_key is not None and waha.api_key.get_secret_value().startswith(SIM_KEY_PREFIX):
        return None  # a fake WAHA of an earlier run (another --waha-port)
    return (
        f"tenant {tenant_id}'s WAHA points at {waha.base_url}, not at a simulator: refusing to "
        "take it over (the simulated leads' replies would go out through that WAHA)"
    )


def simulator_waha(current: WahaSettings | None, fake_url: str) -> WahaSettings:
    """The tenant's WAHA settings for this run: the fake's URL; key, session and webhook secret
    kept when the simulator set them before."""
    ours = (
        current is not None
        and current.api_key is not None
        and current.api_key.get_secret_value().startswith(SIM_KEY_PREFIX)
    )
    api_key = (
        current.api_key.get_secret_value()
        if ours and current is not None and current.api_key is not None
        else SIM_KEY_PREFIX + secrets.token_hex(8)
    )
    secret = current.webhook_secret if current is not None else None
    return WahaSettings.model_validate(
        {
            "base_url": fake_url,
            "api_key": api_key,
            "session": current.session if ours and current is not None else "default",
            "webhook_secret": secret.get_secret_value() if secret else secrets.token_hex(24),
        }
    )


@contextlib.asynccontextmanager
async def _local_database() -> AsyncIterator[tuple[str, Database]]:
    """The database of the local LEADFLOW_* settings (migrated) and the secret key."""
    from pydantic import ValidationError

    from models.db import Database, migrate
    from models.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        raise SimulationError(f"invalid LEADFLOW_* settings: {exc}") from exc
    url = settings.resolved_database_url
    try:
        await asyncio.to_thread(migrate, url)
    except Exception as exc:
        raise SimulationError(f"cannot open the local database: {exc}") from exc
    db = Database(url)
    try:
        yield settings.secret_key.get_secret_value(), db
    finally:
        await db.dispose()


async def prepare_tenant(tenant_id: str | None, *, fake_url: str) -> Prepared:
    """Create or repoint the tenant in the local database and issue an API key for this run."""
    from models.repo import tenants as tenant_repo

    tid = tenant_id or SIM_TENANT
    async with _local_database() as (secret_key, db), db.session() as session:
        row = await tenant_repo.get_tenant(session, tenant_id=tid)
        if row is None and tenant_id is not None:
            raise SimulationError(
                f"no tenant {tid!r} in the local database",
                hint="see `leadflow tenant list`, or leave out --tenant for the "
                f"simulator's own tenant {SIM_TENANT!r}",
            )
        current = (
            tenant_repo.tenant_settings(row, secret_key=secret_key)
            if row is not None
            else TenantSettings(playbook="car_dealership")
        )
        problem = takeover_problem(tid, current.waha, fake_url)
        if problem is not None:
            raise SimulationError(
                problem, hint="leave out --tenant to use the simulator's own tenant"
            )
        wanted = current.model_copy(update={"waha": simulator_waha(current.waha, fake_url)})
        if row is None:
            await tenant_repo.create_tenant(
                session,
                tenant_id=tid,
                name="Lead simulator (leadflow simulate)",
                secret_key=secret_key,
                settings=wanted,
            )
        elif wanted != current:
            await tenant_repo.save_tenant_settings(
                session, tenant=row, settings=wanted, secret_key=secret_key
            )
        key = await tenant_repo.create_api_key(session, tenant_id=tid)
    assert wanted.waha is not None and wanted.waha.webhook_secret is not None
    return Prepared(
        Target(tid, key, wanted.waha.webhook_secret.get_secret_value()),
        wanted.waha,
        created=row is None,
        changed=row is not None and wanted.waha != current.waha,
        lent=row is not None and current.waha is None,
    )


async def return_tenant(tenant_id: str, *, fake_url: str) -> bool:
    """Remove the WAHA channel a run lent to a tenant that had none, if it still points at the
    fake (its later replies go to the outbox again rather than to a WAHA that is gone)."""
    from models.repo import tenants as tenant_repo

    async with _local_database() as (secret_key, db), db.session() as session:
        row = await tenant_repo.get_tenant(session, tenant_id=tenant_id)
        if row is None:
            return False
        current = tenant_repo.tenant_settings(row, secret_key=secret_key)
        if current.waha is None or current.waha.base_url.rstrip("/") != fake_url:
            return False
        await tenant_repo.save_tenant_settings(
            session,
            tenant=row,
            settings=current.model_copy(update={"waha": None}),
            secret_key=secret_key,
        )
    return True


# ---- the run -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    leads: int
    rate: float
    dialogues: list[Dialogue]
    api_url: str
    tenant: str | None
    think_time: float
    timeout: float
    waha_port: int
    settle: float


async def run_simulation(opts: Options, holder: list[Simulation]) -> Simulation:
    """Check leadflow, serve the fake WAHA, prepare the tenant and play the leads. The
    simulation is put in `holder` as soon as it exists (for a summary after Ctrl-C)."""
    api = LeadflowApi(opts.api_url)
    waha: FakeWaha | None = None
    prepared: Prepared | None = None
    try:
        await api.check_running()
        waha = FakeWaha(api_key="")
        try:
            fake_url = waha.bind(port=opts.waha_port)
        except FakeWahaError as exc:
            raise SimulationError(str(exc), hint="choose another port with --waha-port") from exc
        prepared = await prepare_tenant(opts.tenant, fake_url=fake_url)
        assert prepared.waha.api_key is not None
        waha.api_key = prepared.waha.api_key.get_secret_value()
        waha.session = prepared.waha.session
        await waha.start()
        await api.check_key(prepared.target.api_key, prepared.target.tenant_id)
        if prepared.changed:
            console.print(
                f"tenant {prepared.target.tenant_id}: WAHA now at {fake_url}; waiting "
                f"{SETTINGS_CACHE_SECONDS:.0f}s for the workers to pick that up",
                highlight=False,
            )
            await asyncio.sleep(SETTINGS_CACHE_SECONDS)
        sim = Simulation(
            api=api,
            target=prepared.target,
            dialogues=opts.dialogues,
            leads=opts.leads,
            rate=opts.rate,
            think_time=opts.think_time,
            timeout=opts.timeout,
        )
        holder.append(sim)
        waha.on_send = sim.on_send
        names = ", ".join(sorted({d.name for d in opts.dialogues}))
        console.print(
            f"simulating {opts.leads} lead(s) at {opts.rate:g}/s on tenant "
            f"{prepared.target.tenant_id} ({'created' if prepared.created else 'reused'}) via "
            f"{api.base_url}; fake WAHA at {fake_url}; dialogues: {names}",
            highlight=False,
        )
        await _with_progress(sim)
        if opts.settle > 0:
            # Replies that come after a lead's last answer are duplicates too: give them a moment.
            await asyncio.sleep(opts.settle)
        return sim
    finally:
        if prepared is not None and prepared.lent:
            tid = prepared.target.tenant_id
            if await return_tenant(tid, fake_url=prepared.waha.base_url):
                console.print(f"tenant {tid}: its WAHA channel removed again", highlight=False)
        if waha is not None:
            await waha.stop()
        await api.aclose()


def _stats(counts: dict[str, int]) -> str:
    text = (
        f"sent {counts['sent']} · answered {counts['answered']} · waiting {counts['waiting']}"
        f" · escalated {counts['escalated']}"
    )
    for name in ("lost", "duplicates", "errors"):
        if counts[name]:
            text += f" · [red]{name} {counts[name]}[/]"
    return text


async def _with_progress(sim: Simulation) -> None:
    with Progress(
        TextColumn("[bold]simulate"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("leads done · {task.fields[stats]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("simulate", total=sim.leads, stats="")

        def refresh() -> None:
            counts = sim.counts()
            progress.update(task, completed=counts["leads_finished"], stats=_stats(counts))

        async def tick() -> None:
            while True:
                refresh()
                await asyncio.sleep(PROGRESS_SECONDS)

        ticker = asyncio.create_task(tick())
        try:
            await sim.run()
        finally:
            ticker.cancel()
            refresh()


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} ms"


def _leads_line(summary: dict[str, Any]) -> str:
    parts = []
    if summary["leads_started"] != summary["leads"]:
        parts.append(f"{summary['leads_started']} started")
    parts.append(f"{summary['leads_completed']} played to the end")
    if summary["escalations"]:
        parts.append(f"{summary['escalations']} handed to a human")
    return f"{summary['leads']} ({', '.join(parts)})"


def print_summary(summary: dict[str, Any], *, interrupted: bool = False) -> None:
    table = Table(
        title="leadflow simulate" + (" (interrupted)" if interrupted else ""),
        show_header=False,
        title_justify="left",
    )
    ttr = summary["time_to_reply_ms"]
    rules = ", ".join(f"{rule} {n}" for rule, n in sorted(summary["escalation_rules"].items()))
    rows = [
        ("leads", _leads_line(summary)),
        ("messages sent", str(summary["messages_sent"])),
        ("answered", str(summary["answered"])),
        ("time to reply p50 / p99", f"{_ms(ttr['p50'])} / {_ms(ttr['p99'])}"),
        ("escalations", f"{summary['escalations']}" + (f" ({rules})" if rules else "")),
        ("lost", str(summary["lost"])),
        ("duplicates", str(summary["duplicates"])),
        ("webhook errors", str(summary["webhook_errors"])),
        ("duration", f"{summary['duration_s']:g} s"),
    ]
    for key, label in (
        ("late_replies", "late replies (after --timeout)"),
        ("replies_after_handoff", "replies after a handoff"),
        ("other_replies", "other sends (specialist alerts)"),
    ):
        if summary[key]:
            rows.append((label, str(summary[key])))
    for label, value in rows:
        bad = label in ("lost", "duplicates", "webhook errors") and value != "0"
        table.add_row(label, Text(value, style="red" if bad else ""))
    console.print(table)
    for sample in summary["error_samples"]:
        err_console.print(Text(f"webhook error: {sample}", style="red"), highlight=False)


def exit_code(summary: dict[str, Any]) -> int:
    """1 when a message was lost, answered twice or refused; else 0."""
    return int(bool(summary["lost"] or summary["duplicates"] or summary["webhook_errors"]))


# ---- the command -------------------------------------------------------------------------------

SIMULATE_HELP = "\n\n".join(
    (
        "Simulate a busy day: synthetic leads write to a RUNNING leadflow.",
        "N leads (--leads) start at --rate new leads per second, open loop. Each is a new "
        "WhatsApp contact playing one dialogue: its messages are signed WAHA webhooks "
        "(POST /webhooks/waha/TENANT), each sent after the AI's reply to the previous one plus "
        "a think time (--think-time, varied 0.5-1.5x). The replies arrive at a fake WAHA this "
        "command serves on 127.0.0.1:--waha-port, answering sendText as WAHA does. After each "
        "reply the conversation is read through the API (GET /api/v1/conversations/ID): a lead "
        "handed to a human (an escalation) stops there.",
        "Shows live progress, then: messages sent, answered, p50/p99 time to reply (webhook "
        "POST to the reply at the fake WAHA), escalations, lost (no reply within --timeout), "
        "duplicates (more than one reply to one lead message).",
        f"Tenant: without --tenant, `{SIM_TENANT}`, created in the database of the local "
        "LEADFLOW_* settings (run it next to `leadflow up`) with the car dealership playbook "
        "and its WAHA at the fake (kept between runs). --tenant TENANT repoints that tenant's "
        "WAHA instead, unless it points at a real WAHA; a tenant without WAHA has none again "
        "after the run.",
        "Dialogues: built-in car dealership ones "
        f"({', '.join(d.name for d in DEFAULT_DIALOGUES)}), or --dialogue FILE. " + DIALOGUE_FORMAT,
        "Exit codes: 0 every message answered once; 1 something was lost, answered twice or "
        "refused by the webhook; 2 bad input (dialogue file, options) or leadflow not "
        "reachable.",
    )
)


def simulate_command(
    leads: Annotated[
        int, typer.Option("--leads", "-n", min=1, max=999_999, help="Number of leads.")
    ] = 20,
    rate: Annotated[
        float, typer.Option("--rate", "-r", min=0.001, help="New leads per second (open loop).")
    ] = 1.0,
    dialogue: Annotated[
        Path | None,
        typer.Option(
            "--dialogue",
            help="YAML or JSON-lines file of dialogues (format above); default: built-in ones.",
            show_default=False,
        ),
    ] = None,
    api_url: Annotated[
        str,
        typer.Option(
            "--api-url", envvar="LEADFLOW_API_URL", help="Base URL of the running leadflow API."
        ),
    ] = DEFAULT_API_URL,
    tenant: Annotated[
        str | None,
        typer.Option(
            "--tenant",
            help=f"Tenant the leads write to; default: the simulator's own `{SIM_TENANT}`.",
            show_default=False,
        ),
    ] = None,
    think_time: Annotated[
        float,
        typer.Option(
            "--think-time", min=0.0, help="Seconds a lead thinks before its next message."
        ),
    ] = 2.0,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout", min=0.1, help="Seconds a message may wait for its reply before lost."
        ),
    ] = 60.0,
    json_out: Annotated[
        Path | None,
        typer.Option(
            "--json",
            help="Also write the summary and every lead's messages to this file.",
            show_default=False,
        ),
    ] = None,
    waha_port: Annotated[
        int,
        typer.Option(
            "--waha-port", min=0, max=65535, help="Port of the fake WAHA (0: any free one)."
        ),
    ] = DEFAULT_WAHA_PORT,
    settle: Annotated[
        float,
        typer.Option(
            "--settle",
            min=0.0,
            help="Seconds to keep listening after the last lead, for late duplicate replies.",
        ),
    ] = 2.0,
) -> None:
    """Simulate a busy day of leads through a running leadflow (help: SIMULATE_HELP)."""
    try:
        dialogues = load_dialogues(dialogue) if dialogue is not None else list(DEFAULT_DIALOGUES)
    except DialogueError as exc:
        _error(str(exc), None)
        raise typer.Exit(2) from None
    opts = Options(
        leads=leads,
        rate=rate,
        dialogues=dialogues,
        api_url=api_url,
        tenant=tenant,
        think_time=think_time,
        timeout=timeout,
        waha_port=waha_port,
        settle=settle,
    )
    holder: list[Simulation] = []
    try:
        sim = asyncio.run(run_simulation(opts, holder))
    except KeyboardInterrupt:
        if holder:
            print_summary(holder[0].summary(), interrupted=True)
        err_console.print("interrupted")
        raise typer.Exit(130) from None
    except SimulationError as exc:
        _error(exc.message, exc.hint)
        raise typer.Exit(2) from None
    summary = sim.summary()
    print_summary(summary)
    if json_out is not None:
        data = {"api_url": opts.api_url, **summary, "leads_detail": sim.leads_detail()}
        json_out.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", "utf-8")
        console.print(f"written to {json_out}", highlight=False)
    raise typer.Exit(exit_code(summary))


def _error(message: str, hint: str | None) -> None:
    # Text, not markup: messages may contain brackets.
    line = Text("error: ", style="red") + Text(message)
    if hint:
        line += Text(f"; {hint}")
    err_console.print(line, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("simulate", help=SIMULATE_HELP)(simulate_command)


__all__ = ["exit_code", "prepare_tenant", "register", "run_simulation", "takeover_problem"]
