"""The operator console in Debian's Chromium (Playwright) on a running leadflow: the real API,
worker and Temporal dev server, WhatsApp through a fake WAHA (issue 14's test).

An operator signs in; a lead's WhatsApp message arrives through the WAHA webhook and appears in
the inbox live (no reload); the AI answers; the operator opens the conversation, takes over
and replies — the fake WAHA receives the person's text — then releases it; the lead's next
message gets the AI's answer (in the transcript, live, and at the fake WAHA); the dashboard
counts the messages. A viewer sees no write controls, and a write forced past the page is 403.
Screenshots of each page go to test-output/."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest

from models.conversation import conversation_workflow_id
from tests.console.conftest import Console, Person

# One stack and one browser for the module (tests/console/conftest.py): its tests belong on one
# xdist worker.
pytestmark = [pytest.mark.timeout(240), pytest.mark.xdist_group("console-session")]

PHONE = "31612345678@c.us"
OTHER_PHONE = "31611112222@c.us"
VIEWER_PHONE = "31687654321@c.us"
FIRST = "Hi, is the Golf still for sale?"
PERSON_REPLY = "Hello, this is Sam from the showroom: yes, the Golf is here. When can you come?"
NEXT = "Can I test drive it on Saturday?"
OTHER_FIRST = "Do you sell electric SUVs?"


async def open_console(browser: Any, console: Console, *, phone: bool = False) -> tuple[Any, Any]:
    viewport = {"width": 390, "height": 844} if phone else {"width": 1280, "height": 800}
    context = await browser.new_context(viewport=viewport)
    page = await context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.problems = problems
    await page.goto(f"{console.url}/")
    return context, page


async def sign_in(page: Any, console: Console, person: Person) -> None:
    await page.wait_for_selector("#signin-form")
    await page.fill("#signin-tenant", console.tenant_id)
    await page.fill("#signin-email", person.email)
    await page.fill("#signin-password", person.password)
    await page.press("#signin-password", "Enter")
    await page.wait_for_selector("#inbox-list")
    assert await page.get_attribute("#who [data-role]", "data-role") == person.role
    # The one live stream is open before anything is expected to arrive over it.
    await page.wait_for_selector('#live[data-state="on"]')


async def deliver(console: Console, chat: str, text: str) -> None:
    raw, headers = console.waha.message_webhook(from_=chat, body=text)
    response = await console.stack.http.post(
        f"/webhooks/waha/{console.tenant_id}", content=raw, headers=headers
    )
    assert response.status_code in (200, 202), response.text
    assert response.json()["status"] == "accepted"


def sent_to(console: Console, chat: str) -> list[str]:
    return [str(body["text"]) for body in console.waha.sent if body.get("chatId") == chat]


async def authors(page: Any) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = await page.eval_on_selector_all(
        "#transcript li[data-author]",
        "items => items.map(li => [li.dataset.author, li.querySelector('.msg-text').textContent])",
    )
    return [(author, text) for author, text in rows]


async def inbox_order(page: Any) -> list[str]:
    ids: list[str] = await page.eval_on_selector_all(
        "#inbox-list li[data-id]", "rows => rows.map(r => r.dataset.id)"
    )
    return ids


async def messages_counted(console: Console) -> tuple[int, int]:
    """Messages in and out in the last 7 days, as the dashboard API counts them."""
    response = await console.stack.http.get("/api/v1/dashboard?days=7", headers=console.stack.auth)
    assert response.status_code == 200, response.text
    days = response.json()["messages_per_day"]
    return sum(day["in"] for day in days), sum(day["out"] for day in days)


async def unlabelled(page: Any) -> list[str]:
    """Form controls on the page that no label names (every one needs one)."""
    found: list[str] = await page.eval_on_selector_all(
        "main input, main select, main textarea",
        """controls => controls
            .filter(c => c.type !== 'hidden' && c.labels.length === 0
                         && !c.getAttribute('aria-label'))
            .map(c => c.id || c.name || c.outerHTML.slice(0, 60))""",
    )
    return found


def conversation_row(conv_id: str) -> str:
    return f'#inbox-list li[data-id="{conv_id}"]'


async def test_operator_session(browser: Any, console: Console, screenshots: Path) -> None:
    stack = console.stack
    conv_id = conversation_workflow_id(console.tenant_id, "waha", PHONE)
    other_id = conversation_workflow_id(console.tenant_id, "waha", OTHER_PHONE)
    before = await messages_counted(console)
    context, page = await open_console(browser, console)
    try:
        await page.wait_for_selector("#signin-form")
        assert await unlabelled(page) == []
        await page.screenshot(path=str(screenshots / "session-signin.png"))
        await sign_in(page, console, console.operator)

        # A lead writes on WhatsApp: the conversation appears in the open inbox, live; then a
        # second lead, whose conversation comes in above it.
        await page.evaluate("window.__sameDocument = true")
        await deliver(console, PHONE, FIRST)
        await page.wait_for_selector(conversation_row(conv_id), timeout=30_000)
        await deliver(console, OTHER_PHONE, OTHER_FIRST)
        await page.wait_for_selector(conversation_row(other_id), timeout=30_000)
        assert [i for i in await inbox_order(page) if i in (conv_id, other_id)] == [
            other_id,
            conv_id,
        ]
        assert await page.evaluate("window.__sameDocument === true"), "the inbox was reloaded"
        # The AI answers both leads.
        await stack.wait_for(
            lambda: sent_to(console, PHONE) and sent_to(console, OTHER_PHONE),
            timeout=60,
            what="the AI's answers",
        )
        ai_first = sent_to(console, PHONE)[0]

        # A second tab keeps the inbox open while the operator works in the first.
        watcher = await context.new_page()
        watcher.on("pageerror", lambda exc: page.problems.append(str(exc)))
        await watcher.goto(f"{console.url}/#/inbox")
        await watcher.wait_for_selector(conversation_row(other_id))
        await watcher.wait_for_selector('#live[data-state="on"]')
        await watcher.evaluate("window.__sameDocument = true")

        # The operator opens the first lead's conversation with the keyboard (focus, Enter).
        await page.focus(f"{conversation_row(conv_id)} a")
        await page.keyboard.press("Enter")
        await page.wait_for_selector("#transcript li[data-author='ai']")
        assert await authors(page) == [("lead", FIRST), ("ai", ai_first)]
        assert await unlabelled(page) == []

        # Take over: answered with the resulting state.
        await page.click("#act-takeover")
        await page.wait_for_selector("#conv-result[data-outcome='done']")
        assert "Taken over" in await page.inner_text("#conv-result")
        assert "human handoff" in await page.inner_text("#conv-result")
        await page.wait_for_selector("#conv-badges .needs-human")
        await page.wait_for_selector("#act-release")
        assert await page.query_selector("#act-takeover") is None

        # Reply as a person: the fake WAHA receives the person's text.
        await page.fill("#reply-text", PERSON_REPLY)
        await page.press("#reply-text", "Control+Enter")
        await page.wait_for_function(
            "() => (document.querySelector('#conv-result').textContent || '')"
            ".startsWith('Sent to the lead')"
        )
        await stack.wait_for(
            lambda: PERSON_REPLY in sent_to(console, PHONE), what="the person's text at WAHA"
        )
        await page.wait_for_selector("#transcript li[data-author='person']")
        assert (await authors(page))[-1] == ("person", PERSON_REPLY)
        assert await page.input_value("#reply-text") == ""
        # In the other tab the conversation moved to the top, marked as needing a human.
        await watcher.wait_for_function(
            """id => {
                const first = document.querySelector('#inbox-list li[data-id]');
                return first && first.dataset.id === id && first.querySelector('.needs-human');
            }""",
            arg=conv_id,
        )
        assert await watcher.evaluate("window.__sameDocument === true"), "the inbox was reloaded"
        await watcher.screenshot(path=str(screenshots / "session-inbox-live.png"))
        await watcher.close()

        # Release: the AI answers the lead's next message (live on the page, and at WAHA).
        await page.click("#act-release")
        await page.wait_for_function(
            "() => (document.querySelector('#conv-result').textContent || '')"
            ".startsWith('Released')"
        )
        await page.wait_for_selector("#act-takeover")
        await page.evaluate("window.__sameDocument = true")
        await deliver(console, PHONE, NEXT)
        await stack.wait_for(
            lambda: len(sent_to(console, PHONE)) >= 3, timeout=60, what="the AI's next answer"
        )
        ai_next = sent_to(console, PHONE)[-1]
        assert ai_next != PERSON_REPLY
        await page.wait_for_function(
            """([next, answer]) => {
                const items = [...document.querySelectorAll('#transcript li[data-author]')];
                const text = (li) => li.querySelector('.msg-text').textContent;
                const at = items.findIndex(
                    (li) => li.dataset.author === 'lead' && text(li) === next);
                return at >= 0 && items.slice(at + 1).some(
                    (li) => li.dataset.author === 'ai' && text(li) === answer);
            }""",
            arg=[NEXT, ai_next],
            timeout=30_000,
        )
        assert await page.evaluate("window.__sameDocument === true"), "the page was reloaded"
        assert await authors(page) == [
            ("lead", FIRST),
            ("ai", ai_first),
            ("person", PERSON_REPLY),
            ("lead", NEXT),
            ("ai", ai_next),
        ]
        await page.wait_for_selector("#conv-lead a[href^='#/leads/']")
        await page.screenshot(path=str(screenshots / "session-conversation.png"), full_page=True)

        # The lead's page: its conversation, and back to the list of leads.
        searches: list[str] = []

        def searched(request: Any) -> None:
            if "/api/v1/conversations?" in request.url:
                searches.append(request.url)

        page.on("request", searched)
        await page.click("#conv-lead a[href^='#/leads/']")
        await page.wait_for_selector("#lead-title")
        await page.wait_for_selector(f'#lead-conversations li[data-id="{conv_id}"]')
        # Only this lead's conversation (not the other lead's), as the lead's API lists it,
        # with its stage and turns; it came with the lead, not from a search of the inbox.
        shown = await page.eval_on_selector_all(
            "#lead-conversations li[data-id]",
            "rows => rows.map(r => [r.dataset.id, r.querySelector('[data-stage]').dataset.stage,"
            " r.querySelector('.muted').textContent])",
        )
        listed = await stack.http.get(
            f"/api/v1/leads/{unquote(page.url.split('#/leads/')[1])}", headers=stack.auth
        )
        assert listed.status_code == 200, listed.text
        (conversation,) = listed.json()["conversations"]
        assert listed.json()["conversations_total"] == 1
        assert [row[0] for row in shown] == [conv_id] == [conversation["id"]]
        assert shown[0][1] == conversation["stage"]
        assert shown[0][2].startswith(f"{conversation['turns']} turns · last message")
        page.remove_listener("request", searched)
        assert searches == []
        await page.wait_for_selector("#lead-dnc-set")  # an operator may set do-not-contact
        await page.wait_for_selector("#lead-history li[data-kind]")  # what changed, and when
        # ... and who: the operator's takeover, reply and release, under their name.
        assert console.operator.name in await page.inner_text("#lead-history")
        assert await unlabelled(page) == []
        await page.screenshot(path=str(screenshots / "session-lead.png"), full_page=True)
        lead_id = unquote(page.url.split("#/leads/")[1])

        await page.click("nav a[data-route='leads']")
        await page.wait_for_selector("#leads-rows tr[data-id]")
        listed = await page.eval_on_selector_all(
            "#leads-rows tr[data-id]", "rows => rows.map(r => r.dataset.id)"
        )
        assert lead_id in listed
        assert await unlabelled(page) == []
        # The export link carries the list's filters.
        await page.select_option("#l-quality", "WARM")
        await page.wait_for_function(
            "() => document.querySelector('#leads-export').href.endsWith('?quality=WARM')"
        )
        await page.screenshot(path=str(screenshots / "session-leads.png"), full_page=True)

        await page.click("nav a[data-route='inbox']")
        await page.wait_for_selector(conversation_row(conv_id))
        assert await unlabelled(page) == []
        # Filters: nobody needs a human now (the conversation was released), and the address
        # keeps the filter; unchecked, both conversations are back.
        await page.check("#f-needs-human")
        await page.wait_for_function("() => location.hash === '#/inbox?needs_human=true'")
        await page.wait_for_selector("#inbox-list li.empty")
        await page.uncheck("#f-needs-human")
        await page.wait_for_selector(conversation_row(conv_id))
        await page.wait_for_selector(conversation_row(other_id))
        await page.screenshot(path=str(screenshots / "session-inbox.png"), full_page=True)
        await page.set_viewport_size({"width": 390, "height": 844})
        await page.screenshot(path=str(screenshots / "session-inbox-phone.png"), full_page=True)
        await page.set_viewport_size({"width": 1280, "height": 800})

        # The numbers count it: three messages in (two from the first lead, one from the
        # other), four out (AI, person, AI to the first; AI to the other).
        total_in, total_out = await messages_counted(console)
        assert (total_in - before[0], total_out - before[1]) == (3, 4)
        await page.click("nav a[data-route='dashboard']")
        await page.wait_for_selector("#dashboard-period")
        await page.select_option("#dashboard-period", "7")
        await page.wait_for_selector("#fig-messages .lf-figure-value")
        await page.wait_for_function(
            "expected => document.querySelector('#fig-messages .lf-figure-value')"
            ".textContent === expected",
            arg=f"{total_in} / {total_out}",
            timeout=15_000,
        )
        await page.screenshot(path=str(screenshots / "session-dashboard.png"), full_page=True)
        assert page.problems == []
    except BaseException:
        await page.screenshot(path=str(screenshots / "session-failure.png"), full_page=True)
        raise
    finally:
        await context.close()


async def test_a_viewer_sees_no_write_controls_and_cannot_write(
    browser: Any, console: Console, screenshots: Path
) -> None:
    stack = console.stack
    conv_id = conversation_workflow_id(console.tenant_id, "waha", VIEWER_PHONE)
    await deliver(console, VIEWER_PHONE, "Do you have an electric SUV?")
    await stack.wait_for(lambda: sent_to(console, VIEWER_PHONE), timeout=60, what="the AI's answer")
    context, page = await open_console(browser, console, phone=True)
    try:
        # A wrong password is refused on the form, and nothing else happens.
        await page.wait_for_selector("#signin-form")
        await page.fill("#signin-tenant", console.tenant_id)
        await page.fill("#signin-email", console.viewer.email)
        await page.fill("#signin-password", "not the password at all")
        await page.click("#signin-submit")
        await page.wait_for_selector("#signin-error:not([hidden])")
        assert "#/signin" in page.url
        assert await page.evaluate("document.activeElement.id") == "signin-password"
        await sign_in(page, console, console.viewer)
        # Keyboard: on a fresh load the skip link comes first, and takes focus to the page.
        await page.reload()
        await page.wait_for_selector("#inbox-list li[data-id]")
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.id") == "skip-link"
        await page.keyboard.press("Enter")
        assert await page.evaluate("document.activeElement.closest('main') !== null")
        assert await page.evaluate("document.activeElement.textContent") == "Inbox"
        await page.wait_for_selector(conversation_row(conv_id))
        await page.click(f"{conversation_row(conv_id)} a")
        await page.wait_for_selector("#transcript li[data-author='ai']")
        # Nothing to press: no actions, no reply box.
        for control in ("#conv-actions", "#reply-form", "#act-takeover", "#act-close", "#act-dnc"):
            assert await page.query_selector(control) is None, control
        await page.screenshot(
            path=str(screenshots / "session-conversation-viewer-phone.png"), full_page=True
        )

        await page.click("#nav-toggle")
        await page.click("nav a[data-route='leads']")
        await page.wait_for_selector("#leads-rows tr[data-id] a")
        await page.click("#leads-rows tr[data-id] a")
        await page.wait_for_selector("#lead-title")
        assert await page.query_selector("#lead-dnc-set") is None
        assert await page.query_selector("#lead-actions") is None

        # A write forced past the page (with the right CSRF token) is refused by the server.
        answer = await page.evaluate(
            """async (path) => {
                const csrf = document.cookie.split('; ')
                    .find((c) => c.startsWith('leadflow_csrf='));
                const response = await fetch(path, {
                    method: 'POST', credentials: 'same-origin',
                    headers: {'Content-Type': 'application/json',
                              'X-CSRF-Token': decodeURIComponent(csrf.split('=')[1])},
                    body: '{}'});
                return [response.status, await response.json()];
            }""",
            f"/api/v1/conversations/{quote(conv_id, safe='')}/handoff",
        )
        assert answer[0] == 403, answer
        assert "viewer" in answer[1]["detail"]
        view = await stack.http.get(f"/api/v1/conversations/{conv_id}", headers=stack.auth)
        assert view.json()["stage"] != "human_handoff"

        # Addresses that lead nowhere say so.
        other_tenant = conversation_workflow_id("someone-else", "waha", PHONE)
        await page.goto(f"{console.url}/#/conversations/{quote(other_tenant, safe='')}")
        await page.wait_for_selector("h1:text('Conversation not found')")
        await page.goto(f"{console.url}/#/nowhere")
        await page.wait_for_selector("h1:text('Not found')")

        # Signing out ends the session: the console asks to sign in again.
        await page.click("#signout")
        await page.wait_for_selector("#signin-form")
        await page.goto(f"{console.url}/#/inbox")
        await page.wait_for_selector("#signin-form")
        assert "#/signin" in page.url
        assert page.problems == []
    except BaseException:
        await page.screenshot(path=str(screenshots / "session-failure.png"), full_page=True)
        raise
    finally:
        await context.close()
