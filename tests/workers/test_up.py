"""`leadflow up`, the one-command start, run exactly as a user runs it: the installed console
script in a subprocess, on free ports and a fresh data dir. It must become ready with the
worker processes asked for, answer a WhatsApp message through the whole stack, restart a worker
process that is killed (and still answer), leave no process behind when it is killed with
SIGKILL (its dev server with the UI, its workers: by pid, and no process at all whose command
line or environment names the data dir), start again on the same data dir and ports and find
everything there (the conversation goes on), and stop cleanly on Ctrl-C (taking the Temporal
dev server and the workers with it). On the way, the same two starts check that `up` encrypts
Temporal payloads with keys it generates into the data dir and starts the Temporal UI wired to
the API's codec endpoint: the history holds ciphertext, and the endpoint the UI is given (token
in the path, the UI's origin allowed) decodes it, also after the restart. A second `up` on one
data dir, a dev server left running and a data dir an older version filled under the published
secret key are tests/workers/test_up_supervised.py.

Each start of a whole stack costs tens of seconds of CPU on two cores: a check that needs one
goes into one of these starts rather than a start of its own."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import re
import signal
import socket
import stat
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
from temporalio.api.common.v1 import Payload
from temporalio.client import Client

from models.payload_codec import ENCODING, parse_payload_keys
from tests.live_stack import free_port
from workers.devserver import PID_FILE, port_open

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
LEADFLOW = Path(sys.executable).parent / "leadflow"
WAHA_MESSAGE = ROOT / "docs" / "examples" / "waha-message.json"
AUTOMAAT = "Heeft u ook een automaat?"  # the second message of the conversation


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
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat_file.parent.name))
    return found


def _workers(up: Up) -> set[int]:
    """The worker processes of `up`: children running `python -m workers.cli worker`."""
    found = set()
    for pid in _children(up.proc.pid):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"workers.cli" in args and b"worker" in args and _alive(pid):
            found.add(pid)
    return found


def _niceness(pid: int) -> int:
    """Field 19 of /proc/<pid>/stat: the process's nice value."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def _assert_background_niceness(up: Up, expected: int) -> None:
    """The dev server and the workers run `expected` steps below `up` (the API's process)."""
    api = _niceness(up.proc.pid)
    assert api == os.getpriority(os.PRIO_PROCESS, 0), "`up` itself keeps its priority"
    children = {pid for pid in _children(up.proc.pid) if _alive(pid)}
    workers = _workers(up)
    (devserver,) = children - workers
    assert b"start-dev" in Path(f"/proc/{devserver}/cmdline").read_bytes()
    for pid in (devserver, *workers):
        assert _niceness(pid) == min(19, api + expected), (pid, _niceness(pid), api)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _naming(data_dir: Path) -> set[int]:
    """Running processes whose command line or environment names the data dir (zombies and
    this test process aside)."""
    needle = str(data_dir).encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            named = needle in (entry / "cmdline").read_bytes()
            named = named or needle in (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile
            continue
        if named and _alive(int(entry.name)):
            found.add(int(entry.name))
    return found


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


def up_env(**extra_env: str) -> dict[str, str]:
    """This environment without LEADFLOW_* (the test's own settings), plus `extra_env`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    env.update({"COLUMNS": "200", "PYTHONUNBUFFERED": "1", **extra_env})
    return env


def up_argv(data_dir: Path | None, ports: tuple[int, int, int], args: list[str]) -> list[str]:
    """`leadflow up` on `ports` (API, Temporal, UI); without a data dir: the default one."""
    api_port, temporal_port, ui_port = ports
    return [
        str(LEADFLOW), "up",
        *(["--data-dir", str(data_dir)] if data_dir is not None else []),
        "--api-port", str(api_port),
        "--temporal-port", str(temporal_port),
        "--ui-port", str(ui_port),
        *args,
    ]  # fmt: skip


@contextmanager
def leadflow_up(
    data_dir: Path | None,
    log: Path,
    *,
    args: list[str],
    ports: tuple[int, int, int] | None = None,
    cwd: Path | None = None,
    **extra_env: str,
) -> Iterator[Up]:
    """`leadflow up` running (banner printed, /ready ready) while the block runs; run from
    `cwd` (default: the data dir's parent) on `ports` (default: free ones)."""
    api_port, temporal_port, ui_port = ports or (free_port(), free_port(), free_port())
    argv = up_argv(data_dir, (api_port, temporal_port, ui_port), args)
    where = cwd or (data_dir.parent if data_dir is not None else None)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=up_env(**extra_env), cwd=where
        )
    up = Up(proc, f"http://127.0.0.1:{api_port}", temporal_port, ui_port, log)
    try:
        # The banner comes once every worker process polls Temporal.
        _wait(
            lambda: "Press Ctrl-C to stop." in up.output(),
            timeout=360,  # `up` itself gives its workers 300 s (WORKERS_READY_TIMEOUT)
            what="the banner",
            up=up,
        )
        _wait(
            lambda: httpx.get(f"{up.api}/ready", timeout=5).json().get("status") == "ready",
            timeout=30,
            what="GET /ready to say ready",
            up=up,
        )
        yield up
    finally:
        if proc.poll() is None:  # a failed test: leave nothing running on a shared machine
            children = _children(proc.pid)
            proc.kill()
            proc.wait()
            for pid in children:
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)


