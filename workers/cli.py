"""The `leadflow` command line: run the stack, manage tenants, list plugins."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import importlib
import json
import os
import secrets
import signal
import sys
from collections.abc import Coroutine, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import uvicorn
import yaml
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from models.db import Database, migrate
from models.repo import tenants as tenant_repo
from models.settings import Settings
from models.task_queues import ALL as ALL_QUEUES
from models.task_queues import CONVERSATIONS as CONVERSATIONS_QUEUE
from models.tenant import TenantSettings
from workers.cli_registry import CLI_MODULES
from workers.supervisor import ChildExit, ChildFailed, ChildSpec, Supervisor

if TYPE_CHECKING:
    from fastapi import FastAPI
    from temporalio.client import Client

    from workers.logs import LogFormat

app = typer.Typer(
    help="leadflow: the durable back office for AI sales teams, on Temporal.\n\n"
    "`leadflow up` runs everything locally on embedded defaults; `worker` and `api` run the "
    "parts alone against a configured Temporal (LEADFLOW_TEMPORAL_ADDRESS).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
tenant_app = typer.Typer(help="Create and configure tenants.", no_args_is_help=True)
app.add_typer(tenant_app, name="tenant")
console = Console()
err = Console(stderr=True)

DEMO_TENANT = "demo"


# Longer than the idle timeout of webhook senders' connection pools (httpx and many others close
# idle connections after 5 s, uvicorn's own default): the client closes first, so a request is
# never written onto a connection the server is closing at that moment (it got no answer).
API_KEEP_ALIVE_SECONDS = 75


def _settings(**overrides: Any) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**values)


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def _logging(
    verbose: bool, *, default_format: LogFormat = "json", children_inherit: bool = False
) -> None:
    """This process's logs in LEADFLOW_LOG_FORMAT, else `default_format` (text for `up`, json
    for `api` and `worker`): workers/logs.py. `children_inherit` puts the format chosen in the
    environment, so the processes this one starts (`up`'s workers) log the same way."""
    from pydantic import ValidationError
    from rich.markup import escape

    from workers import logs

    try:
        settings = _settings()
    except ValidationError as exc:  # the first Settings a command builds: say what is wrong
        raise _fail(f"invalid settings: {escape(str(exc))}", code=2) from exc
    fmt = settings.log_format or default_format
    if children_inherit:
        os.environ["LEADFLOW_LOG_FORMAT"] = fmt
    logs.configure(fmt, verbose=verbose, traces=settings.otel_enabled)


def run_serving(main: Coroutine[Any, Any, None]) -> None:
    """Run a long-lived process's loop (`up`, `worker`) on uvloop when it is installed: libuv's
    loop spends less CPU per callback than asyncio's, and a webhook or a workflow activation is
    hundreds of them (issue 8). `leadflow api` gets it from uvicorn itself."""
    try:
        import uvloop
    except ImportError:  # not on Windows
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: `up` stops everything in order itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


# ---- run ------------------------------------------------------------------------------------

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Where SQLite and Temporal keep their files.")
]


