"""`leadflow up` encrypts Temporal payloads with keys it generates into the data dir, and starts
the Temporal UI wired to the API's codec endpoint: the history holds ciphertext, and the
endpoint the UI is given (token in the path, the UI's origin allowed) decodes it."""

from __future__ import annotations

import asyncio
import base64
import json
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import Client

from models.payload_codec import ENCODING, parse_payload_keys
from tests.workers.test_up import _send, _stop, _wait, leadflow_up

pytestmark = [pytest.mark.slow, pytest.mark.timeout(280)]

TEXT = "Hallo, ik ben Joris Bakker, mijn nummer is 0611223344"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def _signal_payloads(temporal: str) -> list[Payload]:
    """The `inbound` signal payloads of the demo tenant's conversations, as the server stores
    them: read by a client without the codec."""
    client = await Client.connect(temporal)
    found: list[Payload] = []
    async for wf in client.list_workflows('LeadflowTenant="demo"'):
        history = await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
        for event in history.events:
            if event.HasField("workflow_execution_signaled_event_attributes"):
                found.extend(event.workflow_execution_signaled_event_attributes.input.payloads)
    return found


def _json(payload: Payload) -> dict[str, Any]:
    return {
        "metadata": {k: base64.b64encode(v).decode() for k, v in payload.metadata.items()},
        "data": base64.b64encode(payload.data).decode(),
    }


def test_up_encrypts_payloads_and_its_ui_decodes_them_through_the_api(tmp_path: Path) -> None:
    data_dir = tmp_path / "state"
    with leadflow_up(data_dir, tmp_path / "up.log", args=["--workers", "1"]) as up:
        keys_file, token_file = data_dir / "payload.keys", data_dir / "codec.token"
        assert _mode(keys_file) == 0o600 and _mode(token_file) == 0o600
        assert len(parse_payload_keys(keys_file.read_text())) == 1
        token = token_file.read_text().strip()
        output = " ".join(up.output().split())
        assert token not in output and keys_file.read_text().strip() not in output
        assert "the UI decodes them through the API" in output

        # The UI was started with the codec endpoint (its settings API says so to the browser).
        ui = f"http://127.0.0.1:{up.ui_port}"
        codec = httpx.get(f"{ui}/api/v1/settings", timeout=10).json()["Codec"]
        assert codec["Endpoint"] == f"{up.api}/codec/{token}", codec

        _send(up, "false_31611223344@c.us_CODEC0001", TEXT)
        auth = {"Authorization": f"Bearer {(data_dir / 'demo-api-key').read_text().strip()}"}
        _wait(
            lambda: httpx.get(f"{up.api}/api/v1/outbox", headers=auth).json(),
            timeout=60,
            what="the reply (the worker decrypted what the API encrypted)",
            up=up,
        )
        payloads = asyncio.run(_signal_payloads(f"127.0.0.1:{up.temporal_port}"))
        assert payloads and all(p.metadata["encoding"] == ENCODING for p in payloads)
        assert all(b"Joris" not in p.SerializeToString() for p in payloads)

        # What the UI does: a preflight from its origin, then a decode at <endpoint>/decode.
        preflight = httpx.options(
            f"{codec['Endpoint']}/decode",
            headers={
                "Origin": ui,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-namespace",
            },
        )
        assert preflight.status_code == 204, preflight.text
        assert preflight.headers["access-control-allow-origin"] == ui
        decoded = httpx.post(
            f"{codec['Endpoint']}/decode",
            json={"payloads": [_json(p) for p in payloads]},
            headers={"Origin": ui, "X-Namespace": "default"},
        )
        assert decoded.status_code == 200, decoded.text
        assert decoded.headers["access-control-allow-origin"] == ui
        texts = [
            json.loads(base64.b64decode(p["data"]))["text"] for p in decoded.json()["payloads"]
        ]
        assert TEXT in texts
        # The tenant's API key opens nothing here.
        refused = httpx.post(
            f"{up.api}/codec/decode", json={"payloads": [_json(payloads[0])]}, headers=auth
        )
        assert refused.status_code == 403
        _stop(up)

    # The next start keeps the keys: the history written before still decodes.
    with leadflow_up(data_dir, tmp_path / "up-2.log", args=["--workers", "1"]) as up:
        assert (data_dir / "codec.token").read_text().strip() == token
        again = httpx.post(
            f"{up.api}/codec/{token}/decode",
            json={"payloads": [_json(p) for p in payloads]},
        )
        assert again.status_code == 200
        assert TEXT in [
            json.loads(base64.b64decode(p["data"]))["text"] for p in again.json()["payloads"]
        ]
        _stop(up)