def _stop(up: Up) -> None:
    """Ctrl-C: the process exits 0 and its Temporal dev server is gone with it."""
    children = _children(up.proc.pid)
    workers = _workers(up)
    assert workers and children > workers, "the dev server and workers are children of `up`"
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
    survivors = [pid for pid in children if _alive(pid)]
    assert not survivors, f"{survivors} outlived `leadflow up` (workers: {workers})"
    assert not port_open("127.0.0.1", up.temporal_port)
    assert not port_open("127.0.0.1", up.ui_port)
    assert not port_open("127.0.0.1", int(up.api.rsplit(":", 1)[1]))


def _printed_key(up: Up) -> str:
    match = re.search(r"Demo API key\s+(lf_\S+)", up.output())
    assert match, up.output()
    return match.group(1)


def _send(up: Up, message_id: str, text: str) -> None:
    message = json.loads(WAHA_MESSAGE.read_bytes())
    message["payload"].update(id=message_id, body=text)
    accepted = httpx.post(f"{up.api}/webhooks/waha/demo", json=message)
    assert accepted.status_code in (200, 202), accepted.text


def spare_ports(count: int) -> int:
    """The first of `count` consecutive ports, free now, below the kernel's ephemeral range:
    `up` binds them a minute or more later (and again after a restart), and on a busy machine
    a port picked inside that range is by then often the local end of some other connection
    (seen: a worker's metrics port "already in use")."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for first in random.sample(range(10_000, low - count), 200):
        with contextlib.ExitStack() as bound:
            try:
                for port in range(first, first + count):
                    bound.enter_context(socket.socket()).bind(("127.0.0.1", port))
            except OSError:
                continue
        return first
    raise AssertionError(f"no {count} free ports in a row below the ephemeral range")


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


def _payload_json(payload: Payload) -> dict[str, Any]:
    """A payload as the Temporal UI sends it to a remote codec."""
    return {
        "metadata": {k: base64.b64encode(v).decode() for k, v in payload.metadata.items()},
        "data": base64.b64encode(payload.data).decode(),
    }


def _decoded_texts(decoded: httpx.Response) -> list[str]:
    """The message texts in a codec endpoint's answer to a decode of `inbound` signals."""
    assert decoded.status_code == 200, decoded.text
    return [json.loads(base64.b64decode(p["data"]))["text"] for p in decoded.json()["payloads"]]


def _assert_payload_secrets(data_dir: Path, up: Up) -> str:
    """`up` generated the payload key and the codec token into the data dir (owner only, never
    printed) and gave its UI the API's codec endpoint; returns the token."""
    keys_file, token_file = data_dir / "payload.keys", data_dir / "codec.token"
    assert _mode(keys_file) == 0o600 and _mode(token_file) == 0o600
    assert len(parse_payload_keys(keys_file.read_text())) == 1
    token = token_file.read_text().strip()
    output = " ".join(up.output().split())
    assert token not in output and keys_file.read_text().strip() not in output
    assert "the UI decodes them through the API" in output
    # The UI was started with the codec endpoint (its settings API says so to the browser).
    ui_settings = httpx.get(f"http://127.0.0.1:{up.ui_port}/api/v1/settings", timeout=10)
    assert ui_settings.json()["Codec"]["Endpoint"] == f"{up.api}/codec/{token}", ui_settings.text
    return token


