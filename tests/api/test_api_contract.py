"""The API's contract, fuzzed: schemathesis generates valid and invalid requests for every
operation in the OpenAPI document (so routes added later are covered without editing this file)
and runs all its checks on the answers: no 5xx, every status documented, every body and header
as documented, invalid input refused, an API key required where the document says so.

The app is the real one (`create_app`, its lifespan, a migrated SQLite database, the Temporal
dev server) served by uvicorn on loopback, with a real tenant and API key; webhooks are sent to
that tenant (it accepts unsigned webhooks, as test tenants do). Nothing leaves the machine: the
tenant has no channel or CRM configured, so nothing is sent anywhere, and the workflows that
fuzzed calls start (conversations, CRM syncs) have no worker here and are terminated after the
test by the suite's autouse fixture.

Bounded and deterministic: a few examples per operation, a fixed seed, derandomized Hypothesis,
no example database, so CI sees the same requests every run."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from schemathesis import Case
from schemathesis.config import SchemathesisConfig
from sqlmodel import select
from temporalio.client import Client

from api.app import create_app
from models.db import Database, migrate
from models.knowledge.schedules import delete_tenant_schedules
from models.repo import knowledge_sources as source_repo
from models.repo import tenants as tenant_repo
from models.settings import Settings
from models.tables import ApiKey
from tests.conftest import TEST_SECRET, make_tenant
from tests.live_stack import free_port

pytestmark = pytest.mark.timeout(300)

MAX_EXAMPLES = 5
"""Examples per operation in the fuzzing phase (the examples and coverage phases add their own,
bounded by the schema): enough to find what a careless client sends, under ~90 s on 2 cores."""

SEED = 20261128

REQUEST_TIMEOUT_SECONDS = 30.0
READY_TIMEOUT_SECONDS = 120.0


TENANT_ID = "t-contract"
"""The tenant webhooks are addressed to (each run has a database of its own)."""

SPARE_KEY_ID = 2
"""The tenant's second key, the one `DELETE /api/v1/keys/{key_id}` and `.../rotate` get: a
rotation with no grace or a revocation of the run's own key (id 1) would turn every later
operation into a 401."""


@dataclass(frozen=True)
class ContractTarget:
    base_url: str
    api_key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


class _ThreadedServer:
    """uvicorn on 127.0.0.1 in a thread of its own, with its own event loop: schemathesis calls
    it synchronously from the test, while the suite's event loop is not running."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="contract-api", daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:  # waits for start-up; proves nothing by waiting
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the API did not stop"


def _settings(data_dir: Path, database_url: str, **overrides: Any) -> Settings:
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        secret_key=TEST_SECRET,
        **overrides,
    )


@pytest.fixture(scope="module")
async def contract_target(
    tmp_path_factory: pytest.TempPathFactory, temporal_address: str, temporal_client: Client
) -> AsyncIterator[ContractTarget]:
    """One app for every operation of the run (module scope): starting one per operation
    would be most of the run's time."""
    root = tmp_path_factory.mktemp(f"contract-{uuid.uuid4().hex[:6]}")
    database_url = f"sqlite+aiosqlite:///{root / 'leadflow.db'}"
    migrate(database_url)
    db = Database(database_url)
    try:
        _, api_key = await make_tenant(db, tenant_id=TENANT_ID)
        async with db.session() as session:
            spare = await tenant_repo.create_api_key(session, tenant_id=TENANT_ID)
            row = (await session.exec(select(ApiKey).where(ApiKey.prefix == spare[:10]))).one()
        # the key operations act on the spare key (SPARE_KEY_ID), never on the run's own
        assert row.id == SPARE_KEY_ID, row.id
    finally:
        await db.dispose()
    settings = _settings(
        root / "data",
        database_url,
        temporal_address=temporal_address,
        # no worker runs here: a webhook's answer does not wait long for a delivery
        webhook_ack_budget_seconds=1.0,
        # No limits: the checks send requests without a key on purpose (a 401 is the answer
        # they look for; the failed-authentication limit would answer 429 after 30). 429 is
        # documented on every limited operation; tests/api/test_rate_limits.py tests limiting.
        rate_limit_api="",
        rate_limit_webhooks="",
        rate_limit_auth_failures="",
    )
    with _ThreadedServer(create_app(settings)) as base_url:
        # Ready first, as a deployment is probed before it gets traffic: the first /ready
        # connects to Temporal and loads every plugin (seconds, once per process), which is not
        # the latency of any fuzzed call.
        async with httpx.AsyncClient(base_url=base_url, timeout=READY_TIMEOUT_SECONDS) as http:
            ready = await http.get("/ready")
        assert ready.status_code == 200, ready.text
        yield ContractTarget(base_url=base_url, api_key=api_key)
    # The fuzzed POST /api/v1/inventory/sources made real Temporal Schedules (some every
    # minute) on the session's dev server: none may fire into later tests.
    db = Database(database_url)
    try:
        async with db.session() as session:
            rows = await source_repo.list_sources(session, tenant_id=TENANT_ID)
    finally:
        await db.dispose()
    await delete_tenant_schedules(
        temporal_client, tenant_id=TENANT_ID, source_ids=[row.id for row in rows]
    )


