"""The console's jobs, campaigns, settings and dashboard pages in Debian's Chromium against a
running leadflow (tests/console_pages/conftest.py): what a person does on each page reaches the
API and comes back after a reload; a viewer gets no write controls, and a write forced past the
page is refused (403). Screenshots of each page go to test-output/."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.console_pages.conftest import PHONE, Console, screenshot, unique
from tests.fakes.waha import FakeWaha

pytestmark = pytest.mark.slow


def leads_csv(console: Console) -> str:
    web = console.web
    return (
        "company,website,first_name\n"
        f"Acme,{web.site('acme')},Ada\n"
        f"Globex,{web.site('globex')},Grace\n"
        f"Gone Inc,{web.site('missing')},Linus\n"
    )


async def api_json(console: Console, method: str, path: str, **kwargs: Any) -> Any:
    answer = await console.stack.http.request(method, path, headers=console.stack.auth, **kwargs)
    assert answer.status_code < 300, answer.text
    return answer.json() if answer.content else None


def answered(page: Any, method: str, path: str) -> Any:
    """Wait for the page's own request (`method` to a URL containing `path`) to be answered."""
    return page.expect_response(
        lambda r: r.request.method == method and path in r.url, timeout=30_000
    )


async def fits_the_width(page: Any) -> bool:
    """Nothing sticks out sideways: the page scrolls only down (tables scroll in their own box)."""
    fits: bool = await page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )
    return fits


@contextlib.asynccontextmanager
async def rerendered(page: Any, panel: str) -> AsyncIterator[None]:
    """Wait, after the block, for the settings tab `panel` to finish its next render (its
    `data-renders` count goes up): what the page shows after a save is then the new state."""
    before = await page.get_attribute(panel, "data-renders")
    yield
    await page.wait_for_function(
        "([sel, n]) => document.querySelector(sel)?.dataset.renders !== n",
        arg=[panel, before],
        timeout=30_000,
    )


async def forced_write(page: Any, method: str, path: str, body: Any) -> int:
    """A write sent from the signed-in page with its session cookie and CSRF token, as the page
    itself would send it if it offered the control."""
    status: int = await page.evaluate(
        """async ([method, path, body]) => {
            const csrf = document.cookie.split(';').map((c) => c.trim().split('='))
                .find(([k]) => k === 'leadflow_csrf');
            const r = await fetch(path, {method, credentials: 'same-origin',
                headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf ? csrf[1] : ''},
                body: JSON.stringify(body)});
            return r.status;
        }""",
        [method, path, body],
    )
    return status


async def test_jobs_page_uploads_follows_and_downloads(console: Console, tmp_path: Path) -> None:
    upload = tmp_path / "leads.csv"
    upload.write_text(leads_csv(console))
    page = await console.page_as("operator")
    try:
        await console.open(page, "#/jobs", "#jobs-upload-form")
        await page.set_input_files("#jobs-file", str(upload))
        await page.click("#jobs-upload")
        await page.wait_for_selector("#job-section:not([hidden])")
        await page.wait_for_selector("#job-status.completed", timeout=90_000)
        assert "3 / 3 records" in (await page.text_content("#job-progress-text") or "")
        assert await page.get_attribute("#job-progress", "aria-valuenow") == "100"
        await page.wait_for_selector("#job-failures-section:not([hidden])")
        failures = await page.inner_text("#job-failures")
        assert "Gone Inc" in failures and "404" in failures
        assert await page.is_disabled("#job-pause")
        assert await page.is_disabled("#job-cancel")

        async with page.expect_download() as download_info:
            await page.click("#job-download")
        download = await download_info.value
        assert download.suggested_filename == "leads-enriched.csv"
        rows = list(csv.DictReader(io.StringIO(Path(await download.path()).read_text())))
        assert {row["company"]: row["status"] for row in rows} == {
            "Acme": "done",
            "Globex": "done",
            "Gone Inc": "failed",
        }
        # The finished job is in the list; following it from there shows it again.
        job_id = await page.text_content("#job-id")
        await page.wait_for_selector(f"#jobs-list button[aria-label='Follow job {job_id}']")
        await screenshot(page, "jobs")

        # A bad CSV is refused with the API's words, and no job starts.
        bad = tmp_path / "bad.csv"
        bad.write_text("notes,colour\nhello,red\n")
        await page.set_input_files("#jobs-file", str(bad))
        await page.click("#jobs-upload")
        await page.wait_for_selector(".lf-jobs-page .notice.error:not([hidden])")
        text = await page.inner_text(".lf-jobs-page .notice.error")
        assert "invalid CSV" in text
        assert "line 1: no identifying column" in text
        assert page.problems == []
    finally:
        await page.context.close()