def test_up_answers_restarts_workers_leaves_nothing_when_killed_and_keeps_state(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "state"
    metrics_port = spare_ports(2)  # worker i serves /metrics on this port + i - 1
    first = spare_ports(3)
    ports = (first, first + 1, first + 2)  # the API's, Temporal's and the UI's, twice
    with leadflow_up(
        data_dir,
        tmp_path / "up-1.log",
        args=["--workers", "2"],
        ports=ports,
        LEADFLOW_WORKER_METRICS_PORT=str(metrics_port),
    ) as up:
        key = (data_dir / "demo-api-key").read_text().strip()
        assert _printed_key(up) == key
        assert (data_dir / "demo-api-key").stat().st_mode & 0o077 == 0
        auth = {"Authorization": f"Bearer {key}"}
        assert re.search(r"Workers\s+2 worker processes", up.output()), up.output()
        workers = _workers(up)
        assert len(workers) == 2, up.output()
        _assert_background_niceness(up, 10)  # the default: the API wins the CPU
        assert (data_dir / "logs" / "worker-1.log").exists()
        assert (data_dir / "logs" / "worker-2.log").exists()
        token = _assert_payload_secrets(data_dir, up)
        secret_key = (data_dir / "secret.key").read_text().strip()

        assert httpx.get(f"{up.api}/api/v1/conversations", headers=auth).status_code == 200
        anonymous = httpx.get(f"{up.api}/api/v1/conversations")
        assert anonymous.status_code == 401
        assert anonymous.json()["error"] == "missing API key"
        # The console's demo admin: printed once up is ready, signs in over HTTP.
        printed = re.search(
            r"Console: (\S+) — sign in as (\S+) / (\S+) \(tenant demo\)", up.output()
        )
        assert printed, up.output()
        console_url, email, password = printed.groups()
        assert console_url == up.api + "/"
        assert (data_dir / "demo-admin-password").read_text().strip() == password
        assert (data_dir / "demo-admin-password").stat().st_mode & 0o077 == 0
        signed = httpx.post(
            f"{up.api}/api/v1/auth/login",
            json={"tenant": "demo", "email": email, "password": password},
        )
        assert signed.status_code == 200 and signed.json()["user"]["role"] == "admin", signed.text
        assert signed.cookies.get("leadflow_session")

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
        # Its workflow id holds a keyed hash of the lead, not the phone (models/workflow_ids.py).
        assert reply["conversation_id"].startswith("conv:demo:waha:")
        assert not any(char.isdigit() for char in reply["conversation_id"])
        # The demo dealership's stock (docs/examples/demo-inventory.csv) answers the example's
        # Golf around €25,000: a Golf of it, with its price and link.
        assert "autohuis-vandijk.example/occasions/vd-" in reply["text"], reply["text"]
        assert "€ 18.950" in reply["text"], reply["text"]

        # Every process serves its metrics where the banner says: the API and each worker
        # (one of them counted the turn; both carry the Temporal SDK's series).
        workers_metrics = f"http://127.0.0.1:{metrics_port}…{metrics_port + 1}/metrics"
        assert f"{up.api}/metrics; workers {workers_metrics}" in up.output(), up.output()
        assert "leadflow_webhook_acks_total" in httpx.get(f"{up.api}/metrics").text
        scraped = [
            httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            for port in (metrics_port, metrics_port + 1)
        ]
        assert all("temporal_num_pollers" in text for text in scraped)
        assert any(
            'leadflow_turns_total{channel="waha",outcome="replied"} 1.0' in text for text in scraped
        )

        # A worker process dies: `up` says so in one line and starts another one.
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        line = _wait(
            lambda: re.search(
                rf"worker \d \(pid {victim}\) exited with code -9 \(SIGKILL\).*", up.output()
            ),
            timeout=15,
            what="the worker's exit reported",
            up=up,
        ).group(0)
        assert "restarting in 1 s" in line and str(data_dir / "logs" / "worker-") in line
        replaced = _wait(
            lambda: len(now := _workers(up)) == 2 and victim not in now and now,
            timeout=15,
            what="the worker process restarted",
            up=up,
        )
        assert replaced - {victim} >= workers - {victim}
        _assert_background_niceness(up, 10)  # the restarted one too
        # ...and the conversation still answers.
        _send(up, "false_31612345678@c.us_DEMO0002", AUTOMAAT)
        outbox = _wait(
            lambda: (
                len(box := httpx.get(f"{up.api}/api/v1/outbox", headers=auth).json()) == 2
                # The row is written pending, then marked stored once delivered: compare the
                # settled state with what the next `up` shows.
                and all(entry["status"] != "pending" for entry in box)
                and box
            ),
            timeout=60,
            what="the second reply in the outbox, delivered",
            up=up,
        )

        # The reply reaches the outbox before the same activity records the turn: wait for the
        # record (two turns) before taking the state the next `up` must show.
        conversations = _wait(
            lambda: (
                (listed := httpx.get(f"{up.api}/api/v1/conversations", headers=auth).json())[
                    "conversations"
                ][0]["turns"]
                == 2
                and listed
            ),
            timeout=30,
            what="the second turn recorded",
            up=up,
        )
        assert conversations["total"] == 1
        conversation = conversations["conversations"][0]

        ui = f"http://127.0.0.1:{up.ui_port}"
        assert httpx.get(f"{ui}/", timeout=10).status_code == 200

        # The history holds the messages encrypted: the API encrypted them, the workers (the
        # restarted one too) decrypted them to answer.
        texts = [json.loads(WAHA_MESSAGE.read_bytes())["payload"]["body"], AUTOMAAT]
        payloads = asyncio.run(_signal_payloads(f"127.0.0.1:{up.temporal_port}"))
        assert payloads and all(p.metadata["encoding"] == ENCODING for p in payloads)
        assert all(b"Volkswagen" not in p.SerializeToString() for p in payloads)
        assert all(b"automaat" not in p.SerializeToString() for p in payloads)
        # What the UI does: a preflight from its origin, then a decode at <endpoint>/decode.
        endpoint = f"{up.api}/codec/{token}"
        preflight = httpx.options(
            f"{endpoint}/decode",
            headers={
                "Origin": ui,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-namespace",
            },
        )
        assert preflight.status_code == 204, preflight.text
        assert preflight.headers["access-control-allow-origin"] == ui
        decoded = httpx.post(
            f"{endpoint}/decode",
            json={"payloads": [_payload_json(p) for p in payloads]},
            headers={"Origin": ui, "X-Namespace": "default"},
        )
        assert decoded.headers["access-control-allow-origin"] == ui
        assert set(texts) <= set(_decoded_texts(decoded))
        # The tenant's API key opens nothing there.
        refused = httpx.post(
            f"{up.api}/codec/decode", json={"payloads": [_payload_json(payloads[0])]}, headers=auth
        )
        assert refused.status_code == 403

        # `kill -9`: the kernel sends the dev server (and its UI, the same process) and the
        # workers SIGTERM; nothing that names the data dir survives.
        children = {pid for pid in _children(up.proc.pid) if _alive(pid)}
        workers = _workers(up)
        (devserver,) = children - workers
        assert (data_dir / PID_FILE).read_text().strip() == str(devserver)
        everything = children | _naming(data_dir)
        assert len(workers) == 2 and workers <= everything
        up.proc.kill()
        up.proc.wait()
        deadline = time.monotonic() + 45
        while (_naming(data_dir) or any(map(_alive, everything))) and (time.monotonic() < deadline):
            time.sleep(0.2)
        assert not any(map(_alive, everything)), [p for p in everything if _alive(p)]
        assert not _naming(data_dir)
        assert not port_open("127.0.0.1", up.temporal_port)
        assert not port_open("127.0.0.1", up.ui_port)

    # The next `up` on the same data dir and ports starts cleanly (nothing to stop, no port
    # taken). The number of workers also comes from the environment; niceness 0 leaves them
    # alone.
    with leadflow_up(
        data_dir,
        tmp_path / "up-2.log",
        args=[],
        ports=ports,
        LEADFLOW_UP_WORKERS="1",
        LEADFLOW_BACKGROUND_NICENESS="0",
    ) as again:
        assert "left running" not in again.output()
        assert _printed_key(again) == key
        assert (data_dir / "secret.key").read_text().strip() == secret_key  # reused
        _assert_background_niceness(again, 0)
        assert re.search(r"Workers\s+1 worker process\b", again.output()), again.output()
        auth = {"Authorization": f"Bearer {key}"}
        listed = httpx.get(f"{again.api}/api/v1/conversations", headers=auth).json()
        assert [c["id"] for c in listed["conversations"]] == [conversation["id"]]
        assert listed["conversations"][0]["turns"] == conversation["turns"]
        detail = httpx.get(
            f"{again.api}/api/v1/conversations/{conversation['id']}", headers=auth
        ).json()
        assert detail["transcript"][0]["text"].startswith("Hoi! Ik zoek een Volkswagen Golf")
        assert httpx.get(f"{again.api}/api/v1/outbox", headers=auth).json() == outbox
        # The keys are kept: the history written before still decodes.
        assert (data_dir / "codec.token").read_text().strip() == token
        decoded = httpx.post(
            f"{again.api}/codec/{token}/decode",
            json={"payloads": [_payload_json(p) for p in payloads]},
        )
        assert set(texts) <= set(_decoded_texts(decoded))
        # ...and the conversation goes on: the worker reads the tenant's settings and the
        # payloads with the keys it found.
        _send(again, "false_31612345678@c.us_DEMO0003", "Wat kost hij?")
        _wait(
            lambda: len(httpx.get(f"{again.api}/api/v1/outbox", headers=auth).json()) == 3,
            timeout=60,
            what="the third reply",
            up=again,
        )
        _stop(again)
    assert not (data_dir / PID_FILE).exists()  # a clean stop takes its pid file along
    assert not _naming(data_dir)
