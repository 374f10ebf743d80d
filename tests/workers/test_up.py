"""`leadflow up`, the one-command start, run exactly as a user runs it: the installed console
script in a subprocess, on free ports and a fresh data dir. It must become ready, answer a
WhatsApp message through the whole stack, stop cleanly on Ctrl-C (taking the Temporal dev
server with it) and find everything again on the next start."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live_stack import free_port
from workers.devserver import port_open

pytestmark = [pytest.mark.slow, pytest.mark.timeout(280)]

ROOT = Path(__file__).resolve().parents[2]
LEADFLOW = Path(sys.executable).parent / "leadflow"
WAHA_MESSAGE = ROOT / "docs" / "examples" / "waha-message.json"


@dataclass
class Up:
    proc: subprocess.Popen[bytes]
    api: str
    temporal_port: int
    ui_port: int
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _children(pid: int) -> set[int]:
    """Process ids whose parent is `pid` (the dev server runs in its own session)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait(predicate: Callable[[], Any], *, timeout: float, what: str, up: Up) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if up.proc.poll() is not None:
            raise AssertionError(
                f"leadflow up exited ({up.proc.returncode}) while waiting for {what}:\n"
                + up.output()
            )
        try:
            value = predicate()
        except httpx.TransportError:
            value = None
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}:\n{up.output()}")


@contextmanager
def leadflow_up(data_dir: Path, log: Path) -> Iterator[Up]:
    api_port, temporal_port, ui_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    env.update(COLUMNS="200", PYTHONUNBUFFERED="1")
    args = [
        str(LEADFLOW), "up",
        "--data-dir", str(data_dir),
        "--api-port", str(api_port),
        "--temporal-port", str(temporal_port),
        "--ui-port", str(ui_port),
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=data_dir.parent
        )
    up = Up(proc, f"http://127.0.0.1:{api_port}", temporal_port, ui_port, log)
    try:
        _wait(
            lambda: httpx.get(f"{up.api}/ready", timeout=5).json().get("status") == "ready",
            timeout=60,
            what="GET /ready to say ready",
            up=up,
        )
        yield up
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _stop(up: Up) -> None:
    """Ctrl-C: the process exits 0 and its Temporal dev server is gone with it."""
    children = _children(up.proc.pid)
    assert children, "the Temporal dev server should be a child of `leadflow up`"
    up.proc.send_signal(signal.SIGINT)
    try:
        code = up.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"leadflow up did not stop within 30 s:\n{up.output()}") from None
    assert code == 0, up.output()
    assert "stopped; state kept in" in up.output()
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in children), "the dev server outlived `leadflow up`"
    assert not port_open("127.0.0.1", up.temporal_port)
    assert not port_open("127.0.0.1", up.ui_port)
    assert not port_open("127.0.0.1", int(up.api.rsplit(":", 1)[1]))


def _printed_key(up: Up) -> str:
    match = re.search(r"Demo API key\s+(lf_\S+)", up.output())
    assert match, up.output()
    return match.group(1)


def test_up_answers_a_message_stops_cleanly_and_keeps_state(tmp_path: Path) -> None:
    data_dir = tmp_path / "state"
    with leadflow_up(data_dir, tmp_path / "up-1.log") as up:
        key = (data_dir / "demo-api-key").read_text().strip()
        assert _printed_key(up) == key
        assert (data_dir / "demo-api-key").stat().st_mode & 0o077 == 0
        auth = {"Authorization": f"Bearer {key}"}

        assert httpx.get(f"{up.api}/api/v1/conversations", headers=auth).status_code == 200
        anonymous = httpx.get(f"{up.api}/api/v1/conversations")
        assert anonymous.status_code == 401
        assert anonymous.json()["error"] == "missing API key"

        accepted = httpx.post(
            f"{up.api}/webhooks/waha/demo",
            content=WAHA_MESSAGE.read_bytes(),
            headers={"content-type": "application/json"},
        )
        assert accepted.status_code in (200, 202), accepted.text
        outbox = _wait(
            lambda: httpx.get(f"{up.api}/api/v1/outbox", headers=auth).json(),
            timeout=45,
            what="the reply in the outbox",
            up=up,
        )
        (reply,) = outbox
        assert reply["to"] == "31612345678@c.us"
        assert reply["conversation_id"] == "conv:demo:waha:31612345678@c.us"
        assert reply["text"]

        conversations = httpx.get(f"{up.api}/api/v1/conversations", headers=auth).json()
        assert conversations["total"] == 1
        conversation = conversations["conversations"][0]

        ui = httpx.get(f"http://127.0.0.1:{up.ui_port}/", timeout=10)
        assert ui.status_code == 200

        _stop(up)

    with leadflow_up(data_dir, tmp_path / "up-2.log") as again:
        assert _printed_key(again) == key
        auth = {"Authorization": f"Bearer {key}"}
        listed = httpx.get(f"{again.api}/api/v1/conversations", headers=auth).json()
        assert [c["id"] for c in listed["conversations"]] == [conversation["id"]]
        assert listed["conversations"][0]["turns"] == conversation["turns"]
        detail = httpx.get(
            f"{again.api}/api/v1/conversations/{conversation['id']}", headers=auth
        ).json()
        assert detail["transcript"][0]["text"].startswith("Hoi! Ik zoek een Volkswagen Golf")
        assert httpx.get(f"{again.api}/api/v1/outbox", headers=auth).json() == outbox
        _stop(again)
