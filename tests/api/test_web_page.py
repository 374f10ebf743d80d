"""The web page in headless Chromium (Debian's package, driven by Playwright) against the real
API, a real worker and the Temporal dev server: upload → live progress → download → failures."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest

from models.task_queues import ENRICHMENT
from tests.browser import CHROMIUM, CHROMIUM_ARGS, OUTPUT_DIR
from tests.fakes.web import FakeWeb
from tests.stack import LiveStack, live_stack

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="/usr/bin/chromium is absent (CI installs it with `apt-get install -y chromium`)",
)


def leads_csv(web: FakeWeb) -> str:
    return (
        "company,website,first_name\n"
        f"Acme,{web.site('acme')},Ada\n"
        f"Globex,{web.site('globex')},Grace\n"
        f"Gone Inc,{web.site('missing')},Linus\n"
    )


async def open_page(pw: Any, stack: LiveStack) -> tuple[Any, Any, list[str]]:
    browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    context = await browser.new_context(accept_downloads=True)
    page = await context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    await page.goto(f"{stack.api_url}/app")
    return browser, page, problems


async def save_key(page: Any, key: str) -> None:
    await page.fill("#api-key", key)
    await page.click("#save-key")


@pytest.fixture
async def stack(temporal_client: Any, settings_factory: Any, sqlite_url: str) -> Any:
    with FakeWeb() as web:
        settings = settings_factory(
            sqlite_url, ssrf_allowlist=["127.0.0.1"], duckduckgo_url=web.search_url
        )
        async with live_stack(temporal_client, settings, queues=[ENRICHMENT]) as live:
            live.web = web  # type: ignore[attr-defined]
            yield live


async def test_upload_progress_download_and_failures(stack: LiveStack, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    web: FakeWeb = stack.web  # type: ignore[attr-defined]
    upload = tmp_path / "leads.csv"
    upload.write_text(leads_csv(web))
    async with async_playwright() as pw:
        browser, page, problems = await open_page(pw, stack)
        try:
            await save_key(page, stack.api_key)
            # The key survives a reload (localStorage).
            await page.reload()
            assert await page.input_value("#api-key") == stack.api_key

            await page.set_input_files("#csv-file", str(upload))
            await page.click("#upload")
            await page.wait_for_selector("#job-section:not([hidden])")
            await page.wait_for_selector('#progress[aria-valuenow="100"]', timeout=90_000)
            await page.wait_for_selector("#download:not([hidden])", timeout=30_000)
            assert await page.text_content("#job-status") == "completed"
            assert "3 / 3 records" in (await page.text_content("#progress-text") or "")

            async with page.expect_download() as download_info:
                await page.click("#download")
            download = await download_info.value
            assert download.suggested_filename == "leads.enriched.csv"
            rows = list(csv.DictReader(io.StringIO(Path(await download.path()).read_text())))
            by_company = {row["company"]: row for row in rows}
            assert set(by_company) == {"Acme", "Globex", "Gone Inc"}
            assert by_company["Acme"]["status"] == "done"
            assert by_company["Acme"]["email_body"]
            assert by_company["Gone Inc"]["status"] == "failed"

            await page.wait_for_selector("#failures-section:not([hidden])")
            failures = await page.inner_text("#failures tbody")
            assert "Gone Inc" in failures
            assert "404" in failures

            # The finished job is listed, and pause/cancel are no longer offered.
            assert await page.is_disabled("#pause")
            assert await page.is_disabled("#cancel")
            await page.wait_for_selector("#jobs tbody tr")
            OUTPUT_DIR.mkdir(exist_ok=True)
            await page.screenshot(path=str(OUTPUT_DIR / "web-page.png"), full_page=True)
            assert problems == []
        finally:
            await browser.close()


async def test_api_errors_are_shown(stack: LiveStack, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    bad = tmp_path / "bad.csv"
    bad.write_text("notes,colour\nhello,red\n")
    good = tmp_path / "good.csv"
    good.write_text("company\nAcme\n")
    async with async_playwright() as pw:
        browser, page, problems = await open_page(pw, stack)
        try:
            await save_key(page, "lf_wrong")
            await page.set_input_files("#csv-file", str(good))
            await page.click("#upload")
            await page.wait_for_selector("#error:not([hidden])")
            assert "API key refused" in await page.inner_text("#error")

            await save_key(page, stack.api_key)
            await page.set_input_files("#csv-file", str(bad))
            await page.click("#upload")
            await page.wait_for_selector("#error:not([hidden])")
            text = await page.inner_text("#error")
            assert "invalid CSV" in text
            assert "line 1: no identifying column" in text
            assert await page.is_hidden("#job-section")
            OUTPUT_DIR.mkdir(exist_ok=True)
            await page.screenshot(path=str(OUTPUT_DIR / "web-page-errors.png"), full_page=True)
            assert problems == []
        finally:
            await browser.close()


@pytest.fixture
async def slow_stack(temporal_client: Any, settings_factory: Any, sqlite_url: str) -> Any:
    with FakeWeb(latency=0.4) as web:
        settings = settings_factory(
            sqlite_url, ssrf_allowlist=["127.0.0.1"], duckduckgo_url=web.search_url
        )
        async with live_stack(temporal_client, settings, queues=[ENRICHMENT]) as live:
            live.web = web  # type: ignore[attr-defined]
            yield live


async def test_pause_resume_cancel_buttons(slow_stack: LiveStack, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    web: FakeWeb = slow_stack.web  # type: ignore[attr-defined]
    upload = tmp_path / "many.csv"
    upload.write_text(
        "company,website\n" + "".join(f"Co {i},{web.site(f'co{i}')}\n" for i in range(30))
    )
    async with async_playwright() as pw:
        browser, page, problems = await open_page(pw, slow_stack)
        try:
            page.on("dialog", lambda dialog: dialog.accept())  # "Cancel this job?"
            await save_key(page, slow_stack.api_key)
            await page.set_input_files("#csv-file", str(upload))
            await page.fill("#concurrency", "1")
            await page.click("#upload")
            await page.wait_for_selector("#job-status.running")

            await page.click("#pause")
            await page.wait_for_selector("#job-status.paused", timeout=20_000)
            assert await page.is_enabled("#resume")
            await page.click("#resume")
            await page.wait_for_selector("#job-status.running", timeout=20_000)

            await page.click("#cancel")
            await page.wait_for_selector("#job-status.cancelled", timeout=30_000)
            # Finished records are kept and downloadable.
            await page.wait_for_selector("#download:not([hidden])")
            assert await page.is_disabled("#cancel")
            assert problems == []
        finally:
            await browser.close()
