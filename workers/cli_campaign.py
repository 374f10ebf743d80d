"""`leadflow campaign create|list|show|pause|resume|cancel|approve|watch`: campaigns from the
command line.

Like `leadflow enrich`, these only talk to the HTTP API (any deployment, `leadflow up` here
included), so a campaign is created and steered by the same routes, the same campaign service
and the same workflow Updates as from any other client."""

from __future__ import annotations

import re
import time
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from workers.cli_enrich import DEFAULT_API_URL, ApiClient, CliFailure, console, err_console

TERMINAL = frozenset({"completed", "cancelled"})

campaign = typer.Typer(
    help="Campaigns: send the first message of an enrichment job's leads (or of a lead "
    "filter) at a set pace inside a send window, one outreach conversation per lead; follow "
    "their numbers; pause, resume, cancel or approve them. Talks to the API (--api-url, "
    "--api-key or LEADFLOW_API_URL / LEADFLOW_API_KEY).",
    no_args_is_help=True,
    epilog="Examples: `leadflow campaign create --job JOB_ID --rate 50 --watch`; "
    "`leadflow campaign create --has-email --quality HOT --subject 'Hi {first_name}' "
    "--text '…' --hold`; `leadflow campaign approve ID`; `leadflow campaign watch ID`.",
)

ApiUrl = Annotated[
    str, typer.Option("--api-url", envvar="LEADFLOW_API_URL", help="Base URL of the API.")
]
ApiKey = Annotated[
    str | None, typer.Option("--api-key", envvar="LEADFLOW_API_KEY", help="Tenant API key.")
]
CampaignId = Annotated[str, typer.Argument(help="The campaign id `campaign create` printed.")]


def _client(api_url: str, api_key: str | None) -> ApiClient:
    if not api_key:
        raise CliFailure(
            "no API key: pass --api-key or set LEADFLOW_API_KEY",
            hint="`leadflow up` prints the demo tenant's key",
            code=2,
        )
    return ApiClient(api_url, api_key)


def _fail(failure: CliFailure) -> typer.Exit:
    err_console.print(Text("error: ", style="red") + Text(failure.message), highlight=False)
    if failure.hint:
        err_console.print(Text(f"hint: {failure.hint}"), highlight=False)
    return typer.Exit(failure.code)


def _window(text: str | None, timezone: str | None) -> dict[str, str] | None:
    if text is None:
        if timezone is not None:
            raise CliFailure("--timezone needs --window (e.g. --window 09:00-17:00)", code=2)
        return None
    match = re.fullmatch(r"\s*(\d{1,2}:\d{2})\s*-\s*(\d{1,2}:\d{2})\s*", text)
    if match is None:
        raise CliFailure(f"--window {text!r}: write it as HH:MM-HH:MM (e.g. 09:00-17:30)", code=2)
    start, end = match.groups()
    return {"start": start.zfill(5), "end": end.zfill(5), "timezone": timezone or "UTC"}


def numbers_line(view: dict[str, Any]) -> str:
    """One line of a campaign's numbers (the progress bar's, `list`'s)."""
    n = view.get("numbers") or {}
    skipped = n.get("skipped", 0)
    reasons = n.get("skipped_by_reason") or {}
    why = f" ({', '.join(f'{k} {v}' for k, v in reasons.items())})" if reasons else ""
    return (
        f"[green]{n.get('sent', 0)} sent[/] · {skipped} skipped{why} · "
        f"{n.get('replied', 0)} replied ({n.get('reply_rate', 0.0):.0%}) · "
        f"{n.get('positive_replies', 0)} positive · {n.get('meetings_booked', 0)} meetings · "
        f"{n.get('opted_out', 0)} opted out · {n.get('bounced', 0)} bounced · "
        f"[dim]{view.get('status', '?')}[/]"
    )


