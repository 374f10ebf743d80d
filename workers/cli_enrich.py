"""`leadflow enrich FILE.csv`: upload a CSV to the API, follow the job, write the enriched CSV.
`leadflow job pause|resume|cancel JOB_ID`: steer a running job.

The commands only talk to the HTTP API (like any other client), so they work against a remote
deployment as well as against `leadflow up` on this machine, and a job is steered by the same
route (and the same workflow update) whether from here or from any other client.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
)
from rich.table import Table
from rich.text import Text

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
DEFAULT_API_URL = "http://127.0.0.1:8000"
FAILURES_SHOWN = 20
REFUSED_EXIT = 3
"""Exit code of a job command the job refused (409): distinct from failing to ask (1)."""

console = Console(soft_wrap=True)  # long URLs and paths stay copyable
err_console = Console(stderr=True, soft_wrap=True)


class CliFailure(Exception):
    """A problem the user can act on; printed without a traceback."""

    def __init__(self, message: str, *, hint: str | None = None, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code


@dataclass
class ApiClient:
    """The few calls the CLI makes, with the API's errors turned into readable messages."""

    base_url: str
    api_key: str
    timeout: float = 30.0

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self.api_key}"},
            timeout=self.timeout,
        )

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise CliFailure(
                f"cannot reach the leadflow API at {self.base_url} ({exc})",
                hint="start it with `leadflow up` (or `leadflow api`), or pass --api-url",
            ) from exc
        except httpx.TimeoutException as exc:
            raise CliFailure(
                f"the leadflow API at {self.base_url} did not answer in {self.timeout:.0f}s"
            ) from exc
        except httpx.HTTPError as exc:
            raise CliFailure(
                f"talking to the leadflow API at {self.base_url} failed: {exc}"
            ) from exc
        if response.status_code >= 400:
            raise _api_failure(response)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.request(method, path, **kwargs)
        try:
            body = response.json()
        except ValueError as exc:
            raise CliFailure(
                f"the API answered {method} {path} with something that is not JSON: "
                f"{response.text[:200]!r}"
            ) from exc
        if not isinstance(body, dict):
            raise CliFailure(f"unexpected answer from {method} {path}: {body!r}")
        return body