@pytest.fixture(scope="module")
async def enriched_job(console: Console) -> str:
    """A finished enrichment job of two companies with e-mail addresses (through the API)."""
    created = await api_json(
        console,
        "POST",
        "/api/v1/jobs",
        files={"file": ("campaign.csv", leads_csv(console).encode(), "text/csv")},
    )
    job_id: str = created["job_id"]

    async def finished() -> bool:
        job = await api_json(console, "GET", f"/api/v1/jobs/{job_id}")
        return bool(job["status"] == "completed")

    await console.stack.wait_for(finished, timeout=90, what="the enrichment job")
    return job_id


async def test_campaign_from_a_job_is_held_then_cancelled(
    console: Console, enriched_job: str
) -> None:
    page = await console.page_as("operator")
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    try:
        await console.open(page, "#/campaigns", "#campaign-form")
        name = unique("Spring")
        await page.fill("#campaign-name", name)
        await page.select_option("#campaign-source", "job")
        await page.select_option("#campaign-job", enriched_job)
        assert await page.is_checked("#campaign-hold")
        await page.click("#campaign-create")
        await page.wait_for_selector("#campaign-created .notice.ok")
        created = await page.inner_text("#campaign-created")
        assert name in created and "awaiting approval" in created
        card = page.locator(f"[data-campaign] >> text={name}").locator("xpath=ancestor::article")
        await card.locator(".badge.awaiting_approval").wait_for()
        assert await card.locator("progress").count() == 1
        assert await card.locator("[data-action=approve]").count() == 1
        await screenshot(page, "campaigns")

        await card.locator("[data-action=cancel]").click()
        await card.locator(".badge.cancelled").wait_for(timeout=30_000)
        campaigns = (await api_json(console, "GET", "/api/v1/campaigns"))["campaigns"]
        assert [c["status"] for c in campaigns if c["name"] == name] == ["cancelled"]
        # Nothing more to steer once it is cancelled.
        assert await card.locator("[data-action]").count() == 0

        # A filter nobody matches is refused with the API's reason.
        await page.select_option("#campaign-source", "filter")
        await page.fill("#campaign-q", "nobody-matches-this")
        await page.click("#campaign-create")
        error = page.locator("#campaign-form .notice.error")
        await error.wait_for()
        assert "empty selection" in await error.inner_text()
        assert page.problems == []
    finally:
        await page.context.close()