def _show(view: dict[str, Any]) -> None:
    n = view.get("numbers") or {}
    window = view.get("send_window")
    table = Table(
        title=f"campaign {view['id']}" + (f" ({view['name']})" if view.get("name") else "")
    )
    table.add_column("", style="bold")
    table.add_column("")
    source = f"job {view['job_id']}" if view.get("job_id") else f"leads {view.get('selection')}"
    message = "personalised e-mail of each lead's enrichment" if view.get("personalised") else ""
    if not message:
        message = (f"{view.get('subject')}: " if view.get("subject") else "") + str(
            view.get("text") or ""
        )
    rows = [
        ("status", str(view.get("status"))),
        ("channel", str(view.get("channel"))),
        ("recipients", f"{n.get('total', 0)} from {source}"),
        ("message", message[:120]),
        (
            "pace",
            f"{view.get('rate_per_hour'):g}/hour"
            + (
                f", {window['start'][:5]}-{window['end'][:5]} {window['timezone']}"
                if window
                else ""
            ),
        ),
        ("queued", str(n.get("queued", 0))),
        ("sent", str(n.get("sent", 0))),
        ("skipped", f"{n.get('skipped', 0)} {n.get('skipped_by_reason') or ''}".strip()),
        ("replied", f"{n.get('replied', 0)} ({n.get('reply_rate', 0.0):.1%})"),
        (
            "positive replies",
            f"{n.get('positive_replies', 0)} ({n.get('positive_reply_rate', 0.0):.1%})",
        ),
        ("escalations", str(n.get("escalations", 0))),
        ("meetings booked", str(n.get("meetings_booked", 0))),
        ("opted out", str(n.get("opted_out", 0))),
        ("bounced", str(n.get("bounced", 0))),
        ("workflow", str(view.get("workflow_id"))),
    ]
    for key, value in rows:
        table.add_row(key, Text(value))
    console.print(table)


def watch_campaign(client: ApiClient, campaign_id: str, poll_seconds: float) -> dict[str, Any]:
    """Draw a progress bar (sent + skipped of the recipients) until the campaign ends; returns
    its last view. Ctrl-C stops watching, not the campaign."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"),
        console=console,
        transient=False,
    ) as progress:
        view = client.json("GET", f"/api/v1/campaigns/{campaign_id}")
        task = progress.add_task(f"campaign {campaign_id}", total=None, stats="")
        while True:
            n = view.get("numbers") or {}
            progress.update(
                task,
                total=n.get("total") or None,
                completed=int(n.get("sent", 0)) + int(n.get("skipped", 0)),
                stats=numbers_line(view),
            )
            if view.get("status") in TERMINAL:
                return view
            time.sleep(poll_seconds)
            view = client.json("GET", f"/api/v1/campaigns/{campaign_id}")


@campaign.command("create")
def create(
    job: Annotated[
        str | None, typer.Option("--job", help="Every lead this enrichment job made.")
    ] = None,
    quality: Annotated[
        str | None, typer.Option(help="Filter: HOT, WARM, LUKEWARM or COLD.")
    ] = None,
    source_job: Annotated[str | None, typer.Option(help="Filter: leads of this job.")] = None,
    has_email: Annotated[bool | None, typer.Option("--has-email/--no-email")] = None,
    has_phone: Annotated[bool | None, typer.Option("--has-phone/--no-phone")] = None,
    search: Annotated[str | None, typer.Option(help="Filter: name, e-mail or company.")] = None,
    channel: Annotated[
        str, typer.Option(help="email (SMTP), or whatsapp / waha (opted-in leads only).")
    ] = "email",
    subject: Annotated[str | None, typer.Option(help="E-mail subject ({first_name}, …).")] = None,
    text: Annotated[
        str | None,
        typer.Option(
            help="The first message, with {name}, {first_name}, {company}; default: each "
            "lead's personalised e-mail from its enrichment."
        ),
    ] = None,
    hold: Annotated[
        bool, typer.Option("--hold", help="Send nothing until `campaign approve`.")
    ] = False,
    window: Annotated[
        str | None,
        typer.Option(help="Daily send window HH:MM-HH:MM; default: outside quiet hours."),
    ] = None,
    timezone: Annotated[
        str | None, typer.Option(help="Time zone of --window (IANA, e.g. Europe/Amsterdam).")
    ] = None,
    rate: Annotated[float, typer.Option(help="First messages per hour at most.")] = 50,
    name: Annotated[str | None, typer.Option(help="A name to find it by.")] = None,
    follow: Annotated[
        bool, typer.Option("--watch", help="Then draw its progress until it ends.")
    ] = False,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
) -> None:
    """Create a campaign from a job (--job) or a lead filter, and start it (or --hold it).

    Prints its id, and how many selected leads were left out and why (no e-mail, no phone, no
    WhatsApp opt-in, no personalised e-mail)."""
    try:
        filters = {
            "quality": quality,
            "source_job_id": source_job,
            "has_email": has_email,
            "has_phone": has_phone,
            "search": search,
        }
        selection = {k: v for k, v in filters.items() if v is not None}
        if job is not None and selection:
            raise CliFailure("give --job or lead filters, not both", code=2)
        if job is None and not selection:
            raise CliFailure(
                "which leads? give --job JOB_ID or a filter (e.g. --has-email)", code=2
            )
        body: dict[str, Any] = {
            "channel": channel,
            "message": {"subject": subject, "text": text},
            "hold_for_approval": hold,
            "rate_per_hour": rate,
            "name": name,
            "send_window": _window(window, timezone),
        }
        body.update({"job_id": job} if job is not None else {"leads": selection})
        client = _client(api_url, api_key)
        try:
            view = client.json("POST", "/api/v1/campaigns", json=body)
            console.print(
                Text(
                    f"campaign {view['id']}: {view['status']}, "
                    f"{view['numbers']['total']} recipients"
                ),
                highlight=False,
            )
            for reason, count in (view.get("excluded") or {}).items():
                console.print(Text(f"  left out: {count} ({reason})"), highlight=False)
            if follow:
                _watch_until_done(client, view["id"], 2.0)
        finally:
            client.close()
    except CliFailure as failure:
        raise _fail(failure) from None


def _watch_until_done(client: ApiClient, campaign_id: str, poll_seconds: float) -> None:
    try:
        view = watch_campaign(client, campaign_id, poll_seconds)
    except KeyboardInterrupt:
        console.print(f"stopped watching; campaign {campaign_id} goes on")
        return
    console.print(Text(f"campaign {campaign_id}: {view.get('status')}"), highlight=False)


@campaign.command("list")
def list_(api_url: ApiUrl = DEFAULT_API_URL, api_key: ApiKey = None) -> None:
    """The tenant's campaigns, newest first, with their numbers."""
    try:
        client = _client(api_url, api_key)
        try:
            views = client.json("GET", "/api/v1/campaigns").get("campaigns") or []
        finally:
            client.close()
    except CliFailure as failure:
        raise _fail(failure) from None
    if not views:
        console.print("no campaigns yet (`leadflow campaign create --help`)")
        return
    table = Table()
    for column in ("id", "name", "status", "channel", "recipients", "numbers"):
        table.add_column(column)
    for view in views:
        table.add_row(
            view["id"],
            view.get("name") or "",
            view["status"],
            view["channel"],
            str(view["numbers"]["total"]),
            numbers_line(view),
        )
    console.print(table)