def _default_workers() -> int:
    """One worker process per core this process may run on."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@app.command()
def up(
    data_dir: DataDir = None,
    host: Annotated[str, typer.Option(help="Interface everything listens on.")] = "127.0.0.1",
    api_port: Annotated[int, typer.Option(help="Port of the API and web page.")] = 8000,
    temporal_port: Annotated[int, typer.Option(help="Port of the Temporal dev server.")] = 7233,
    ui_port: Annotated[int, typer.Option(help="Port of the Temporal UI.")] = 8233,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            envvar="LEADFLOW_UP_WORKERS",
            min=1,
            show_default=False,
            help="Worker processes to run (at least 1), each serving every task queue, "
            f"restarted if they die; default: the number of cores ({_default_workers()} here).",
        ),
    ] = None,
    background_niceness: Annotated[
        int | None,
        typer.Option(
            "--background-niceness",
            min=0,
            max=19,
            show_default=False,
            help="Run the Temporal dev server and the workers this many steps below the API's "
            "CPU priority (`nice -n`), so that under overload webhooks are acknowledged first "
            "and the work waits in Temporal; 0: same priority. "
            "Default: LEADFLOW_BACKGROUND_NICENESS, else 10.",
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Start Temporal (dev server + UI), the worker processes and the API; Ctrl-C stops all of it.

    State (SQLite database, Temporal history) lives in the data dir and survives restarts.

    One `up` per data dir: a second is refused; a dev server a crashed one left is stopped.

    Nothing `up` starts outlives it, also on `kill -9` (Linux).

    Each worker process logs to <data dir>/logs/worker-<i>.log; one that dies is restarted.

    The dev server and workers run at a lower CPU priority than the API (--background-niceness)."""
    from workers.data_dir import private_dir, private_files
    from workers.secret_key import (
        payload_keys_problem,
        secret_key_problem,
        with_up_payload_secrets,
        with_up_secret_key,
    )
    from workers.up_lock import DataDirInUse, hold_up_lock

    _logging(verbose, default_format="text", children_inherit=True)
    private_files()
    # `up` is leadflow on one machine: its channels (a WAHA container on localhost:3000, the
    # simulator's fake WAHA) and CRMs may well listen on this machine, so loopback is allowed
    # unless LEADFLOW_SSRF_ALLOWLIST says otherwise. `leadflow api` / `worker` allow nothing.
    os.environ.setdefault("LEADFLOW_SSRF_ALLOWLIST", UP_SSRF_ALLOWLIST)
    settings = _settings(
        data_dir=data_dir,
        temporal_address=f"{host}:{temporal_port}",
        api_host=host,
        api_port=api_port,
        temporal_ui_port=ui_port,
        background_niceness=background_niceness,
    )
    if settings.worker_deployment_name or settings.worker_build_id:
        # Versioned workers get tasks only once their version is made current, which nothing
        # does on one machine: up's workers would sit idle (docs/upgrades.md).
        raise _fail(
            "leadflow up runs unversioned workers: unset LEADFLOW_WORKER_DEPLOYMENT_NAME and "
            "LEADFLOW_WORKER_BUILD_ID (worker versioning is for deployments, docs/upgrades.md)"
        )
    data_dir = private_dir(settings.data_dir.resolve())
    # One `up` per data dir, held until it exits: taken before the keys are generated into the
    # data dir and before its Temporal dev server is looked for (workers/up_lock.py).
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(hold_up_lock(data_dir))
        except DataDirInUse as exc:
            raise _fail(str(exc)) from exc
        except OSError as exc:
            raise _fail(f"cannot lock the data dir {data_dir}: {exc}") from exc
        try:
            settings, new_key = with_up_secret_key(settings)
        except (OSError, ValueError) as exc:
            raise _fail(f"the secret key: {exc}") from exc
        if (problem := secret_key_problem(settings)) is not None:
            raise _fail(problem)
        try:
            settings = with_up_payload_secrets(settings)
        except (OSError, ValueError) as exc:
            raise _fail(f"the payload keys: {exc}") from exc
        if (problem := payload_keys_problem(settings)) is not None:
            raise _fail(problem)
        if "codec_cors_origins" not in settings.model_fields_set:  # the UI `up` starts
            origins = sorted({f"http://{h}:{ui_port}" for h in (host, "127.0.0.1", "localhost")})
            settings = settings.model_copy(update={"codec_cors_origins": origins})
        try:
            run_serving(
                _up(
                    settings,
                    new_key=new_key,
                    host=host,
                    temporal_port=temporal_port,
                    ui_port=ui_port,
                    workers=workers or _default_workers(),
                    verbose=verbose,
                )
            )
        except KeyboardInterrupt:
            pass


# Loopback only: the private networks around a server stay refused also under `up`.
UP_SSRF_ALLOWLIST = '["127.0.0.1", "::1", "localhost"]'


# How long `up` waits for its worker processes to import, connect and poll: a cold start of
# one takes ~7 s of CPU here, and N of them start at once on a machine that may have 2 cores.
# Generous: a worker that cannot start fails at once (ChildFailed); this only bounds a slow one
# (seen: 2 minutes on 2 cores shared with other test runs).
WORKERS_READY_TIMEOUT = 300.0


def _worker_specs(settings: Settings, count: int, *, verbose: bool) -> list[ChildSpec]:
    """N processes running `leadflow worker` on exactly the settings `up` uses: the options
    given to `up` are passed through the environment, which Settings reads first."""
    data_dir = settings.data_dir.resolve()
    env = {k: v for k, v in os.environ.items() if k != "LEADFLOW_UP_WORKERS"}
    env.update(
        LEADFLOW_DATA_DIR=str(data_dir),
        LEADFLOW_DATABASE_URL=settings.resolved_database_url,
        LEADFLOW_TEMPORAL_ADDRESS=settings.temporal_address,
        LEADFLOW_TEMPORAL_NAMESPACE=settings.temporal_namespace,
        # The key `up` uses, maybe generated into the data dir: workers encrypt with it too.
        LEADFLOW_SECRET_KEY=settings.secret_key.get_secret_value(),
        # Likewise the payload keys: the workers and the API read each other's payloads.
        LEADFLOW_PAYLOAD_KEYS=_secret_value(settings.payload_keys),
        # Where up's API listens: without LEADFLOW_PUBLIC_URL, the unsubscribe links the
        # workers put in campaign mail point there (models/unsubscribe.py).
        LEADFLOW_API_HOST=settings.api_host,
        LEADFLOW_API_PORT=str(settings.api_port),
        PYTHONUNBUFFERED="1",
    )
    argv = [sys.executable, "-m", "workers.cli", "worker", *(["--verbose"] if verbose else [])]
    # Each worker process its own /metrics port: worker i on LEADFLOW_WORKER_METRICS_PORT + i - 1.
    metrics_port = settings.worker_metrics_port
    return [
        ChildSpec(
            name=f"worker {i}",
            argv=argv,
            env={
                **env,
                "LEADFLOW_WORKER_METRICS_PORT": str(metrics_port + i - 1 if metrics_port else 0),
            },
            log_path=data_dir / "logs" / f"worker-{i}.log",
            niceness=settings.background_niceness,
        )
        for i in range(1, count + 1)
    ]