async def test_settings_round_trip(console: Console) -> None:
    page = await console.page_as("admin")
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    try:
        # -- time zone and quiet hours: saved, shown again after a reload
        await console.open(page, "#/settings?tab=hours", "#hours-form")
        await page.fill("#settings-timezone", "Europe/Amsterdam")
        await page.fill("#quiet-start", "22:00")
        await page.fill("#quiet-end", "07:30")
        await page.fill("#quiet-timezone", "Europe/Amsterdam")
        await page.click("#hours-save")
        await page.wait_for_selector(".toast >> text=Quiet hours and time zone saved")
        await page.reload()
        await page.wait_for_selector("#hours-form")
        assert await page.input_value("#settings-timezone") == "Europe/Amsterdam"
        assert await page.input_value("#quiet-start") == "22:00"
        assert await page.input_value("#quiet-end") == "07:30"
        stored = await api_json(console, "GET", "/api/v1/settings")
        assert stored["timezone"] == "Europe/Amsterdam"

        # -- a bad time zone is shown at its input, nothing saved
        await page.fill("#settings-timezone", "Mars/Olympus")
        await page.click("#hours-save")
        await page.wait_for_selector("#settings-timezone[aria-invalid=true]")
        assert "IANA" in await page.inner_text("#hours-form .lf-field-error")
        assert (await api_json(console, "GET", "/api/v1/settings"))[
            "timezone"
        ] == "Europe/Amsterdam"

        # -- a channel's secret is write-only: set, shown as "set", kept when left empty; the
        #    connection test asks the (fake) WAHA with the stored settings
        with FakeWaha() as waha:
            await console.open(page, "#/settings?tab=channels", "#channel-waha")
            await page.click("#channel-waha > summary")
            await page.fill("#channel-waha-base_url", waha.url)
            await page.fill("#channel-waha-api_key", waha.api_key)
            await page.click("#channel-waha-save")
            await page.wait_for_selector("#channel-waha[open] .lf-secret-state.set")
            assert await page.input_value("#channel-waha-api_key") == ""
            await page.click("#channel-waha-test")
            await page.wait_for_selector("#channel-waha-test-result.ok")
            assert "Connection works" in await page.inner_text("#channel-waha-test-result")
            await screenshot(page, "settings-channels")

            await page.fill("#channel-waha-session", "sales")
            async with rerendered(page, "#panel-channels"):
                await page.click("#channel-waha-save")
            stored = (await api_json(console, "GET", "/api/v1/settings"))["waha"]
            assert stored["session"] == "sales"
            assert stored["api_key"] == "**********"  # still set: the empty input kept it
            # WAHA has no session "sales": the test says so instead of failing the page.
            await page.click("#channel-waha-test")
            await page.wait_for_selector("#channel-waha-test-result.failed")
            assert "Connection failed" in await page.inner_text("#channel-waha-test-result")
            assert any(r.path.endswith("/api/sessions/default") for r in waha.requests)

        # -- a CRM integration: added, its mapping edited, disabled, deleted
        crm = unique("HubSpot")
        await console.open(page, "#/settings?tab=crm", "#crm-new-form")
        await page.select_option("#crm-new-kind", "hubspot")
        await page.fill("#crm-new-name", crm)
        await page.fill("#crm-new-access_token", "hubspot-token")
        await page.click("#crm-new-add")
        card = page.locator(f"[data-integration='{crm}']")
        await card.wait_for()
        await card.locator("button", has_text="Add mapping row").click()
        await card.locator(".lf-map-from").last.fill("summary")
        await card.locator(".lf-map-to").last.fill("leadflow_summary")
        async with rerendered(page, "#panel-crm"):
            await card.locator("[data-action=save]").click()
        listed = {i["name"]: i for i in await api_json(console, "GET", "/api/v1/integrations")}
        assert listed[crm]["field_mapping"]["summary"] == "leadflow_summary"
        assert listed[crm]["credentials_set"] == ["access_token"]
        await card.locator("[data-action=toggle]").click()
        await card.locator(".badge.off", has_text="disabled").wait_for()
        # Shown again after a reload: the added mapping row, the credential as "set".
        await page.reload()
        await card.locator(".lf-secret-state.set").wait_for()
        assert "leadflow_summary" in [
            await i.input_value() for i in await card.locator(".lf-map-to").all()
        ]
        await screenshot(page, "settings-crm")
        listed = {i["name"]: i for i in await api_json(console, "GET", "/api/v1/integrations")}
        assert listed[crm]["enabled"] is False
        await card.locator("[data-action=delete]").click()
        await card.wait_for(state="detached")
        listed = {i["name"]: i for i in await api_json(console, "GET", "/api/v1/integrations")}
        assert crm not in listed

        # -- an API key: created (shown once, and it works), then revoked (refused)
        label = unique("ci")
        await console.open(page, "#/settings?tab=keys", "#key-form")
        await page.fill("#key-label", label)
        await page.click("#key-create")
        await page.wait_for_selector("#key-secret")
        secret = await page.input_value("#key-secret")
        assert secret.startswith("lf_")
        bearer = {"Authorization": f"Bearer {secret}"}
        assert (await console.stack.http.get("/api/v1/settings", headers=bearer)).status_code == 200
        await screenshot(page, "settings-keys")
        await page.click(f"button[data-key='{label}']")
        await page.wait_for_selector(f"button[data-key='{label}']", state="detached")
        assert (await console.stack.http.get("/api/v1/settings", headers=bearer)).status_code == 401
        await page.reload()
        await page.wait_for_selector("#key-form")
        assert await page.locator("#key-secret").count() == 0  # shown once, never again
        assert page.problems == []
    finally:
        await page.context.close()


async def test_playbook_preview_and_errors(console: Console) -> None:
    page = await console.page_as("admin")
    try:
        await console.open(page, "#/settings?tab=playbook", "#playbook-yaml")
        original = await page.input_value("#playbook-yaml")
        assert original.strip()
        await page.fill("#preview-messages", "Hello, what does it cost?")
        await page.click("#playbook-preview-run")
        await page.wait_for_selector("#playbook-preview .lf-said.ai")
        reply = await page.inner_text("#playbook-preview")
        assert "Offline reply" in reply
        await screenshot(page, "settings-playbook")

        # A broken playbook: the error says where, the editor goes there, nothing is saved.
        await page.fill("#playbook-yaml", original + "\nescalation: [unclosed\n")
        await page.click("#playbook-save")
        await page.wait_for_selector("#playbook-problems li")
        problems = await page.inner_text("#playbook-problems")
        assert "line" in problems
        stored = await api_json(console, "GET", "/api/v1/settings/playbook")
        assert "[unclosed" not in stored["yaml"]
        await screenshot(page, "settings-playbook-error")
        assert page.problems == []
    finally:
        await page.context.close()


