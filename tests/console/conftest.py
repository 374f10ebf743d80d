"""The console's end-to-end fixtures, one of each per test module (a whole stack and a browser
cost seconds; the module's tests share them): a running leadflow (migrated database, a tenant
whose WhatsApp goes through a fake WAHA, the worker, the API on loopback), its people (made
with models/users.py as `leadflow user create` makes them) and Debian's Chromium driven by
Playwright."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from models import users
from models.settings import Settings
from models.task_queues import CONVERSATIONS
from models.tenant import TenantSettings
from tests.browser import CHROMIUM, CHROMIUM_ARGS, OUTPUT_DIR
from tests.conftest import TEST_SECRET
from tests.fakes.waha import FakeWaha
from tests.stack import LiveStack, live_stack

PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class Person:
    email: str
    name: str
    role: str
    password: str = PASSWORD


@dataclass
class Console:
    """A running leadflow with the console, its fake WAHA and its people."""

    stack: LiveStack
    waha: FakeWaha
    operator: Person
    viewer: Person

    @property
    def url(self) -> str:
        return self.stack.api_url

    @property
    def tenant_id(self) -> str:
        return self.stack.tenant_id


@pytest.fixture(scope="module")
def console_waha() -> Iterator[FakeWaha]:
    with FakeWaha() as waha:
        yield waha


@pytest.fixture(scope="module")
async def console(
    temporal_client: Client,
    console_waha: FakeWaha,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Console]:
    folder = tmp_path_factory.mktemp("console")
    settings = Settings(
        data_dir=folder / "data",
        database_url=f"sqlite+aiosqlite:///{folder / 'leadflow.db'}",
        secret_key=TEST_SECRET,
        debounce_seconds=0.3,
        webhook_ack_budget_seconds=30.0,
    )
    tenant = TenantSettings(playbook="car_dealership", waha=console_waha.settings())
    async with live_stack(
        temporal_client, settings, tenant_settings=tenant, queues=[CONVERSATIONS]
    ) as stack:
        suffix = uuid.uuid4().hex[:6]
        operator = Person(f"sam-{suffix}@dealer.example", "Sam Operator", "operator")
        viewer = Person(f"vic-{suffix}@dealer.example", "Vic Viewer", "viewer")
        async with stack.db.session() as session:
            for person in (operator, viewer):
                await users.create_user(
                    session,
                    tenant_id=stack.tenant_id,
                    email=person.email,
                    name=person.name,
                    role=person.role,
                    password=person.password,
                )
        yield Console(stack=stack, waha=console_waha, operator=operator, viewer=viewer)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(
            "/usr/bin/chromium is absent (CI installs it with `apt-get install -y chromium`)"
        )
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture(scope="module")
def screenshots() -> Path:
    OUTPUT_DIR.mkdir(exist_ok=True)
    return OUTPUT_DIR