async def _workers_polling(client: Client, pids: list[int]) -> set[int]:
    """The worker processes among `pids` that poll Temporal: their pid is among the conversation
    queue's pollers (a client's default identity is `pid@host`)."""
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=CONVERSATIONS_QUEUE),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    polling = {poller.identity.split("@", 1)[0] for poller in response.pollers}
    return {pid for pid in pids if str(pid) in polling}


async def _wait_workers(supervisor: Supervisor, *, within: float) -> str | None:
    """None once every worker process polls Temporal, else what went wrong."""
    try:
        async with asyncio.timeout(within):
            await supervisor.wait_ready()
    except ChildFailed as exc:
        tail = _log_tail(exc.log_path)
        return f"{exc}" + (f"; its last lines:\n{tail}" if tail else "")
    except TimeoutError:
        logs = ", ".join(str(s.log_path) for s in supervisor.status())
        return f"the worker processes did not poll Temporal within {within:g} s; see {logs}"
    return None


def _api_app(settings: Settings) -> FastAPI:
    from api.app import create_app

    return create_app(settings)


def _report_exit(event: ChildExit) -> None:
    console.print(event.describe(), style="yellow", markup=False, highlight=False, soft_wrap=True)


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


async def _up(
    settings: Settings,
    *,
    host: str,
    temporal_port: int,
    ui_port: int,
    workers: int,
    verbose: bool,
    new_key: bool = False,
) -> None:
    from workers import processes
    from workers.client import TemporalUnavailable, connect
    from workers.devserver import (
        DevServerError,
        leftover_dev_servers,
        port_problem,
        running_up,
        spawn_dev_server,
        stop_dev_server,
        stop_leftover,
        until_serving,
    )
    from workers.plugins import known_llm_providers

    data_dir = settings.data_dir.resolve()
    # We hold the data dir's lock, so a dev server on its SQLite file belongs to no running
    # `up`: one that outlived a crashed one. Stopped before ports are checked (it holds ours).
    for pid in leftover_dev_servers(data_dir):
        if (up := running_up(pid)) is not None:
            raise _fail(
                f"the data dir {data_dir} is in use by {processes.describe(up)}, a `leadflow up` "
                f"of a version without the data dir lock (its Temporal: pid {pid}); stop that "
                "one first, or give this one another --data-dir"
            )
        console.print(
            "stopping a Temporal dev server left running on this data dir: "
            + processes.describe(pid),
            style="yellow",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        try:
            await asyncio.to_thread(stop_leftover, pid)
        except DevServerError as exc:
            raise _fail(str(exc)) from exc
    for port, what, option in (
        (settings.api_port, "the API", "--api-port"),
        (ui_port, "the Temporal UI", "--ui-port"),
        (temporal_port, "Temporal", "--temporal-port"),
    ):
        if (problem := port_problem(host, port, what=what, option=option)) is not None:
            raise _fail(problem)
    console.print(f"[bold]leadflow[/bold] starting; data in {data_dir}")
    log_file = data_dir / "temporal.log"
    # Forked from this thread, the event loop's, which lives as long as `up`: the kernel sends
    # the dev server SIGTERM when it ends, also on `kill -9` (workers/supervisor.py on why not
    # from an executor thread).
    try:
        proc = spawn_dev_server(
            data_dir=data_dir,
            ip=host,
            port=temporal_port,
            ui_port=ui_port,
            namespace=settings.temporal_namespace,
            log_file=log_file,
            niceness=settings.background_niceness,
            codec_endpoint=_ui_codec_endpoint(settings, host),
            with_parent=True,
        )
    except (DevServerError, OSError) as exc:
        raise _fail(f"the Temporal dev server: {exc}") from exc
    supervisor: Supervisor | None = None
    server: _QuietServer | None = None
    serving: asyncio.Task[None] | None = None
    try:
        try:
            await until_serving(proc, ip=host, port=temporal_port, log_file=log_file)
        except DevServerError as exc:
            raise _fail(str(exc)) from exc
        await asyncio.to_thread(migrate, settings.resolved_database_url)
        if new_key:
            await _adopt_generated_key(settings)
        key = await _demo_tenant(settings)
        stopping = asyncio.Event()

        def stop() -> None:
            if not stopping.is_set():
                console.print("\nstopping…")
            stopping.set()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        try:
            client = await connect(settings)
        except TemporalUnavailable as exc:
            raise _fail(str(exc)) from exc
        # Started from this (the event loop's) thread: see workers/supervisor.py on why.
        supervisor = Supervisor(
            _worker_specs(settings, workers, verbose=verbose),
            ready_check=functools.partial(_workers_polling, client),
            on_exit=_report_exit,
        )
        supervisor.start()
        # Importing the API costs seconds of CPU: done while the workers import theirs.
        api_app = await asyncio.to_thread(_api_app, settings)
        gc.freeze()  # as in `leadflow api`
        server = _QuietServer(
            uvicorn.Config(
                api_app,
                host=host,
                port=settings.api_port,
                log_level="warning",
                # uvicorn's own warnings and errors go through workers/logs.py's handler, in
                # up's readable format, like every other line of the console.
                log_config=None,
                timeout_keep_alive=API_KEEP_ALIVE_SECONDS,
            )
        )
        # The API answers while the workers start: what it accepts waits in Temporal.
        serving = asyncio.create_task(server.serve())
        stopped = asyncio.create_task(stopping.wait())
        ready = asyncio.create_task(_wait_workers(supervisor, within=WORKERS_READY_TIMEOUT))
        # Loading the plugins costs seconds of CPU; pay it now, not in the first /ready or
        # settings call after the banner. A plugin that fails to load is /ready's to report.
        warm = asyncio.create_task(asyncio.to_thread(known_llm_providers))
        await asyncio.wait({ready, stopped, serving}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
        elif (problem := ready.result()) is not None:
            raise _fail(problem)
        elif not stopping.is_set() and not serving.done():
            with contextlib.suppress(Exception):
                await warm
            api_url = f"http://{host}:{settings.api_port}"
            _banner(
                api_url,
                f"http://{host}:{ui_port}",
                f"{host}:{temporal_port}",
                key,
                workers=workers,
                logs=data_dir / "logs",
                metrics=_metrics_where(api_url, settings, workers),
                sign_in=_demo_sign_in(settings),
            )
            supervising = asyncio.create_task(supervisor.run())
            await asyncio.wait({stopped, serving, supervising}, return_when=asyncio.FIRST_COMPLETED)
            supervising.cancel()
        stopped.cancel()
    finally:
        # Order: no new requests, workers finish what they hold, then Temporal goes.
        if server is not None:
            server.should_exit = True
        if supervisor is not None:
            await supervisor.stop()
        if serving is not None:
            await serving
        await asyncio.to_thread(stop_dev_server, proc)
        console.print("stopped; state kept in", str(data_dir))


def _ui_codec_endpoint(settings: Settings, host: str) -> str | None:
    """Where `up`'s Temporal UI decodes payloads: the API's codec endpoint, the token in the
    path because the UI (without UI auth) sends no Authorization header. Whoever reaches this
    UI reads decoded payloads, as they would without encryption; a production UI sits behind
    its own auth and sends the token as a bearer (docs/architecture.md)."""
    if settings.codec_token is None:
        return None
    token = settings.codec_token.get_secret_value()
    return f"http://{host}:{settings.api_port}/codec/{token}"


async def _adopt_generated_key(settings: Settings) -> None:
    """A data dir that an older `up` filled under the published key: its stored secrets are
    re-encrypted with the key generated now (a fresh one holds none)."""
    from models.crypto import CredentialsError
    from models.repo.reencrypt import reencrypt_all
    from models.settings import PUBLISHED_SECRET_KEY

    db = Database(settings.resolved_database_url)
    try:
        async with db.session() as session:
            await reencrypt_all(
                session,
                secret_key=f"{settings.secret_key.get_secret_value()},{PUBLISHED_SECRET_KEY}",
            )
    except CredentialsError as exc:
        raise _fail(
            f"{exc}; they were encrypted with another key: set LEADFLOW_SECRET_KEY to it"
        ) from exc
    finally:
        await db.dispose()


async def _demo_tenant(settings: Settings) -> str:
    """Create the demo tenant once; its key is kept in the data dir to print it on every start."""
    key_file = settings.data_dir / "demo-api-key"
    db = Database(settings.resolved_database_url)
    try:
        async with db.session() as session:
            if await tenant_repo.get_tenant(session, tenant_id=DEMO_TENANT) is None:
                await tenant_repo.create_tenant(
                    session,
                    tenant_id=DEMO_TENANT,
                    name="Demo car dealership",
                    secret_key=settings.secret_key.get_secret_value(),
                    # The demo is posted to by hand (curl, docs examples): unsigned on purpose.
                    settings=TenantSettings(
                        playbook="car_dealership", allow_unsigned_webhooks=True
                    ),
                )
                key = await tenant_repo.create_api_key(session, tenant_id=DEMO_TENANT)
                key_file.write_text(key + "\n")
                key_file.chmod(0o600)
                await _demo_inventory(settings, db)
            elif key_file.exists():
                key = key_file.read_text().strip()
            else:
                key = await tenant_repo.create_api_key(session, tenant_id=DEMO_TENANT)
                key_file.write_text(key + "\n")
                key_file.chmod(0o600)
        await _demo_admin(settings, db)
    finally:
        await db.dispose()
    return key


DEMO_ADMIN = "admin@demo.leadflow.local"
DEMO_ADMIN_PASSWORD_FILE = "demo-admin-password"  # noqa: S105 (a file name)


async def _demo_admin(settings: Settings, db: Database) -> None:
    """Give the demo tenant an admin for the console, once: while the tenant has nobody (a new
    data dir, or one an older leadflow made). The generated password is kept in the data dir
    beside demo-api-key (0600) for the banner. People added, deleted or given new passwords
    later are left as they are."""
    from models import users  # here: pwdlib and Argon2 load only for `up`

    async with db.session() as session:
        if await users.list_users(session, tenant_id=DEMO_TENANT):
            return
        password = secrets.token_urlsafe(12)
        # The file first: a password in the database that nobody was told is a locked door.
        path = settings.data_dir / DEMO_ADMIN_PASSWORD_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(password + "\n")
        path.chmod(0o600)
        await users.create_user(
            session,
            tenant_id=DEMO_TENANT,
            email=DEMO_ADMIN,
            name="Demo admin",
            role="admin",
            password=password,
        )


def _demo_sign_in(settings: Settings) -> str:
    """How to sign in to the console as the demo admin, for the banner."""
    path = settings.data_dir / DEMO_ADMIN_PASSWORD_FILE
    if not path.exists():
        return f"sign in as a person of tenant {DEMO_TENANT} (`leadflow user list --tenant demo`)"
    return f"sign in as {DEMO_ADMIN} / {path.read_text().strip()} (tenant {DEMO_TENANT})"


async def _demo_inventory(settings: Settings, db: Database) -> None:
    """A small stock for the demo dealership (once, with the tenant), so its first conversation
    cites real cars. A failure is logged, never up's end: the demo works without stock."""
    from workers.cli_inventory import seed_demo_inventory

    path = Path(_example("demo-inventory.csv"))
    if not await asyncio.to_thread(path.exists):
        return
    try:
        done = await seed_demo_inventory(settings, db, DEMO_TENANT, path)
    except Exception as exc:
        err.print(f"warning: the demo inventory was not loaded: {exc}", style="yellow")
        return
    console.print(f"Demo inventory ({path.name}): {done}")


def _metrics_where(api_url: str, settings: Settings, workers: int) -> str:
    """Where up's processes serve Prometheus metrics (ports as _worker_specs gives them)."""
    where = f"{api_url}/metrics"
    if port := settings.worker_metrics_port:
        host = settings.worker_metrics_host
        last = f"…{port + workers - 1}" if workers > 1 else ""
        where += f"; workers http://{host}:{port}{last}/metrics"
    return where


def _banner(
    api_url: str,
    ui_url: str,
    temporal: str,
    key: str,
    *,
    workers: int,
    logs: Path,
    metrics: str,
    sign_in: str,
) -> None:
    # Never wrapped: the password is copied from here.
    console.print(f"Console: {api_url}/ — {sign_in}", markup=False, highlight=False, soft_wrap=True)
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_row("API", api_url + "   (docs: " + api_url + "/docs)")
    table.add_row("Enrichment page", api_url + "/app")
    table.add_row(
        "Temporal UI", ui_url + "   (payloads encrypted; the UI decodes them through the API)"
    )
    table.add_row("Temporal", temporal)
    table.add_row(
        "Workers",
        f"{workers} worker process{'es' if workers != 1 else ''} (logs: {logs}/worker-<i>.log)",
    )
    table.add_row("Metrics", metrics)
    table.add_row("Demo tenant", DEMO_TENANT)
    table.add_row("Demo API key", key)
    table.add_row("WAHA webhook", f"{api_url}/webhooks/waha/{DEMO_TENANT}")
    console.print(table)
    console.print(
        "Try: curl -X POST "
        f"{api_url}/webhooks/waha/{DEMO_TENANT} -H 'content-type: application/json' "
        f"-d @{_example('waha-message.json')}\n"
        "Press Ctrl-C to stop."
    )


def _example(name: str) -> str:
    """The checkout's docs/examples/<name> as a path valid where `up` runs (`./leadflow` runs in
    the caller's directory): relative inside the checkout, absolute elsewhere."""
    path = Path(__file__).resolve().parents[1] / "docs" / "examples" / name
    if not path.exists():  # installed without the docs
        return f"docs/examples/{name}"
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _refuse_a_public_key(settings: Settings) -> None:
    from workers.secret_key import secret_key_problem

    if (problem := secret_key_problem(settings)) is not None:
        raise _fail(problem, code=2)


def _refuse_plain_payloads(settings: Settings) -> None:
    from workers.secret_key import payload_keys_problem

    if (problem := payload_keys_problem(settings)) is not None:
        raise _fail(problem, code=2)


def _secret_value(secret: SecretStr | None) -> str:
    return secret.get_secret_value() if secret is not None else ""


@app.command()
def worker(
    queue: Annotated[
        list[str] | None,
        typer.Option(
            help=f"Task queue(s) to serve (repeatable); default all: {', '.join(ALL_QUEUES)}"
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the workers against the configured Temporal (LEADFLOW_TEMPORAL_ADDRESS)."""
    from workers.client import TemporalUnavailable
    from workers.data_dir import private_files
    from workers.worker import WorkerProcess

    _logging(verbose)
    private_files()
    settings = _settings()
    _refuse_a_public_key(settings)
    _refuse_plain_payloads(settings)
    try:
        process = WorkerProcess(settings, queues=queue)
    except ValueError as exc:
        raise _fail(str(exc)) from exc

    async def main() -> None:
        from workers.mailbox_readers import start_mailbox_readers

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, process.stop)
        await process.start()
        # Readers for tenants with an imap block (none running: Temporal lost them, or their
        # settings were saved while it was down). `up` runs its workers through here too.
        await start_mailbox_readers(settings, process.workers[0].client)
        await process.run()

    try:
        run_serving(main())
    except TemporalUnavailable as exc:
        raise _fail(str(exc)) from exc


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Default: LEADFLOW_API_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="Default: LEADFLOW_API_PORT")] = None,
) -> None:
    """Run the API (webhooks, REST, web page) against the configured Temporal and database."""
    from api.app import create_app
    from workers.data_dir import private_files

    _logging(False)
    private_files()
    settings = _settings(api_host=host, api_port=port)
    _refuse_a_public_key(settings)
    _refuse_plain_payloads(settings)
    migrate(settings.resolved_database_url)
    app_ = create_app(settings)
    # What is loaded now lives as long as the process: out of the cyclic collector's scans, so
    # its full collections (pauses of tens of milliseconds in an acknowledgement) look at what
    # requests create only.
    gc.freeze()
    uvicorn.run(
        app_,
        host=settings.api_host,
        port=settings.api_port,
        timeout_keep_alive=API_KEEP_ALIVE_SECONDS,
        log_config=None,  # uvicorn's access and error logs go through _logging's handler
    )


@app.command(name="migrate")
def migrate_command() -> None:
    """Apply database migrations (the API and workers also do this on start)."""
    settings = _settings()
    migrate(settings.resolved_database_url)
    console.print("database is up to date")


@app.command()
def plugins() -> None:
    """List the loaded plugins: what each adds (channels, LLM providers, CRMs, task queues)."""
    from workers.plugins import PluginError, discover

    try:
        loaded = discover()
    except PluginError as exc:
        raise _fail(str(exc)) from exc
    table = Table("plugin", "entry point", "adds")
    for item in loaded:
        p = item.plugin
        parts = []
        for label, names in (
            ("channels", p.channels),
            ("LLM providers", p.llm_providers),
            ("CRM adapters", p.crm_adapters),
            ("search providers", p.search_providers),
        ):
            if names:
                parts.append(f"{label}: {', '.join(sorted(names))}")
        table.add_row(p.name, item.entry_point, "\n".join(parts) + f"\n{p.description}".rstrip())
    console.print(table)


# ---- tenants --------------------------------------------------------------------------------


@contextlib.contextmanager
def _database() -> Iterator[tuple[Settings, Database]]:
    settings = _settings()
    migrate(settings.resolved_database_url)
    yield settings, Database(settings.resolved_database_url)


def _check_playbook(tenant_settings: TenantSettings, settings: Settings | None = None) -> None:
    """Refuse a playbook the conversations could not load, and model settings no worker could
    run, as the settings API does."""
    from models import llm_config
    from models.repo.playbooks import PlaybookError, playbook_for
    from workers.plugins import known_llm_providers

    try:
        playbook_for(tenant_settings)
    except PlaybookError as exc:
        raise _fail(str(exc)) from exc
    if tenant_settings.llm is not None:
        problems = llm_config.config_problems(
            settings or _settings(), known_llm_providers(), tenant_settings.llm
        )
        if problems:
            raise _fail("invalid llm settings: " + "; ".join(problems))


@tenant_app.command("create")
def tenant_create(
    name: Annotated[str, typer.Argument(help="Display name, e.g. 'Acme Cars'.")],
    tenant_id: Annotated[
        str | None, typer.Option("--id", help="Tenant id used in webhook URLs; default from NAME.")
    ] = None,
    playbook: Annotated[
        str | None,
        typer.Option(
            help="Built-in playbook (car_dealership, b2b_outreach); without one the tenant "
            "speaks under its own name with a neutral persona."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Create a tenant and print its API key (shown once; stored hashed)."""
    tid = tenant_id or tenant_repo.slugify(name)
    _check_playbook(TenantSettings(playbook=playbook))

    async def run(settings: Settings, db: Database) -> str:
        try:
            async with db.session() as session:
                await tenant_repo.create_tenant(
                    session,
                    tenant_id=tid,
                    name=name,
                    secret_key=settings.secret_key.get_secret_value(),
                    settings=TenantSettings(playbook=playbook),
                )
                return await tenant_repo.create_api_key(session, tenant_id=tid)
        finally:
            await db.dispose()

    with _database() as (settings, db):
        try:
            key = asyncio.run(run(settings, db))
        except (tenant_repo.TenantExists, tenant_repo.InvalidTenantId) as exc:
            raise _fail(str(exc)) from exc
    if as_json:
        typer.echo(json.dumps({"tenant_id": tid, "name": name, "api_key": key}))
    else:
        console.print(
            f"tenant [bold]{tid}[/bold] created\nAPI key: {key}\n(stored hashed: keep it now)"
        )


@tenant_app.command("list")
def tenant_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List tenants."""

    async def run(db: Database) -> list[dict[str, str]]:
        try:
            async with db.session() as session:
                return [
                    {"id": t.id, "name": t.name, "created_at": t.created_at.isoformat()}
                    for t in await tenant_repo.list_tenants(session)
                ]
        finally:
            await db.dispose()

    with _database() as (_, db):
        rows = asyncio.run(run(db))
    if as_json:
        typer.echo(json.dumps(rows))
        return
    table = Table("id", "name", "created")
    for row in rows:
        table.add_row(row["id"], row["name"], row["created_at"])
    console.print(table)


def _load_tenant_settings(db: Database, settings: Settings, tid: str) -> TenantSettings:
    async def run() -> TenantSettings:
        try:
            async with db.session() as session:
                tenant = await tenant_repo.get_tenant(session, tenant_id=tid)
                if tenant is None:
                    raise _fail(f"no tenant {tid!r} (see `leadflow tenant list`)")
                return tenant_repo.tenant_settings(
                    tenant, secret_key=settings.secret_key.get_secret_value()
                )
        finally:
            await db.dispose()

    return asyncio.run(run())


@tenant_app.command("show")
def tenant_show(tenant_id: str) -> None:
    """Show a tenant's channel settings (secrets masked; `tenant configure` keeps a masked
    value as the stored secret). Warnings (channels missing fields, unsigned webhooks) go to
    stderr."""
    from models.tenant import settings_report

    with _database() as (settings, db):
        current = _load_tenant_settings(db, settings, tenant_id)
    typer.echo(json.dumps(current.model_dump(mode="json", exclude_none=True), indent=2))
    for warning in settings_report(current)["warnings"]:
        err.print(f"warning: {warning}", style="yellow", markup=False, highlight=False)


def _settings_assignments(assignments: list[str]) -> dict[str, Any]:
    """`--set waha.session=sales --set timezone=Europe/Amsterdam` as a nested update; each value
    is read as YAML (`null` removes, `true`, numbers), so a flag is a one-line settings file."""
    update: dict[str, Any] = {}
    for assignment in assignments:
        path, sep, value = assignment.partition("=")
        keys = [part.strip() for part in path.split(".")]
        if not sep or not all(keys):
            raise _fail(f"--set {assignment!r}: expected FIELD.PATH=VALUE, e.g. waha.session=sales")
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            parsed = value
        node = update
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise _fail(f"--set {assignment!r}: {key} is already set to a value")
            node = child
        node[keys[-1]] = parsed
    return update


@tenant_app.command("configure")
def tenant_configure(
    tenant_id: str,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            exists=True,
            dir_okay=False,
            help="YAML or JSON with channel settings (waha, whatsapp, messenger, chatwoot, smtp, "
            "specialists, playbook, timezone, allow_unsigned_webhooks); deep-merged into the "
            "current settings: absent or masked secrets are kept, null removes.",
        ),
    ] = None,
    assignments: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="FIELD.PATH=VALUE, e.g. --set waha.session=sales (repeatable; after --file).",
        ),
    ] = None,
    by: Annotated[
        str | None, typer.Option("--by", help="Who, for the audit log (default: the OS user).")
    ] = None,
) -> None:
    """Set channel credentials, webhook secrets, specialists and the playbook of a tenant: the
    same merge as PATCH /api/v1/settings, recorded in the tenant's audit log."""
    from models import audit
    from models.tenant_settings_merge import SettingsRejected, merge_settings

    if file is None and not assignments:
        raise _fail("nothing to configure: give --file and/or --set FIELD.PATH=VALUE")
    source = str(file) if file is not None else "--set"
    updates: list[dict[str, Any]] = []
    if file is not None:
        try:
            from_file = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise _fail(f"{file} is not valid YAML/JSON: {exc}") from exc
        if not isinstance(from_file, dict):
            raise _fail(f"{file} must hold a mapping of settings")
        updates.append(from_file)
    if assignments:
        updates.append(_settings_assignments(assignments))
    with _database() as (settings, db):
        new = _load_tenant_settings(db, settings, tenant_id)
        old_imap = new.imap
        try:
            for update in updates:
                new = merge_settings(new, update, allowlist=settings.ssrf_allowlist)
        except SettingsRejected as exc:
            raise _fail(f"invalid settings in {source}:\n{exc.describe()}") from exc
        _check_playbook(new, settings)
        changed = sorted({key for update in updates for key in update})

        async def save() -> None:
            db2 = Database(settings.resolved_database_url)
            try:
                async with db2.session() as session:
                    tenant = await tenant_repo.get_tenant(session, tenant_id=tenant_id)
                    assert tenant is not None
                    # In the settings' own transaction: saved and recorded, or neither.
                    await audit.record(
                        session,
                        tenant_id=tenant_id,
                        actor=audit.cli_actor(by),
                        action="settings.update",
                        detail={"fields": ", ".join(changed), "source": "cli"},
                        commit=False,
                    )
                    await tenant_repo.save_tenant_settings(
                        session,
                        tenant=tenant,
                        settings=new,
                        secret_key=settings.secret_key.get_secret_value(),
                    )
            finally:
                await db2.dispose()

        asyncio.run(save())
        from workers.mailbox_readers import follow_saved_settings

        warning = asyncio.run(follow_saved_settings(settings, tenant_id, old_imap, new.imap))
    console.print(f"settings of {tenant_id} saved: {', '.join(changed)}")
    if warning:
        err.print(f"warning: {warning}", style="yellow", markup=False, highlight=False)


@tenant_app.command("key")
def tenant_key(tenant_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Issue another API key for a tenant."""

    async def run(db: Database) -> str:
        try:
            async with db.session() as session:
                if await tenant_repo.get_tenant(session, tenant_id=tenant_id) is None:
                    raise _fail(f"no tenant {tenant_id!r}")
                return await tenant_repo.create_api_key(session, tenant_id=tenant_id)
        finally:
            await db.dispose()

    with _database() as (_, db):
        key = asyncio.run(run(db))
    typer.echo(json.dumps({"tenant_id": tenant_id, "api_key": key}) if as_json else key)


# ---- secrets --------------------------------------------------------------------------------

secrets_app = typer.Typer(help="The keys that encrypt stored credentials.", no_args_is_help=True)
app.add_typer(secrets_app, name="secrets")


@secrets_app.command("rotate")
def secrets_rotate() -> None:
    """Re-encrypt every tenant's settings and CRM credentials with the first key of
    LEADFLOW_SECRET_KEY (a comma-separated list: new key first, then the old ones), in one
    transaction. Afterwards the old keys can be removed from LEADFLOW_SECRET_KEY."""
    from models.crypto import CredentialsError
    from models.repo.reencrypt import Reencrypted, reencrypt_all

    async def run(db: Database, secret_key: str) -> Reencrypted:
        try:
            async with db.session() as session:
                return await reencrypt_all(session, secret_key=secret_key)
        finally:
            await db.dispose()

    with _database() as (settings, db):
        _refuse_a_public_key(settings)
        try:
            done = asyncio.run(run(db, settings.secret_key.get_secret_value()))
        except CredentialsError as exc:
            raise _fail(f"nothing changed: {exc}") from exc
    console.print(
        f"re-encrypted the settings of {done.tenants} tenant(s) and the credentials of "
        f"{done.integrations} CRM connection(s) with the first key; the others can be dropped",
        highlight=False,
    )


@secrets_app.command("payload-rotate")
def secrets_payload_rotate(data_dir: DataDir = None) -> None:
    """Put a new key first in <data dir>/payload.keys (the keys of Temporal payloads): it
    encrypts from the next start of the API and the workers on; the old keys stay after it and
    decrypt the histories they wrote. With LEADFLOW_PAYLOAD_KEYS set, edit that instead."""
    from models.settings import PAYLOAD_KEYS_FILE
    from workers.secret_key import rotated_payload_keys

    settings = _settings(data_dir=data_dir)
    path = settings.data_dir.resolve()
    if not path.is_dir():
        raise _fail(f"no data dir at {path}: run `leadflow up` once, or pass --data-dir")
    try:
        in_file: str | None = (path / PAYLOAD_KEYS_FILE).read_text().strip()
    except FileNotFoundError:
        in_file = None
    if settings.payload_keys is not None and settings.payload_keys.get_secret_value() != in_file:
        raise _fail(
            "LEADFLOW_PAYLOAD_KEYS is set, so the keys file is not used: put a new key "
            "(32 random bytes, base64) first in that variable and keep the old ones after it"
        )
    try:
        new_id, count = rotated_payload_keys(path)
    except (OSError, ValueError) as exc:
        raise _fail(f"nothing changed: {exc}") from exc
    console.print(
        f"new payload key {new_id} is first of {count} in {path / 'payload.keys'}; restart the "
        "API and the workers (`leadflow up`) to encrypt with it. Keep the old keys while "
        "histories they wrote are retained.",
        highlight=False,
    )


for _module in CLI_MODULES:
    try:
        importlib.import_module(_module).register(app)
    except ModuleNotFoundError as _exc:
        if _exc.name != _module:
            raise


if __name__ == "__main__":  # `python -m workers.cli worker`: how `up` starts its worker processes
    app(prog_name="leadflow")