def _error_body(response: httpx.Response) -> tuple[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return (response.text.strip()[:300] or response.reason_phrase), None
    if isinstance(body, dict):
        return str(body.get("error") or body.get("detail") or body), body.get("detail")
    return str(body), None


def _api_failure(response: httpx.Response) -> CliFailure:
    error, detail = _error_body(response)
    status = response.status_code
    if status == 401:
        return CliFailure(
            f"the API refused the key: {error}",
            hint="pass a tenant API key with --api-key or the LEADFLOW_API_KEY variable "
            "(`leadflow up` prints the demo tenant's key)",
        )
    if status == 413:
        extra = f" ({detail})" if detail else ""
        return CliFailure(f"the file is too big for the API: {error}{extra}")
    if status == 422 and isinstance(detail, list):
        lines = [f"the API refused the CSV: {error}"]
        for problem in detail:
            lines.append("  " + _describe_problem(problem))
        return CliFailure("\n".join(lines))
    if status == 409:
        # The job refused the command: its reason is the message, nothing was done.
        return CliFailure(f"{error}: {detail}" if detail else error, code=REFUSED_EXIT)
    if status == 404:
        return CliFailure(f"{error}: {detail}" if detail else error)
    text = f"the API answered {status}: {error}"
    if detail:
        text += f" — {detail}"
    return CliFailure(text)


def _describe_problem(problem: Any) -> str:
    if isinstance(problem, dict):
        line = problem.get("line")
        what = problem.get("problem") or problem.get("msg") or problem
        if line is None and "loc" in problem:
            return f"{'.'.join(str(p) for p in problem['loc'])}: {what}"
        return f"line {line}: {what}" if line is not None else str(what)
    return str(problem)


def _format_eta(seconds: Any) -> str:
    if not isinstance(seconds, int | float) or seconds < 0:
        return "-"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def _stats_line(job: dict[str, Any]) -> str:
    counts = job.get("counts") or {}
    rate = job.get("throughput_per_s")
    rate_text = f"{rate:.1f}/s" if isinstance(rate, int | float) else "-"
    return (
        f"[green]{counts.get('done', 0)} done[/] · [red]{counts.get('failed', 0)} failed[/] · "
        f"{counts.get('running', 0)} running · {rate_text} · "
        f"ETA {_format_eta(job.get('eta_seconds'))} · [dim]{job.get('status', '?')}[/]"
    )


def _follow(client: ApiClient, job_id: str, total: int, poll_seconds: float) -> dict[str, Any]:
    """Poll the job until it ends, drawing a progress bar; returns the final job view."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[stats]}"),
        console=console,
        transient=False,
    ) as progress:
        task: TaskID = progress.add_task("enriching", total=total or None, stats="")
        while True:
            job = client.json("GET", f"/api/v1/jobs/{job_id}")
            counts = job.get("counts") or {}
            finished = int(counts.get("done", 0)) + int(counts.get("failed", 0))
            progress.update(
                task,
                total=job.get("total") or total or None,
                completed=finished,
                stats=_stats_line(job),
            )
            if job.get("status") in TERMINAL_STATUSES:
                return job
            time.sleep(poll_seconds)


def _print_failures(client: ApiClient, job_id: str, failed: int) -> None:
    if failed <= 0:
        return
    body = client.json("GET", f"/api/v1/jobs/{job_id}/records", params={"status": "failed"})
    records = body.get("records") or []
    table = Table(title=f"{failed} failed record(s)", title_justify="left")
    table.add_column("row", justify="right")
    table.add_column("input")
    table.add_column("reason", style="red")
    for record in records[:FAILURES_SHOWN]:
        data = record.get("input") or {}
        shown = ", ".join(f"{v}" for v in data.values() if v)[:60] if isinstance(data, dict) else ""
        table.add_row(str(record.get("row_number", "")), shown, str(record.get("error") or ""))
    console.print(table)
    if len(records) > FAILURES_SHOWN:
        console.print(f"… and {len(records) - FAILURES_SHOWN} more (see the results file)")


def default_output(csv_path: Path) -> Path:
    return csv_path.with_name(f"{csv_path.stem}.enriched.csv")


def run_enrich(
    *,
    csv_path: Path,
    api_url: str,
    api_key: str,
    output: Path | None,
    concurrency: int | None,
    playbook: str | None,
    steps: str | None,
    wait: bool,
    poll_seconds: float,
) -> int:
    if not csv_path.is_file():
        raise CliFailure(f"{csv_path}: no such file")
    client = ApiClient(api_url, api_key)
    try:
        form: dict[str, str] = {}
        if concurrency is not None:
            form["concurrency"] = str(concurrency)
        if playbook:
            form["playbook"] = playbook
        if steps:
            form["steps"] = steps
        with csv_path.open("rb") as fh:
            created = client.json(
                "POST",
                "/api/v1/jobs",
                files={"file": (csv_path.name, fh, "text/csv")},
                data=form,
            )
        job_id = str(created["job_id"])
        rows = int(created.get("rows") or 0)
        status_url = f"{client.base_url}/api/v1/jobs/{job_id}"
        if not wait:
            console.print(f"job [bold]{job_id}[/] started ({rows} rows)")
            console.print(f"status:  {status_url}")
            console.print(f"results: {status_url}/results")
            console.print(f"failures: {status_url}/records?status=failed")
            return 0
        console.print(f"job [bold]{job_id}[/] started ({rows} rows); Ctrl-C detaches")
        try:
            job = _follow(client, job_id, rows, poll_seconds)
        except KeyboardInterrupt:
            console.print(f"\ndetached; the job keeps running: {status_url}")
            return 130
        target = output or default_output(csv_path)
        results = client.request("GET", f"/api/v1/jobs/{job_id}/results")
        target.write_bytes(results.content)
        counts = job.get("counts") or {}
        done, failed = int(counts.get("done", 0)), int(counts.get("failed", 0))
        status = job.get("status")
        console.print(f"job {job_id} {status}: {done} done, {failed} failed → {target}")
        _print_failures(client, job_id, failed)
        return 0 if status == "completed" else 1
    finally:
        client.close()


def enrich(
    file: Annotated[Path, typer.Argument(help="The CSV of leads to enrich.")],
    api_url: Annotated[
        str, typer.Option("--api-url", envvar="LEADFLOW_API_URL", help="Base URL of the API.")
    ] = DEFAULT_API_URL,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", envvar="LEADFLOW_API_KEY", help="Tenant API key."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Where to write results (default NAME.enriched.csv)."),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", min=1, help="Records in flight for this job.")
    ] = None,
    playbook: Annotated[
        str | None, typer.Option("--playbook", help="Playbook that shapes the e-mails.")
    ] = None,
    steps: Annotated[
        str | None,
        typer.Option("--steps", help="Comma list of steps to run (default: all)."),
    ] = None,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Print the job id and URLs and return at once.")
    ] = False,
    poll_seconds: Annotated[
        float, typer.Option("--poll-seconds", min=0.05, help="How often to poll the job.")
    ] = 1.0,
) -> None:
    """Upload a CSV of leads, follow the enrichment job, and write the enriched CSV."""
    if not api_key:
        err_console.print(
            "[red]error:[/] no API key: pass --api-key or set LEADFLOW_API_KEY "
            "(`leadflow up` prints the demo tenant's key)"
        )
        raise typer.Exit(2)
    try:
        code = run_enrich(
            csv_path=file,
            api_url=api_url,
            api_key=api_key,
            output=output,
            concurrency=concurrency,
            playbook=playbook,
            steps=steps,
            wait=not no_wait,
            poll_seconds=poll_seconds,
        )
    except CliFailure as failure:
        # Text, not markup: API messages may contain brackets.
        err_console.print(Text("error: ", style="red") + Text(failure.message), highlight=False)
        if failure.hint:
            err_console.print(Text(f"hint: {failure.hint}"), highlight=False)
        raise typer.Exit(failure.code) from None
    raise typer.Exit(code)


# -- leadflow job pause|resume|cancel ----------------------------------------------------------

JOB_COMMANDS: dict[str, tuple[str, str]] = {
    "pause": ("POST", "/pause"),
    "resume": ("POST", "/resume"),
    "cancel": ("DELETE", ""),
}
"""Command -> the jobs route that carries it out (the API waits for the job's update)."""


def run_job_command(
    *, command: str, job_id: str, api_url: str, api_key: str, idempotency_key: str | None
) -> dict[str, Any]:
    """Ask the API to pause, resume or cancel a job; returns the job view it answers with.
    Raises CliFailure with the job's reason when refused (exit code REFUSED_EXIT)."""
    method, suffix = JOB_COMMANDS[command]
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    client = ApiClient(api_url, api_key)
    try:
        return client.json(method, f"/api/v1/jobs/{job_id}{suffix}", headers=headers)
    finally:
        client.close()


def _job_command(command: str) -> Any:
    def run(
        job_id: Annotated[str, typer.Argument(help="The job id `leadflow enrich` printed.")],
        api_url: Annotated[
            str, typer.Option("--api-url", envvar="LEADFLOW_API_URL", help="Base URL of the API.")
        ] = DEFAULT_API_URL,
        api_key: Annotated[
            str | None,
            typer.Option("--api-key", envvar="LEADFLOW_API_KEY", help="Tenant API key."),
        ] = None,
        idempotency_key: Annotated[
            str | None,
            typer.Option(
                "--idempotency-key",
                help="Names this command: running it again with the same key acts once.",
            ),
        ] = None,
    ) -> None:
        if not api_key:
            err_console.print(
                "[red]error:[/] no API key: pass --api-key or set LEADFLOW_API_KEY "
                "(`leadflow up` prints the demo tenant's key)"
            )
            raise typer.Exit(2)
        try:
            job = run_job_command(
                command=command,
                job_id=job_id,
                api_url=api_url,
                api_key=api_key,
                idempotency_key=idempotency_key,
            )
        except CliFailure as failure:
            err_console.print(Text("error: ", style="red") + Text(failure.message), highlight=False)
            if failure.hint:
                err_console.print(Text(f"hint: {failure.hint}"), highlight=False)
            raise typer.Exit(failure.code) from None
        console.print(Text(f"job {job_id}: {job.get('status', '?')}"), highlight=False)
        console.print(_stats_line(job))

    run.__doc__ = {
        "pause": "Pause a job: no new records start; those in flight finish.",
        "resume": "Resume a paused job.",
        "cancel": "Cancel a job: records in flight stop, finished records are kept.",
    }[command]
    return run


def register(app: typer.Typer) -> None:
    app.command("enrich")(enrich)
    job = typer.Typer(help="Steer an enrichment job: pause, resume, cancel.", no_args_is_help=True)
    for command in JOB_COMMANDS:
        job.command(command)(_job_command(command))
    app.add_typer(job, name="job")
