"""A supervised `leadflow up` (issue 11), run as a user runs it — the installed console script
and the checkout's `./leadflow` in subprocesses — on a data dir an older `up` left behind:

- a Temporal dev server an older `up` left running on the data dir (in its own session, no pid
  file, on the very ports) is found and stopped by the next `up`, which then starts cleanly;
- the data dir is one an older version filled under the published secret key (and left
  readable to others): `up` generates a key into <data dir>/secret.key (0600), re-encrypts the
  stored settings with it, its API, workers and CLI use it (the tenant's playbook answers),
  and the files of the data dir become its owner's only;
- a second `up` on the same data dir is refused, naming the first (pid, start, command), and
  the first keeps answering;
- paths on the command line are the user's: `./leadflow tenant configure demo --file acme.yaml`
  run from another directory reads the acme.yaml there;
- Ctrl-C stops it all and takes the pid file along; the database no longer opens with the
  published key.

A worker process killed under `up` and restarted, `up` killed with SIGKILL leaving nothing
behind, the next start on the same data dir and ports reusing the keys it generated, and the
conversation going on are tests/workers/test_up.py (each `up` start costs tens of seconds of
CPU: its checks share the starts of these two tests)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from models.crypto import CredentialsError
from models.db import Database, migrate
from models.repo import tenants as tenant_repo
from models.settings import PUBLISHED_SECRET_KEY
from models.tenant import TenantSettings
from tests.live_stack import free_port
from tests.workers.test_up import (
    ROOT,
    Up,
    _alive,
    _children,
    _mode,
    _naming,
    _printed_key,
    _send,
    _stop,
    _wait,
    _workers,
    leadflow_up,
    spare_ports,
    up_argv,
    up_env,
)
from workers.devserver import PID_FILE, port_open, temporal_cli

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _outbox(up: Up, key: str) -> list[dict[str, object]]:
    box: list[dict[str, object]] = httpx.get(
        f"{up.api}/api/v1/outbox", headers={"Authorization": f"Bearer {key}"}
    ).json()
    return box


async def _old_data_dir(url: str) -> str:
    """A demo tenant as `up` created it before keys were generated: under the published key."""
    db = Database(url)
    try:
        async with db.session() as s:
            await tenant_repo.create_tenant(
                s,
                tenant_id="demo",
                name="Demo car dealership",
                secret_key=PUBLISHED_SECRET_KEY,
                settings=TenantSettings(playbook="car_dealership", allow_unsigned_webhooks=True),
            )
            return await tenant_repo.create_api_key(s, tenant_id="demo")
    finally:
        await db.dispose()


async def _settings_under(url: str, key: str) -> str | None:
    db = Database(url)
    try:
        async with db.session() as s:
            tenant = await tenant_repo.get_tenant(s, tenant_id="demo")
            assert tenant is not None
            return tenant_repo.tenant_settings(tenant, secret_key=key).playbook
    finally:
        await db.dispose()


def _leadflow(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The checkout's `./leadflow` (bootstrap and all), run from `cwd`."""
    return subprocess.run(
        [str(ROOT / "leadflow"), *args],
        cwd=cwd,
        env=up_env(COLUMNS="500", **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_up_takes_over_a_data_dir_an_older_up_left_and_keeps_it_private(tmp_path: Path) -> None:
    # LEADFLOW_HOME is what `./leadflow` sets to its checkout: the data dir is <home>/.leadflow
    # wherever `up` runs from.
    home = tmp_path / "checkout"
    data_dir = home / ".leadflow"
    data_dir.mkdir(parents=True)
    # An older version's database, under the published secret key and readable to others.
    data_dir.chmod(0o755)
    url = f"sqlite+aiosqlite:///{data_dir / 'leadflow.db'}"
    migrate(url)
    (data_dir / "leadflow.db").chmod(0o644)
    api_key = asyncio.run(_old_data_dir(url))
    (data_dir / "demo-api-key").write_text(api_key + "\n")
    auth = {"Authorization": f"Bearer {api_key}"}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    first = spare_ports(3)
    ports = (first, first + 1, first + 2)  # the stale dev server's, then up's
    _, temporal_port, ui_port = ports

    # What an older `up` killed with SIGKILL left: its dev server, in its own session, on the
    # data dir's SQLite file and the ports the next `up` is given; no pid file.
    with (tmp_path / "stale-temporal.log").open("wb") as log:
        stale = subprocess.Popen(
            [
                temporal_cli(),
                "server",
                "start-dev",
                "--ip",
                "127.0.0.1",
                "--port",
                str(temporal_port),
                "--ui-port",
                str(ui_port),
                "--db-filename",
                str(data_dir / "temporal.sqlite"),
                "--log-level",
                "warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while not (port_open("127.0.0.1", temporal_port) and port_open("127.0.0.1", ui_port)):
            assert stale.poll() is None, (tmp_path / "stale-temporal.log").read_text()
            assert time.monotonic() < deadline, "the stale dev server did not start"
            time.sleep(0.2)
        assert not (data_dir / PID_FILE).exists()

        with leadflow_up(
            None,
            tmp_path / "up-1.log",
            args=["--workers", "1"],
            ports=ports,
            cwd=elsewhere,
            LEADFLOW_HOME=str(home),
        ) as up:
            # The leftover was stopped (SIGTERM: it closed its SQLite file) before ours started.
            assert (
                f"stopping a Temporal dev server left running on this data dir: pid {stale.pid} ("
                in up.output()
            )
            assert stale.wait(timeout=5) is not None
            assert f"data in {data_dir}" in up.output()
            assert not (elsewhere / ".leadflow").exists()
            # The banner's example works from here too.
            assert f"-d @{ROOT / 'docs' / 'examples' / 'waha-message.json'}\n" in up.output()
            children = {pid for pid in _children(up.proc.pid) if _alive(pid)}
            workers = _workers(up)
            (devserver,) = children - workers
            assert (data_dir / PID_FILE).read_text().strip() == str(devserver)
            key = _printed_key(up)
            assert key == api_key
            # A secret key generated into the data dir (never printed); the stored settings
            # were re-encrypted with it: the API reads them...
            key_file = data_dir / "secret.key"
            assert _mode(key_file) == 0o600
            secret_key = key_file.read_text().strip()
            assert len(secret_key) >= 40 and secret_key not in up.output()
            settings = httpx.get(f"{up.api}/api/v1/settings", headers=auth)
            assert settings.status_code == 200, settings.text
            assert settings.json()["playbook"] == "car_dealership"
            # ...and so does the worker, to answer with the tenant's playbook.
            _send(up, "false_31612345678@c.us_SUP0001", "Hoi! Ik zoek een Volkswagen Golf")
            _wait(lambda: len(_outbox(up, key)) == 1, timeout=60, what="the reply", up=up)
            # The older version's files and the dev server's (it ran under another umask) are
            # tightened; those written now are created so.
            for path in (
                data_dir / "leadflow.db",
                data_dir / "demo-api-key",
                data_dir / "temporal.sqlite",
                data_dir / "temporal.log",
                data_dir / "logs" / "worker-1.log",
            ):
                assert _mode(path) & 0o077 == 0, (path, oct(_mode(path)))
            assert _mode(data_dir) == 0o700
            assert _mode(data_dir / "logs") == 0o700

            # A second `up` on the same data dir (other ports) is refused, naming the first.
            second = subprocess.run(
                up_argv(data_dir, (free_port(), free_port(), free_port()), []),
                env=up_env(COLUMNS="500"),
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=120,
            )
            refusal = second.stdout + second.stderr
            assert second.returncode == 1, refusal
            assert (
                f"the data dir {data_dir} is in use by another `leadflow up` "
                f"(pid {up.proc.pid}, started " in refusal
            )
            assert "leadflow up --api-port" in refusal  # the holder's command line
            assert "starting" not in refusal  # it started nothing
            # ...and the first goes on: ready, its dev server untouched, answering.
            assert httpx.get(f"{up.api}/ready", timeout=10).json()["status"] == "ready"
            assert _alive(devserver)
            _send(up, "false_31612345678@c.us_SUP0002", "Heeft u ook een automaat?")
            _wait(lambda: len(_outbox(up, key)) == 2, timeout=60, what="reply 2", up=up)

            # Paths are the user's: acme.yaml is in `elsewhere`, not in the checkout.
            (elsewhere / "acme.yaml").write_text("timezone: Europe/Lisbon\n")
            configured = _leadflow(
                "tenant", "configure", "demo", "--file", "acme.yaml",
                cwd=elsewhere, LEADFLOW_DATA_DIR=str(data_dir),
            )  # fmt: skip
            assert configured.returncode == 0, configured.stdout + configured.stderr
            shown = httpx.get(
                f"{up.api}/api/v1/settings", headers={"Authorization": f"Bearer {key}"}
            )
            assert shown.json()["timezone"] == "Europe/Lisbon", shown.text
            missing = _leadflow(
                "tenant", "configure", "demo", "--file", "acme.yaml",
                cwd=tmp_path, LEADFLOW_DATA_DIR=str(data_dir),
            )  # fmt: skip
            assert missing.returncode == 2 and "acme.yaml" in missing.stderr

            _stop(up)
        assert not (data_dir / PID_FILE).exists()  # a clean stop takes its pid file along
        assert not _naming(data_dir)
        # Stored under the generated key only: a copy of the database no longer opens with
        # the published one.
        assert asyncio.run(_settings_under(url, secret_key)) == "car_dealership"
        with pytest.raises(CredentialsError):
            asyncio.run(_settings_under(url, PUBLISHED_SECRET_KEY))
    finally:
        if stale.poll() is None:
            os.kill(stale.pid, signal.SIGKILL)
            stale.wait()