@campaign.command("show")
def show(
    campaign_id: CampaignId, api_url: ApiUrl = DEFAULT_API_URL, api_key: ApiKey = None
) -> None:
    """A campaign's settings and numbers.

    Sent, skipped (and why), replied, positive replies, escalations, meetings booked, opted
    out, bounced, reply rates."""
    try:
        client = _client(api_url, api_key)
        try:
            view = client.json("GET", f"/api/v1/campaigns/{campaign_id}")
        finally:
            client.close()
    except CliFailure as failure:
        raise _fail(failure) from None
    _show(view)


@campaign.command("watch")
def watch(
    campaign_id: CampaignId,
    poll: Annotated[float, typer.Option(help="Seconds between looks.", min=0.2)] = 2.0,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
) -> None:
    """A progress bar of the campaign until it ends (Ctrl-C stops watching, not the campaign)."""
    try:
        client = _client(api_url, api_key)
        try:
            _watch_until_done(client, campaign_id, poll)
        finally:
            client.close()
    except CliFailure as failure:
        raise _fail(failure) from None


def _control(action: str, doc: str) -> Any:
    def run(
        campaign_id: CampaignId,
        idempotency_key: Annotated[
            str | None,
            typer.Option(
                "--idempotency-key",
                help="Names this command: running it again with the same key acts once.",
            ),
        ] = None,
        api_url: ApiUrl = DEFAULT_API_URL,
        api_key: ApiKey = None,
    ) -> None:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        try:
            client = _client(api_url, api_key)
            try:
                view = client.json(
                    "POST", f"/api/v1/campaigns/{campaign_id}/{action}", headers=headers
                )
            finally:
                client.close()
        except CliFailure as failure:
            # 409: the campaign refused (exit 3, its reason printed); nothing was done.
            raise _fail(failure) from None
        console.print(Text(f"campaign {campaign_id}: {view['status']}"), highlight=False)
        console.print(numbers_line(view))

    run.__doc__ = doc
    return run


for _action, _doc in (
    ("pause", "Pause: no new message goes out (one being sent finishes)."),
    ("resume", "Resume a paused campaign at its pace."),
    ("cancel", "Cancel: nothing more is sent; conversations already started go on."),
    ("approve", "Approve a campaign created with --hold: it starts sending."),
):
    campaign.command(_action)(_control(_action, _doc))


def register(app: typer.Typer) -> None:
    app.add_typer(campaign, name="campaign")
