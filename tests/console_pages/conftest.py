"""One running leadflow (migrated database, a tenant, the worker on the enrichment queue, the API
on loopback) and one Debian Chromium for the whole module: the console's jobs, campaigns,
settings and dashboard pages are driven by people who really signed in (admin, operator,
viewer made with the users service, as `leadflow user create` makes them)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from temporalio.client import Client

from models.settings import Settings
from models.task_queues import ENRICHMENT
from tests.browser import CHROMIUM, CHROMIUM_ARGS, OUTPUT_DIR
from tests.conftest import TEST_SECRET
from tests.fakes.web import FakeWeb
from tests.stack import LiveStack, live_stack

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
PASSWORD = "correct horse battery staple"

PEOPLE = {
    "admin": ("admin@example.test", "Ada Admin"),
    "operator": ("operator@example.test", "Otto Operator"),
    "viewer": ("viewer@example.test", "Vera Viewer"),
}


@dataclass
class Console:
    stack: LiveStack
    web: FakeWeb
    browser: Any

    @property
    def url(self) -> str:
        return self.stack.api_url

    async def page_as(self, role: str, *, viewport: dict[str, int] = DESKTOP) -> Any:
        """A new browser context signed in as the person with `role` (through POST
        /api/v1/auth/login, which sets the session and CSRF cookies in the context), and a page
        in it that collects script errors in `page.problems`."""
        context = await self.browser.new_context(viewport=viewport, accept_downloads=True)
        email, _ = PEOPLE[role]
        answer = await context.request.post(
            f"{self.url}/api/v1/auth/login",
            data={"tenant": self.stack.tenant_id, "email": email, "password": PASSWORD},
        )
        assert answer.status == 200, await answer.text()
        page = await context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        page.on(
            "console",
            lambda msg: (
                problems.append(msg.text)
                if msg.type == "error" and "Content Security Policy" in msg.text
                else None
            ),
        )
        page.problems = problems
        return page

    async def open(self, page: Any, hash_: str, ready: str) -> None:
        await page.goto(f"{self.url}/{hash_}")
        await page.wait_for_selector(ready, timeout=30_000)


async def screenshot(page: Any, name: str) -> None:
    """test-output/page-<name>.png (the shell's tests write console-*.png)."""
    OUTPUT_DIR.mkdir(exist_ok=True)
    await page.screenshot(path=str(OUTPUT_DIR / f"page-{name}.png"), full_page=True)


async def make_people(stack: LiveStack) -> None:
    from models import users

    async with stack.db.session() as session:
        for role, (email, name) in PEOPLE.items():
            await users.create_user(
                session,
                tenant_id=stack.tenant_id,
                email=email,
                name=name,
                role=role,
                password=PASSWORD,
            )


@pytest.fixture(scope="module")
async def console(
    temporal_client: Client, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Console]:
    if not CHROMIUM.exists():
        pytest.skip(
            "/usr/bin/chromium is absent (CI installs it with `apt-get install -y chromium`)"
        )
    from playwright.async_api import async_playwright

    tmp = tmp_path_factory.mktemp("console-pages")
    with FakeWeb() as web:
        settings = Settings(
            data_dir=tmp / "data",
            database_url=f"sqlite+aiosqlite:///{tmp / 'leadflow.db'}",
            secret_key=TEST_SECRET,
            debounce_seconds=0.3,
            webhook_ack_budget_seconds=30.0,
            ssrf_allowlist=["127.0.0.1"],
            duckduckgo_url=web.search_url,
        )
        async with live_stack(temporal_client, settings, queues=[ENRICHMENT]) as stack:
            await make_people(stack)
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(
                    executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
                )
                try:
                    yield Console(stack=stack, web=web, browser=browser)
                finally:
                    await browser.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"