async def test_dashboard_draws_the_numbers(console: Console, enriched_job: str) -> None:
    numbers = await api_json(console, "GET", "/api/v1/dashboard?days=7")
    page = await console.page_as("viewer")
    try:
        await console.open(page, "#/dashboard?days=7", "#dashboard-figures")
        for chart in ("chart-messages", "chart-cost", "chart-enrichment"):
            await page.wait_for_selector(f"#{chart} canvas")
        # uPlot sized its elements through CSSOM under the console's CSP: the canvas has a size.
        box = await page.locator("#chart-enrichment canvas").bounding_box()
        assert box is not None and box["width"] > 200 and box["height"] > 100
        done = sum(d["done"] for d in numbers["enrichment"]["per_day"])
        assert done >= 2  # the enriched job's records
        legend = await page.inner_text("#chart-enrichment")
        assert "done" in legend and "failed" in legend
        crm = numbers["crm_sync"]
        assert f"{crm['runs']} runs" in await page.inner_text("#fig-crm-sync")
        meetings = await page.inner_text("#fig-meetings")
        assert str(numbers["meetings_booked"]) in meetings
        month = await api_json(console, "GET", "/api/v1/dashboard?days=30")
        await page.select_option("#dashboard-period", "30")
        await page.wait_for_selector(f"#dashboard-period-text >> text={month['period']['since']}")
        await page.wait_for_selector("#chart-messages .u-legend >> text=out")
        assert page.url.endswith("#/dashboard?days=30")
        await screenshot(page, "dashboard")
        await page.set_viewport_size(PHONE)
        await page.wait_for_timeout(300)  # one frame for the charts to follow the width
        width = (await page.locator("#chart-messages canvas").bounding_box() or {})["width"]
        assert width <= PHONE["width"]
        assert await fits_the_width(page)
        await screenshot(page, "dashboard-phone")
        assert page.problems == []
    finally:
        await page.context.close()


async def test_a_viewer_gets_no_write_controls(console: Console) -> None:
    page = await console.page_as("viewer")
    try:
        await console.open(page, "#/settings?tab=channels", "#channel-waha")
        assert await page.locator(".lf-readonly").count() == 1
        assert await page.locator("#tab-keys").count() == 0
        assert await page.locator("#tab-users").count() == 0
        assert await page.locator(".lf-settings-page button[type=submit]").count() == 0
        assert await page.locator("button", has_text="Test connection").count() == 0
        await page.click("#tab-crm")
        await page.wait_for_selector("#panel-crm:not([hidden]) h2")
        assert await page.locator("#crm-new-form").count() == 0
        assert await page.locator("[data-integration] [data-action]").count() == 0
        await page.click("#tab-playbook")
        await page.wait_for_selector("#playbook-yaml")
        assert await page.get_attribute("#playbook-yaml", "readonly") is not None
        assert await page.locator("#playbook-save").count() == 0
        await screenshot(page, "settings-viewer")

        await page.set_viewport_size(PHONE)
        await console.open(page, "#/jobs", "#jobs-list")
        assert await page.locator("#jobs-upload-form").count() == 0
        assert await fits_the_width(page)
        await screenshot(page, "jobs-viewer-phone")
        await console.open(page, "#/campaigns", "#campaigns-list")
        assert await page.locator("#campaign-form").count() == 0
        assert await page.locator("[data-campaign] [data-action]").count() == 0
        assert await fits_the_width(page)
        await screenshot(page, "campaigns-viewer-phone")

        # The server refuses what the page does not offer.
        assert await forced_write(page, "PATCH", "/api/v1/settings", {"timezone": "UTC"}) == 403
        assert await forced_write(page, "POST", "/api/v1/campaigns", {"job_id": "x"}) == 403
        assert await forced_write(page, "POST", "/api/v1/keys", {"label": "sneaky"}) == 403
        assert page.problems == []
    finally:
        await page.context.close()


async def test_an_operator_reads_settings_without_admin_writes(console: Console) -> None:
    page = await console.page_as("operator")
    try:
        await console.open(page, "#/settings?tab=channels", "#channel-waha")
        assert await page.locator(".lf-settings-page button[type=submit]").count() == 0
        assert await page.locator("#tab-keys").count() == 0
        assert await forced_write(page, "PATCH", "/api/v1/settings", {"timezone": "UTC"}) == 403
        await page.set_viewport_size(PHONE)
        assert await fits_the_width(page)
        await screenshot(page, "settings-operator-phone")
        assert page.problems == []
    finally:
        await page.context.close()