POSITIVE_STATUSES = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
"""What schemathesis accepts by default as the answer to a schema-valid request (a 5xx still
fails the server-error check)."""

CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": SEED,
        # a live server is slow for Hypothesis' taste; the bound is max-examples
        "suppress-health-check": ["all"],
        "generation": {
            "mode": "all",  # valid and invalid requests
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "database": "none",
            "no-shrink": True,
        },
        "checks": {"enabled": True},
        "request-timeout": REQUEST_TIMEOUT_SECONDS,
        "operations": [
            {
                # Mailgun's "rejected, do not retry" is 406 (api/webhooks/mailgun.py): what is
                # not a Mailgun mail gets it where other webhooks answer 422.
                "include-path-regex": "^/webhooks/mailgun/",
                "parameters": {"tenant": TENANT_ID},
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": [*POSITIVE_STATUSES, "406", "422"]
                    }
                },
            },
            {
                "include-path-regex": "^/webhooks/",
                "parameters": {"tenant": TENANT_ID},
                # The document says "a JSON object"; the provider's shape is in docs/webhooks.md
                # and any other object is refused with 422 (by design: not the provider's).
                "checks": {
                    "positive_data_acceptance": {"expected-statuses": [*POSITIVE_STATUSES, "422"]}
                },
            },
            {"include-path-regex": "^/api/v1/keys/", "parameters": {"key_id": SPARE_KEY_ID}},
            {
                # Settings are validated beyond the schema (time zones, URLs, e-mail addresses,
                # phone numbers, playbooks, model chains), each with a 422 naming the field.
                "include-path": "/api/v1/settings",
                "checks": {
                    "positive_data_acceptance": {"expected-statuses": [*POSITIVE_STATUSES, "422"]}
                },
            },
            {
                # A playbook is YAML any string may claim to be; the playbook model (fields,
                # intents, regexes, times) refuses the rest with a 422 naming the line or field.
                "include-path-regex": "^/api/v1/settings/playbook",
                "checks": {
                    "positive_data_acceptance": {"expected-statuses": [*POSITIVE_STATUSES, "422"]}
                },
            },
            {
                # `to` before `from`, or a range over 366 days: refused with a 422 naming `to`.
                "include-path": "/api/v1/usage",
                "checks": {
                    "positive_data_acceptance": {"expected-statuses": [*POSITIVE_STATUSES, "422"]}
                },
            },
            {
                # `days` with `since`/`until`, `since` after `until`, a date the pattern allows
                # that does not exist (2026-02-31) or lies outside 2000-2099, more than 366
                # days: refused with a 422 naming the parameter.
                "include-path": "/api/v1/dashboard",
                "checks": {
                    "positive_data_acceptance": {"expected-statuses": [*POSITIVE_STATUSES, "422"]}
                },
            },
            {
                # `until` not after `since`, or a date the pattern allows that does not exist
                # (2026-02-31): refused with a 422 naming the parameter.
                "include-path": "/api/v1/audit",
                "checks": {
                    "positive_data_acceptance": {"expected-statuses": [*POSITIVE_STATUSES, "422"]}
                },
            },
            {
                # Inventory: rules a JSON schema cannot express, each a 422 naming the field:
                # min_price above max_price, an item URL that is not http(s), a source kind's
                # own fields (selectors, items_path, delimiter), URLs the SSRF guard refuses.
                "include-path-regex": "^/api/v1/inventory",
                "checks": {
                    "positive_data_acceptance": {"expected-statuses": [*POSITIVE_STATUSES, "422"]}
                },
            },
            {
                # People: e-mail addresses (email-validator), names (no control characters) and
                # passwords (not only spaces) are checked beyond the schema, each a 422.
                "include-path-regex": "^/api/v1/users",
                "checks": {
                    "positive_data_acceptance": {"expected-statuses": [*POSITIVE_STATUSES, "422"]}
                },
            },
            {
                # Idempotency-Key and the body's request_id may each name the command, but two
                # different names are refused (422), a rule a JSON schema cannot express.
                "include-path-regex": "^/api/v1/conversations/[^/]+/[a-z]+$",
                "include-method": "POST",
                "checks": {
                    "positive_data_acceptance": {"expected-statuses": [*POSITIVE_STATUSES, "422"]}
                },
            },
        ],
    }
)
"""All checks, valid and invalid data, webhooks addressed to the run's tenant."""

# The document as the app serves it, built when the module is collected: every route that
# exists then is an operation of the run.
DOCUMENT = create_app(_settings(Path("/nonexistent"), "sqlite+aiosqlite://")).openapi()
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)


@schema.parametrize()
def test_api_contract(case: Case[Any], contract_target: ContractTarget) -> None:
    case.call_and_validate(base_url=contract_target.base_url, headers=contract_target.auth)
