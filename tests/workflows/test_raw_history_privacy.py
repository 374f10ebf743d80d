"""The proof of issue 10's first point: a real conversation (real API, worker and dev server,
the fake WAHA on the wire) leaves no message text, lead name, phone number or e-mail address in
the raw history as the Temporal server holds it, read with the temporal CLI; search attributes
included. An operator still reads it: through the codec endpoint, and the CLI pointed at it."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Iterator
from typing import Any

from temporalio.client import Client

from models.conversation import conversation_workflow_id
from models.payload_codec import ENCODING
from models.settings import Settings
from models.tenant import TenantSettings
from tests.conftest import temporal_cli_path
from tests.fakes.waha import FakeWaha
from tests.stack import live_stack

PHONE = "31687654329"
LEAD = f"{PHONE}@c.us"
NAME = "Annemarie Veldhuizen"
EMAIL = "annemarie.veldhuizen@example.nl"
MESSAGES = [
    f"Hoi, ik ben {NAME}. Ik zoek een Volkswagen Golf hybride, budget rond de 25.000 euro",
    f"Mail de brochure naar {EMAIL} of bel me op 06-87654329, zaterdag om 11 uur past",
]
CODEC_TOKEN = "codec-token-of-the-privacy-test-0123456789"
ENCRYPTED = base64.b64encode(ENCODING).decode()


def _strings(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string in a JSON document with its path (`events.3.workflowId`)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, f"{path}.{i}")
    elif isinstance(node, str):
        yield path, node


def _readable(text: str) -> list[str]:
    """The string as it is and, when it is base64 (payload data and metadata in the JSON
    history), what it decodes to: plaintext must not hide behind an encoding."""
    out = [text]
    try:
        out.append(base64.b64decode(text, validate=True).decode("utf-8", "replace"))
    except (binascii.Error, ValueError):
        pass
    return out


def _needles(replies: list[str]) -> list[str]:
    national = PHONE[2:]  # 687654329: the number without its country code
    return [
        *MESSAGES,
        *(m[10:50] for m in MESSAGES),  # fragments, in case a message is re-worded or split
        NAME,
        "Veldhuizen",
        EMAIL,
        "annemarie.veldhuizen",
        PHONE,
        national,
        "87654329",
        *(r for r in replies if len(r) > 20),  # what the AI wrote to the lead
    ]


def _leaks(document: Any, needles: list[str]) -> list[tuple[str, str]]:
    """(path, needle) for every needle found in a string of `document` or its base64 reading."""
    found = []
    for path, text in _strings(document):
        for readable in _readable(text):
            lowered = readable.lower()
            found += [(path, n) for n in needles if n.lower() in lowered]
    return found


async def _cli(*args: str) -> Any:
    """The temporal CLI's JSON answer; run without blocking the loop, where the API it may call
    (the codec endpoint) is served."""
    proc = await asyncio.create_subprocess_exec(
        temporal_cli_path(), *args, "--output", "json", "--color", "never",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, stderr.decode()
    return json.loads(stdout)


async def test_raw_history_holds_no_message_name_phone_or_email(
    temporal_client: Client,
    temporal_address: str,
    settings_factory: Any,
    sqlite_url: str,
    fake_waha: FakeWaha,
) -> None:
    settings: Settings = settings_factory(sqlite_url, debounce_seconds=0.3, codec_token=CODEC_TOKEN)
    async with live_stack(
        temporal_client,
        settings,
        tenant_settings=TenantSettings(playbook="car_dealership", waha=fake_waha.settings()),
    ) as stack:
        workflow_id = conversation_workflow_id(stack.tenant_id, "waha", LEAD)
        handle = temporal_client.get_workflow_handle(workflow_id)
        for n, text in enumerate(MESSAGES, start=1):
            raw, headers = fake_waha.message_webhook(
                from_=LEAD, body=text, data={"notifyName": NAME}
            )
            response = await stack.http.post(
                f"/webhooks/waha/{stack.tenant_id}",
                content=raw,
                headers={**headers, "content-type": "application/json"},
            )
            assert response.status_code in (200, 202), response.text

            async def replied(n: int = n) -> bool:
                state = await handle.query("state")
                replies = [e for e in state["transcript"] if e["role"] == "ai"]
                return bool(len(replies) >= n and state["pending_messages"] == 0)

            await stack.wait_for(replied, what=f"reply {n} recorded")
        replies = [b["text"] for b in fake_waha.sent if b.get("chatId") == LEAD]
        assert len(replies) == len(MESSAGES)
        state = await handle.query("state")  # the workflow knows the lead (decrypted)
        assert NAME in json.dumps(state, ensure_ascii=False)

        # What the server holds, as an operator without the codec reads it: raw payloads.
        history = await _cli(
            "workflow", "show", "--workflow-id", workflow_id, "--address", temporal_address,
            "--namespace", settings.temporal_namespace, "--no-json-shorthand-payloads",
        )  # fmt: skip
        described = await _cli(
            "workflow", "describe", "--workflow-id", workflow_id, "--address", temporal_address,
            "--namespace", settings.temporal_namespace, "--raw",
        )  # fmt: skip
        events = history["events"]
        needles = _needles(replies)
        # Nothing skipped: the workflow id is a keyed hash of the contact, not the contact
        # (models/conversation.py); every field of every event is searched, ids included.
        assert PHONE not in workflow_id and "@c.us" not in workflow_id, workflow_id
        assert _leaks(history, needles) == [], "plaintext in the raw history"
        assert _leaks(described, needles) == [], "plaintext in the description"
        # The search is not blind: the history decoded through the codec (below) holds them.

        # Payloads are encrypted (none is plain JSON), search attributes are not and need not
        # be: they hold the tenant, channel, stage and score, nothing about the person.
        payload_encodings = [
            text for path, text in _strings(history) if path.endswith("metadata.encoding")
        ]
        attribute_paths = ("searchAttributes.", "indexedFields.")
        encrypted = [
            path
            for path, text in _strings(history)
            if path.endswith("metadata.encoding") and text == ENCRYPTED
        ]
        plain = [
            path
            for path, text in _strings(history)
            if path.endswith("metadata.encoding")
            and text != ENCRYPTED
            and not any(p in path for p in attribute_paths)
        ]
        assert len(encrypted) >= 10 and plain == [], (len(encrypted), plain)
        assert payload_encodings
        attributes: dict[str, Any] = {}
        for path, text in _strings(history):
            if "indexedFields." in path and path.endswith(".data"):
                name = path.split("indexedFields.", 1)[1].split(".", 1)[0]
                attributes[name] = json.loads(base64.b64decode(text))
        assert set(attributes) <= {
            "LeadflowTenant", "LeadflowChannel", "LeadflowStage", "LeadflowLeadScore",
            "LeadflowLeadQuality",
        }, attributes  # fmt: skip
        assert attributes.get("LeadflowTenant") == stack.tenant_id

        # An operator with the codec token reads it: the codec endpoint decodes the payloads...
        signalled = [
            e["workflowExecutionSignaledEventAttributes"]["input"]["payloads"][0]
            for e in events
            if "workflowExecutionSignaledEventAttributes" in e
        ]
        assert len(signalled) == len(MESSAGES)
        decoded = await stack.http.post(
            "/codec/decode",
            json={"payloads": signalled},
            headers={"Authorization": f"Bearer {CODEC_TOKEN}", "X-Namespace": "default"},
        )
        assert decoded.status_code == 200, decoded.text
        texts = [
            json.loads(base64.b64decode(p["data"]))["text"] for p in decoded.json()["payloads"]
        ]
        assert texts == MESSAGES
        # ...and so does the temporal CLI pointed at it (`--codec-endpoint`, `--codec-auth`).
        through_codec = await _cli(
            "workflow", "show", "--workflow-id", workflow_id, "--address", temporal_address,
            "--namespace", settings.temporal_namespace,
            "--codec-endpoint", f"{stack.api_url}/codec",
            "--codec-auth", f"Bearer {CODEC_TOKEN}",
        )  # fmt: skip
        # (it shows the decoded payloads' data in base64: what `_leaks` reads through)
        readable = {needle for _, needle in _leaks(through_codec, [*MESSAGES, EMAIL, NAME, PHONE])}
        assert readable == {*MESSAGES, EMAIL, NAME, PHONE}, readable
        # Without the token the codec refuses, and the CLI shows ciphertext or an error only.
        refused = await stack.http.post("/codec/decode", json={"payloads": signalled})
        assert refused.status_code == 401
        print(
            f"\nraw history: {len(events)} events, {len(encrypted)} encrypted payloads, "
            f"0 plain payloads; search attributes {sorted(attributes)}; "
            f"{len(needles)} needles, 0 found (workflow id {workflow_id})"
        )