async def test_people_specialists_and_knowledge(console: Console) -> None:
    page = await console.page_as("admin")
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    try:
        # -- a person: added, role changed, disabled (and then refused at sign-in)
        email = f"{unique('nina')}@example.test"
        await console.open(page, "#/settings?tab=users", "#user-form")
        await page.fill("#user-email", email)
        await page.fill("#user-name", "Nina New")
        await page.select_option("#user-role", "operator")
        await page.fill("#user-password", "a long enough password")
        await page.click("#user-add")
        role = page.locator(f"select[data-user='{email}']")
        await role.wait_for()
        assert await role.input_value() == "operator"
        async with answered(page, "PATCH", "/api/v1/users/") as answer:
            await role.select_option("viewer")
        assert (await answer.value).status == 200
        await page.locator(f"button[data-user='{email}']", has_text="Disable").click()
        await page.locator(f"button[data-user='{email}']", has_text="Enable").wait_for()
        people = {u["email"]: u for u in (await api_json(console, "GET", "/api/v1/users"))["users"]}
        assert people[email]["role"] == "viewer" and people[email]["disabled"] is True
        refused = await console.stack.http.post(
            "/api/v1/auth/login",
            json={
                "tenant": console.stack.tenant_id,
                "email": email,
                "password": "a long enough password",
            },
        )
        assert refused.status_code == 401
        await screenshot(page, "settings-users")

        # -- a specialist: a bad address is shown at its input; fixed, saved, shown again
        await console.open(page, "#/settings?tab=specialists", "#specialists-form")
        await page.click("#specialists-form button:has-text('Add specialist')")
        row = page.locator(".lf-specialist").last
        await row.get_by_label("Name").fill("Sam Sales")
        await row.get_by_label("Role").fill("sales")
        await row.get_by_label("E-mail").fill("not-an-address")
        await page.click("#specialists-save")
        await row.locator("input[aria-invalid=true]").wait_for()
        assert "not an e-mail address" in await row.locator(".lf-field-error").inner_text()
        await row.get_by_label("E-mail").fill("sam@example.com")
        async with answered(page, "PATCH", "/api/v1/settings") as answer:
            await page.click("#specialists-save")
        assert (await answer.value).status == 200
        await page.reload()
        await page.wait_for_selector(".lf-specialist")
        assert await page.locator(".lf-specialist").last.get_by_label("E-mail").input_value() == (
            "sam@example.com"
        )

        # -- a knowledge document: added, listed, deleted
        title = unique("Opening hours")
        await console.open(page, "#/settings?tab=knowledge", "#knowledge-form")
        await page.fill("#knowledge-title", title)
        await page.fill("#knowledge-body", "We are open Monday to Saturday, 9:00 to 18:00.")
        await page.click("#knowledge-form button[type=submit]")
        delete = page.get_by_role("button", name=f"Delete document {title}")
        await delete.wait_for()
        await screenshot(page, "settings-knowledge")
        await delete.click()
        await delete.wait_for(state="detached")
        titles = [d["title"] for d in await api_json(console, "GET", "/api/v1/knowledge")]
        assert title not in titles

        # -- an inventory source: added (with its Temporal schedule), paused, deleted
        source = unique("Showroom")
        await page.fill("#source-name", source)
        await page.select_option("#panel-knowledge select", "json_feed")
        await page.fill("#source-url", console.web.site("feed"))
        await page.fill("#source-every", "60")
        await page.click("#source-form button[type=submit]")
        pause = page.get_by_role("button", name=f"Pause {source}")
        await pause.click()
        await page.get_by_role("button", name=f"Resume {source}").wait_for()
        sources = (await api_json(console, "GET", "/api/v1/inventory/sources"))["sources"]
        assert [s["spec"]["paused"] for s in sources if s["name"] == source] == [True]
        await page.get_by_role("button", name=f"Delete {source}").click()
        await page.get_by_role("button", name=f"Delete {source}").wait_for(state="detached")
        sources = (await api_json(console, "GET", "/api/v1/inventory/sources"))["sources"]
        assert source not in [s["name"] for s in sources]

        # -- the tabs work from the keyboard (arrow keys, as the tabs pattern says)
        await page.focus("#tab-knowledge")
        await page.keyboard.press("ArrowRight")
        assert await page.evaluate("document.activeElement.id") == "tab-keys"
        assert await page.get_attribute("#tab-keys", "aria-selected") == "true"
        await page.wait_for_selector("#key-form")
        assert page.problems == []
    finally:
        await page.context.close()
